"""HTTP/1.1 for the ingress on ``httptools`` (llhttp, in C): one :class:`Http11` per connection.

aiohttp's request machinery cost the ingress more CPU per notification than parsing and
checking the transaction (``benchmarks/daemon_cpu.py``), and the ingress needs little of it:
a handful of routes, small bodies read whole, no streaming. Here the request is parsed in C,
given to the application whole and answered with one write.

What one client may take is bounded. A request head must be complete within
``header_timeout`` of its first byte and within 32 KiB and 100 header fields; its body must
arrive within ``body_timeout`` of the head; a body over ``max_body`` is 413 before it is read;
a connection that sends nothing is closed after :data:`IDLE_TIMEOUT`. llhttp is strict
(no Content-Length beside Transfer-Encoding, no duplicate Content-Length, no obs-fold, CRLF
line ends): a malformed request is a one-line 400 and one log line. A refusal that leaves a
body unread closes the connection after a short linger, so the client reads the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import unquote

import httptools  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from push_notification.config.daemon import DaemonConfig

log = logging.getLogger("push_notification.server.http")

#: How long a connection may stay open without sending anything.
IDLE_TIMEOUT = 75.0
#: The largest request head (request line and header fields), and the most header fields.
MAX_HEAD = 32 * 1024
MAX_HEADERS = 100
#: How long a refused request's body is still read (and dropped) so the client sees the answer.
LINGER = 1.0
#: Requests a client may pipeline before the ingress stops reading from it.
_MAX_PIPELINED = 16
_JSON = b"application/json; charset=utf-8"


@dataclass(frozen=True)
class IngressLimits:
    """What one client may ask of the ingress (the ``ingress_*`` settings; defaults as there)."""

    max_body: int = 1 << 20
    max_events: int = 1000
    body_timeout: float = 10.0
    header_timeout: float = 10.0
    max_connections: int = 4096

    @classmethod
    def of(cls, config: DaemonConfig) -> IngressLimits:
        return cls(
            max_body=config.ingress_max_body_size,
            max_events=config.ingress_max_events,
            body_timeout=config.ingress_body_timeout,
            header_timeout=config.ingress_header_timeout,
            max_connections=config.ingress_max_connections,
        )


@dataclass(slots=True)
class Request:
    """One request: ``headers`` by lower-case name (the first of repeated ones), the body whole;
    ``origin`` the connection it came on (read ``remote`` while answering: once answered, the
    connection's object may serve another client)."""

    method: str
    path: str
    query: str
    headers: dict[bytes, bytes]
    origin: Http11 | None = None
    body: bytes = b""

    @property
    def remote(self) -> str:
        """The client's address (for log lines)."""
        return self.origin.remote if self.origin is not None else "a local client"


class Response:
    """One answer: a status, a body and its type, more header fields; ``close`` ends the connection."""

    __slots__ = ("body", "close", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: bytes = _JSON,
        headers: tuple[tuple[str, str], ...] = (),
        close: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.close = close

    def closing(self) -> Response:
        """The same answer, closing the connection after it."""
        return Response(self.status, self.body, content_type=self.content_type, headers=self.headers, close=True)

    def encode(self, *, closing: bool, head_only: bool) -> bytes:
        """The response as sent: status line, header fields, body (none for ``HEAD``)."""
        if self.status == 202 and not (self.headers or closing or head_only):  # the usual answer, in one go
            return b"%sContent-Length: %d\r\n%s%s" % (_ACCEPTED, len(self.body), _date(), self.body)
        lines = [_STATUS_LINES.get(self.status) or b"HTTP/1.1 %d Unknown\r\n" % self.status]
        if self.status != 204:
            lines.append(b"Content-Type: %s\r\nContent-Length: %d\r\n" % (self.content_type, len(self.body)))
        lines.extend(b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in self.headers)
        if closing:
            lines.append(b"Connection: close\r\n")
        lines.append(_date())
        if not head_only and self.status != 204:
            lines.append(self.body)
        return b"".join(lines)


def error(status: int, message: str, *headers: tuple[str, str], close: bool = False) -> Response:
    """``{"error": message}``: the one line a client gets for anything it did wrong."""
    return Response(status, json.dumps({"error": message}).encode(), headers=headers, close=close)


class Later:
    """An answer the application gives later with :meth:`give`, from a callback in the loop
    (the queue's commit): the connection waits for it with no task and no loop turn of its own.

    What is given is the response, or the exception that stopped it: a 500, as a handler's
    own; :class:`asyncio.CancelledError` closes the connection unanswered (the daemon stops).
    """

    __slots__ = ("_given", "_then")

    def __init__(self) -> None:
        self._given: Response | BaseException | None = None
        self._then: Callable[[Response | BaseException], None] | None = None

    def give(self, outcome: Response | BaseException) -> None:
        """The answer (once; a second is ignored)."""
        then, self._then = self._then, None
        if then is not None:
            then(outcome)
        elif self._given is None:
            self._given = outcome

    def when_given(self, then: Callable[[Response | BaseException], None]) -> Response | BaseException | None:
        """The outcome if it was given already; else None, and ``then`` is told it once it is."""
        if self._given is None:
            self._then = then
        return self._given


#: What the application does with a request: an answer now, or one to wait for.
Handler = Callable[[Request], "Response | Later | Awaitable[Response]"]


class Application(Protocol):
    """What the connections serve (:class:`~push_notification.server.ingress.Ingress`)."""

    def route(self, request: Request) -> Response | Handler:
        """Given the request head: its handler, or the answer (404, 405, 401) without reading the body."""


class Connections(Protocol):
    """Where the connections report in (:class:`~push_notification.server.connections.Connections`),
    and what keeps their deadlines: ``wake`` calls :meth:`Http11.expired` at a loop time."""

    def opened(self, connection: Http11) -> None: ...
    def active(self, connection: Http11) -> None: ...
    def closed(self, connection: Http11) -> None: ...
    def wake(self, connection: Http11, when: float) -> None: ...


_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Type: %s\r\n" % _JSON
_dated: list[object] = [0, b""]


def _date() -> bytes:
    """The ``Date`` field and the blank line ending the head, formatted once a second."""
    now = int(time.time())
    if _dated[0] != now:
        _dated[:] = [now, b"Date: %s\r\n\r\n" % formatdate(now, usegmt=True).encode()]
    return _dated[1]  # type: ignore[return-value]


class _Stop(Exception):
    """Raised in a parser callback to stop parsing: the answer is in ``Http11._refusal``."""


# The connection's phases (between requests, in a head, in a body, answered and closing).
_IDLE, _HEAD, _BODY, _CLOSING = range(4)


class Http11(asyncio.Protocol):
    """One ingress connection: requests parsed by llhttp, answered in order."""

    def __init__(self, app: Application, limits: IngressLimits, connections: Connections) -> None:
        self._app = app
        self._limits = limits
        self._connections = connections
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        # Parsed requests waiting for their answer, in order.
        self._pending: deque[tuple[Request, Handler, bool]] = deque()
        self._fresh()

    def _fresh(self) -> None:
        """The state of a connection not yet made: a new one's, and a spare's taken again."""
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None  # the peer's address, looked up when first named
        self._phase = _IDLE
        self._since = 0.0  # when the current head (or body) began
        self._head_bytes = 0
        # The request being parsed.
        self._url: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._fields = 0
        self._parsed_head = 0  # the request line's and header fields' bytes, as llhttp gives them
        self._http10 = False
        self._continue = False  # the client waits for "100 Continue" before it sends the body
        self._body: list[bytes] = []
        self._size = 0
        self._request: Request | None = None
        self._handler: Handler | None = None
        self._refusal: Response | None = None
        self._busy: tuple[Request, bool] | None = None  # the request being answered
        self._eof = False
        self._finish = False  # close once the requests in hand are answered (shutdown)
        self._write_paused = False
        self._read_paused = False
        # When the current phase ends (a head, a body, idleness, a linger). The connection
        # list's wheel wakes this connection at or before it: ``_woken_at``, moved lazily.
        self._deadline = 0.0
        self._woken_at = 0.0
        #: The wheel's slot holding this connection (0: none); the connection list's to keep.
        self.wheel_slot = 0
        #: Lost between two requests of a keep-alive stream, all answered: the parser is at a
        #: message boundary with nothing of this client in it, and no callback can reach this
        #: object any more. The connection list may then keep it to serve another client.
        self.reusable = True

    def serve_again(self) -> None:
        """Make this lost (``reusable``) connection the protocol of a new one."""
        assert self.reusable and self._phase == _CLOSING
        self._fresh()

    # -- asyncio.Protocol -------------------------------------------------------------

    @property
    def remote(self) -> str:
        """The client's address, for log lines; looked up on first use (two system calls that
        a request answered 202 never needs)."""
        if self._remote is None:
            peer = self._transport.get_extra_info("peername") if self._transport is not None else None
            self._remote = str(peer[0]) if isinstance(peer, tuple) and peer else "a local client"
        return self._remote

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self._connections.opened(self)
        self._arm(self._loop.time() + IDLE_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        self._connections.active(self)
        if self._phase == _CLOSING:
            return  # a refused request's body, read only so that the client sees the answer
        if self._phase == _IDLE:
            self._since = self._loop.time()
            self._head_bytes = 0
        answered = len(self._pending)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refusal, self._refusal = self._refusal, None
            if refusal is None:  # a bug in a callback (the application's route): one line, a 500
                refusal = _internal_error(self._request_head(), exc.__context__ or exc).closing()
            self._refuse(refusal)
            return
        except httptools.HttpParserUpgrade:
            self._refuse(self._malformed("protocol upgrades are not supported"))
            return
        except httptools.HttpParserError as exc:
            self._refuse(self._malformed(" ".join(str(exc).split()) or type(exc).__name__))
            return
        if self._phase == _HEAD:
            # A head that does not end has no callback to tell its size: count what came. After a
            # request ended in this read, the next head's first bytes go uncounted (at most a read).
            self._head_bytes = self._head_bytes + len(data) if len(self._pending) == answered else 0
            if self._head_bytes > MAX_HEAD:
                self._refuse(self._too_large())
                return
            self._arm(self._since + self._limits.header_timeout)
        elif self._phase == _BODY:
            self._arm(self._since + self._limits.body_timeout)
        self._answer_next()
        if self._continue:
            # Asked for before the body, and only if none of it came with the head (RFC 9110 10.1.1).
            self._continue = False
            if self._phase == _BODY and not self._size and self._transport is not None:
                self._transport.write(_CONTINUE)

    def eof_received(self) -> bool:
        if self._busy is not None or self._pending:
            self._eof = True
            return True  # answer what was asked, then close
        return False

    def pause_writing(self) -> None:
        self._write_paused = True
        self._reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._remote is None:
            self._remote = "a client that has gone"  # too late to look it up: for a line still to come
        self.reusable = self.reusable and self._phase == _IDLE and self._busy is None and not self._pending
        self._phase = _CLOSING
        self._pending.clear()
        self._connections.closed(self)

    # -- llhttp's callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._phase = _HEAD
        self.reusable = False  # until the message ends well
        self._url = []
        self._headers = {}
        self._fields = 0
        self._parsed_head = 0
        self._http10 = False
        self._body = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_size(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        # Runs for every header field of every request: the checks of _head_size, inlined.
        fields = self._fields = self._fields + 1
        size = self._parsed_head = self._parsed_head + len(name) + len(value)
        if fields > MAX_HEADERS:
            self._stop(self._malformed(f"more than {MAX_HEADERS} header fields"))
        if size > MAX_HEAD:
            self._stop(self._too_large())
        self._headers.setdefault(name.lower(), value)

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._since = self._loop.time()
        version = self._parser.get_http_version()
        if version != "1.1":
            if version != "1.0":
                self._stop(self._malformed("only HTTP/1.0 and HTTP/1.1 are spoken here"))
            self._http10 = True  # answered, then closed: no HTTP/1.0 keep-alive
        url = self._url[0] if len(self._url) == 1 else b"".join(self._url)
        if not url.startswith(b"/"):  # absolute form: http://host/path?query
            parsed = httptools.parse_url(url)
            url = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        path, _, query = url.decode("latin-1").partition("?")
        if "%" in path:
            path = unquote(path, errors="surrogateescape")
        headers = self._headers
        request = Request(self._parser.get_method().decode("ascii"), path, query, headers, self)
        length = headers.get(b"content-length")
        routed = self._app.route(request)
        if isinstance(routed, Response):
            if (length is not None and length != b"0") or b"transfer-encoding" in headers:
                self._stop(routed.closing())  # its body is not read
            self._handler = _answer_with(routed)
        else:
            max_body = self._limits.max_body
            if length is not None and int(length) > max_body:
                self._stop(error(413, f"transaction of {int(length)} bytes is larger than the {max_body} allowed"
                                      " (ingress_max_body_size)", close=True))  # fmt: skip
            self._handler = routed
            self._continue = headers.get(b"expect", b"").lower() == b"100-continue"
        self._request = request

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._limits.max_body:
            allowed = f"the {self._limits.max_body} allowed (ingress_max_body_size)"
            self._stop(error(413, f"transaction larger than {allowed}", close=True))
        self._body.append(body)

    def on_message_complete(self) -> None:
        request, handler = self._request, self._handler
        assert request is not None and handler is not None
        body = self._body
        request.body = body[0] if len(body) == 1 else b"".join(body)
        self._phase = _IDLE
        self._request = self._handler = None
        keep_alive = self.reusable = self._parser.should_keep_alive() and not self._http10
        self._pending.append((request, handler, keep_alive))

    # -- answering --------------------------------------------------------------------

    def _answer_next(self) -> None:
        """Answer the parsed requests in order; one that waits (the queue) holds the rest."""
        while self._pending and self._busy is None and self._phase != _CLOSING:
            request, handler, keep_alive = self._pending.popleft()
            try:
                result = handler(request)
            except Exception as exc:  # noqa: BLE001 - a bug is one line and a 500, never a traceback
                result = _internal_error(request, exc)
            if isinstance(result, Later):
                self._busy = (request, keep_alive)
                given = result.when_given(self._given)
                if given is None:
                    continue  # _given answers, then goes on with the rest
                self._busy = None
                response = _response_to(request, given)
                if response is None:
                    self.close()
                    return
                result = response
            if isinstance(result, Response):
                self._send(request, result, keep_alive)
                continue
            self._busy = (request, keep_alive)
            self._loop.create_task(result).add_done_callback(self._answered)  # type: ignore[arg-type]
        if self._phase == _IDLE and self._busy is None and not self._pending:
            if self._eof or self._finish:
                self.close()
            else:
                self._deadline = self._loop.time() + IDLE_TIMEOUT  # later than the timer: no new one
        self._reading()

    def _answered(self, task: asyncio.Task[Response]) -> None:
        self._given(asyncio.CancelledError() if task.cancelled() else (task.exception() or task.result()))

    def _given(self, outcome: Response | BaseException) -> None:
        """The answer to the request in progress, now that it is known."""
        assert self._busy is not None
        request, keep_alive = self._busy
        self._busy = None
        response = _response_to(request, outcome)
        if response is None:  # the daemon is stopping: the connection goes with it
            self.close()
            return
        if self._phase == _CLOSING or self._transport is None or self._transport.is_closing():
            self.close()  # refused meanwhile, or the client went away: what it sent was taken in all the same
            return
        self._send(request, response, keep_alive)
        self._answer_next()

    def _send(self, request: Request, response: Response, keep_alive: bool) -> None:
        assert self._transport is not None
        closing = response.close or not keep_alive or ((self._finish or self._eof) and not self._pending)
        self._transport.write(response.encode(closing=closing, head_only=request.method == "HEAD"))
        if response.close:
            self._linger()
        elif closing:
            self._pending.clear()
            self.close()

    def _refuse(self, response: Response) -> None:
        """Answer at once, out of turn with what waits (nothing, but for a pipelining client)."""
        self._pending.clear()
        if self._transport is not None and self._busy is None:
            self._transport.write(response.encode(closing=True, head_only=False))
        self._linger()

    def _malformed(self, reason: str, status: int = 400) -> Response:
        """The answer to a request that is not HTTP as it must be, and its one log line."""
        log.warning("ingress: malformed HTTP request from %s: %s", self.remote, reason[:200])
        return error(status, f"malformed HTTP request: {reason[:200]}", close=True)

    def _request_head(self) -> Request:
        """The request being parsed, for a log line (what is known of it)."""
        if self._request is not None:
            return self._request
        return Request(self._parser.get_method().decode("ascii", "replace"), "?", "", {}, self)

    def _head_size(self, size: int) -> None:
        self._parsed_head += size
        if self._parsed_head > MAX_HEAD:
            self._stop(self._too_large())

    def _too_large(self) -> Response:
        return self._malformed(f"request head larger than {MAX_HEAD} bytes", 431)

    def _stop(self, response: Response) -> None:
        self._refusal = response
        raise _Stop

    def _linger(self) -> None:
        """Stop taking requests; drop what still comes for a moment, then close."""
        self._phase = _CLOSING
        self.reusable = False
        self._pending.clear()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._busy is not None:
            return  # the answer in progress is the last; _answered closes after it
        if transport.can_write_eof():
            transport.write_eof()
        self._arm(self._loop.time() + min(LINGER, self._limits.body_timeout))
        self._reading()

    def _reading(self) -> None:
        """Read while answers are taken away and few requests wait."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        paused = self._write_paused or (len(self._pending) >= _MAX_PIPELINED and self._phase != _CLOSING)
        if paused != self._read_paused:
            self._read_paused = paused
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    # -- deadlines --------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        self._deadline = when
        if not self.wheel_slot or self._woken_at > when:
            self._woken_at = when
            self._connections.wake(self, when)

    def expired(self) -> None:
        """The wheel's call, at or after the time this connection asked for: act on the
        deadline that has passed, or ask again for the one that has not."""
        if self._phase == _CLOSING and (self._transport is None or self._transport.is_closing()):
            return  # closed meanwhile: connection_lost follows
        if self._busy is not None or self._pending:
            self._arm(self._loop.time() + IDLE_TIMEOUT)  # answering: the client waits for us
            return
        if self._loop.time() < self._deadline:
            self._arm(self._deadline)
            return
        if self._phase == _BODY:
            timeout = self._limits.body_timeout
            log.warning("ingress: %s sent no complete body within %gs; closing", self.remote, timeout)
            self._refuse(error(408, f"body not received within {timeout:g}s (ingress_body_timeout)", close=True))
            return
        if self._phase == _HEAD:
            log.debug("ingress: closed a connection whose request head took over %gs", self._limits.header_timeout)
        elif self._phase == _IDLE:
            log.debug("ingress: closed a connection idle for %gs", IDLE_TIMEOUT)
        self.close()

    # -- for the connection list ------------------------------------------------------

    def finish(self) -> None:
        """Shutdown: answer the requests in hand, then close; close at once when there are none
        (a request not wholly received was never accepted: the client sends it again)."""
        self._finish = True
        if self._busy is None and not self._pending:
            self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _answer_with(response: Response) -> Handler:
    return lambda request: response


def _response_to(request: Request, outcome: Response | BaseException) -> Response | None:
    """The answer for a handler's outcome: its response, a 500 for its failure, or None (no
    answer: the connection closes) when it was cancelled."""
    if isinstance(outcome, Response):
        return outcome
    if isinstance(outcome, asyncio.CancelledError):
        return None
    return _internal_error(request, outcome)


def _internal_error(request: Request, exc: BaseException) -> Response:
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    log.error("ingress: %s %s from %s failed: %s", request.method, request.path, request.remote, reason)
    log.debug("ingress: %s %s traceback", request.method, request.path, exc_info=exc)
    return error(500, f"internal error: {reason}")
