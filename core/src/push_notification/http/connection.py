"""One keep-alive HTTP/1.1 client connection: an asyncio protocol writing a request's bytes and
reading its answer with httptools (llhttp, the C parser of Node.js and uvicorn). h11, the
well-kept pure-Python alternative, took some 25 times its CPU to read the same push answer
(with its request state machine), so it would have given back much of what leaving aiohttp saved.

One exchange at a time (no pipelining). The answer ends at its ``Content-Length``, after its
last chunk, or, with neither, when the server closes the connection. Interim answers (``100
Continue``, ``103 Early Hints``) are skipped. A body beyond :data:`MAX_BODY` is cut there and
the connection dropped: the status is what a sender acts on, and memory stays bounded; a head
beyond :data:`MAX_HEAD` is refused.

The parser gets no ``on_status`` nor ``on_header`` callback: llhttp frames the answer and
tells keep-alive by itself, and a 2xx's headers are read by no one, so calling into Python
for each of them (a bytes object per name and value, a call per header: some 8k instructions
an answer) bought nothing. The bytes of the head are kept instead; the reason phrase comes
from the status line, and the headers are parsed from those bytes when first looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from push_notification.http.attempt import HttpResponse, TransportError

#: The most of an answer's body kept (push services answer a few hundred bytes).
MAX_BODY = 1024 * 1024
#: The longest answer head read (status line and headers).
MAX_HEAD = 64 * 1024


class _Stop(Exception):
    """Stops the parser inside a callback: the exchange was settled, or enough was read."""


class _HeadReader:
    """Reads the final answer's reason phrase and headers from the bytes of a head that
    parsed once already (so it cannot fail), skipping interim answers."""

    __slots__ = ("headers", "parser", "reason")

    def __init__(self, raw: bytes) -> None:
        self.reason = b""
        #: Names and values, alternating.
        self.headers: list[bytes] = []
        self.parser = httptools.HttpResponseParser(self)
        with contextlib.suppress(httptools.HttpParserError):  # stopped at the final head
            self.parser.feed_data(raw)

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers += (name, value)

    def on_headers_complete(self) -> None:
        if self.parser.get_status_code() >= 200:
            raise _Stop
        self.reason, self.headers = b"", []  # an interim answer's: the final one follows


#: Reason phrases by status line (``HTTP/1.1 200 OK``): a server answers with a few.
_REASONS: dict[bytes, str] = {}
_REASONS_SIZE = 64
_OK_LINE = b"HTTP/1.1 200 OK\r\n"


def reason_of(raw: bytes, interim: bool) -> str:
    """The reason phrase of the final answer whose head starts ``raw`` (after an interim
    answer's head, when ``interim``)."""
    if interim:
        return _HeadReader(raw).reason.decode("utf-8", "surrogateescape")
    line = raw[: raw.find(b"\n")]
    reason = _REASONS.get(line)
    if reason is None:
        reason = _HeadReader(raw).reason.decode("utf-8", "surrogateescape")
        if len(_REASONS) >= _REASONS_SIZE:
            _REASONS.clear()
        _REASONS[line] = reason
    return reason


class AnswerHeaders(Mapping[str, str]):
    """An answer's headers, case-insensitive; parsed from the head's bytes at the first look,
    since most answers (a 2xx) are never looked at. Repeated names keep every value (``getall``)."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: bytes) -> None:
        #: The bytes that came until the head was complete (interim heads and some body too).
        self._raw = raw
        self._decoded: CIMultiDictProxy[str] | None = None

    def _headers(self) -> CIMultiDictProxy[str]:
        if self._decoded is None:
            raw = _HeadReader(self._raw).headers
            self._decoded = CIMultiDictProxy(
                CIMultiDict(
                    (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
                    for name, value in zip(raw[::2], raw[1::2], strict=True)
                )
            )
        return self._decoded

    def __getitem__(self, name: str) -> str:
        return self._headers()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers())

    def __len__(self) -> int:
        return len(self._headers())

    def getall(self, name: str) -> list[str]:
        """Every value of ``name`` (``Set-Cookie``, ``Link``)."""
        return self._headers().getall(name, [])

    def __repr__(self) -> str:
        return f"<AnswerHeaders {dict(self._headers())!r}>"


class Connection(asyncio.Protocol):
    """One connection to one origin; :meth:`send` starts an exchange and returns its answer's future.

    ``on_lost`` is called once, when the connection is gone, so its pool forgets it.
    """

    __slots__ = (
        "_body",
        "_body_size",
        "_head_done",
        "_head_only",
        "_interim",
        "_raw",
        "_request_close",
        "_status",
        "answered",
        "idle_since",
        "loop",
        "on_lost",
        "open",
        "parser",
        "reusable",
        "transport",
        "waiter",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, on_lost: Callable[[Connection], None]) -> None:
        self.loop = loop
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[HttpResponse] | None = None
        #: False once the server closed it or it was closed.
        self.open = True
        #: Whether the last answer left the connection fit for the next request.
        self.reusable = False
        #: Whether any byte of the current answer arrived (a reused connection lost before
        #: that had closed while idle: the request may safely go again on a new one).
        self.answered = False
        self.idle_since = 0.0
        self._request_close = False
        self._head_only = False
        self._status = 0
        #: What came of the answer until its head was complete (see :class:`AnswerHeaders`).
        self._raw = b""
        self._head_done = False
        #: Whether an interim answer came before the final one.
        self._interim = False
        self._body: bytes | bytearray = b""
        self._body_size = 0

    # ------------------------------------------------------------ the exchange

    def send(self, data: bytes, *, head_only: bool, close: bool) -> asyncio.Future[HttpResponse]:
        """Write a request; the future gets its answer or a :class:`TransportError`.
        ``head_only``: a HEAD request, whose answer has no body; ``close``: the request asked
        the server to close the connection after answering."""
        waiter = self.loop.create_future()
        self.waiter = waiter
        self.reusable = self.answered = self._head_done = self._interim = False
        self._head_only, self._request_close = head_only, close
        self._status = self._body_size = 0
        self._raw = self._body = b""
        self.transport.write(data)  # type: ignore[union-attr]  # set once connected
        return waiter

    def close(self) -> None:
        """Close the connection; an exchange still waiting for its answer fails as lost (only
        the HTTP client's own closing leaves one waiting: every other caller settled it)."""
        self.open = self.reusable = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TransportError("lost", "Connection lost: the HTTP client was closed"))
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for: the connection cannot be trusted with a request.
            self.close()
            return
        self.answered = True
        head_done = self._head_done
        if not head_done:
            self._raw = data if not self._raw else self._raw + data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):  # a bug here: fail the exchange, show it
                self._fail(TransportError("lost", f"Connection lost: {type(exc.__context__).__name__}"))
                raise
        except httptools.HttpParserUpgrade:
            self._fail(TransportError("lost", "Connection lost: the server switched protocols, which no request asked"))
            return
        except httptools.HttpParserError as exc:
            reason = str(exc) or type(exc).__name__
            self._fail(TransportError("lost", f"Connection lost: the answer is not valid HTTP ({reason})"))
            return
        if not head_done and not self._head_done and len(self._raw) > MAX_HEAD:  # the head is still coming
            self._fail(TransportError("lost", f"Connection lost: the answer's head exceeds {MAX_HEAD // 1024} KiB"))

    def eof_received(self) -> bool:
        self.open = False
        self._end()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = self.reusable = False
        if exc is None:
            self._end()
        else:
            self._fail(TransportError("lost", f"Connection lost: {type(exc).__name__}: {exc}"))
        self.on_lost(self)

    # ------------------------------------------------------------ httptools callbacks

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self._interim = True
            return
        self._status = status
        self._head_done = True
        if self._head_only:  # the parser cannot be told a HEAD answer has no body
            self._answer(False)
            self.close()
            raise _Stop

    def on_body(self, chunk: bytes) -> None:
        size = self._body_size = self._body_size + len(chunk)
        if size > MAX_BODY:
            chunk = chunk[: len(chunk) - (size - MAX_BODY)]
        body = self._body
        if not body:
            self._body = chunk  # most answers come in one piece
        else:
            if isinstance(body, bytes):
                body = self._body = bytearray(body)
            body += chunk
        if size > MAX_BODY:
            self._answer(False)
            self.close()
            raise _Stop

    def on_message_complete(self) -> None:
        if not self._head_done:  # an interim answer: the final one follows
            return
        self._answer(not self._request_close and self.parser.should_keep_alive())

    # ------------------------------------------------------------ outcomes

    def _answer(self, reusable: bool) -> None:
        """Settle the exchange with the answer read; ``reusable``: the connection may serve again."""
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        self.reusable = reusable and self.open
        body = self._body
        if type(body) is not bytes:
            body = bytes(body)
        raw = self._raw
        reason = "OK" if raw.startswith(_OK_LINE) and not self._interim else reason_of(raw, self._interim)
        waiter.set_result(HttpResponse(self._status, reason, AnswerHeaders(raw), body))

    def _fail(self, error: TransportError) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def _end(self) -> None:
        """The server closed the connection: the end of an answer that runs until then, or a
        connection lost before its answer was complete."""
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self._head_done and self._runs_to_eof():
            self._answer(False)
            return
        when = "in the middle of the answer" if self.answered else "before answering"
        self._fail(TransportError("lost", f"Connection lost: the server closed the connection {when}"))

    def _runs_to_eof(self) -> bool:
        """Whether the answer's body ends with the connection (neither a length nor chunks)."""
        headers = _HeadReader(self._raw).headers
        for name, value in zip(headers[::2], headers[1::2], strict=True):
            lower = name.lower()
            if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True
