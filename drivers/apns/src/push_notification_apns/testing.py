"""A loopback APNs for tests and benchmarks, speaking the real protocol: HTTP/2 over TLS (h2,
with a trustme test CA), ``POST /3/device/<token>``.

Like Apple it checks the provider token (ES256 signature against the team's key, ``kid``,
``iss``, ``iat`` younger than an hour) or the client certificate, the ``apns-*`` headers and
the payload, and answers Apple's reasons as JSON. Answers can be scripted per device (410
``Unregistered``, 429...), and ``expire_tokens()`` makes every token seen so far expired, as
Apple's clock would. Needs the ``[test]`` extra (h2, trustme). Binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import jwt
import trustme
from cryptography.hazmat.primitives.asymmetric import ec

from .message import MAX_PAYLOAD


@dataclass
class FakeDevice:
    """An iPhone's side: its token, and answers scripted before the default 200."""

    token: str
    #: (status, Apple's reason), used first to last.
    answers: deque[tuple[int, str]] = field(default_factory=deque)


@dataclass(frozen=True)
class ApnsPush:
    token: str
    headers: dict[str, str]
    payload: dict[str, Any]
    #: The provider token's claims; ``None`` with certificate authentication.
    claims: dict[str, Any] | None
    #: Which TLS connection carried it (1 for the first the service accepted).
    connection: int


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason = status, reason


class LoopbackApns:
    """``async with LoopbackApns(tmp_path, topic=..., key=...) as apns:`` then ``apns.device()``.

    ``key``: the public half of the team's .p8 key (token authentication); without it, clients
    must present a certificate issued by ``apns.ca`` (:meth:`client_certificate`).
    """

    def __init__(
        self,
        directory: Path,
        *,
        topic: str,
        key: ec.EllipticCurvePublicKey | None = None,
        key_id: str = "",
        team_id: str = "",
        port: int = 0,
    ) -> None:
        self.port = port
        self.topic, self.key, self.key_id, self.team_id = topic, key, key_id, team_id
        self.ca = trustme.CA()
        #: The CA to trust (``ssl_client_ca_file``).
        self.ca_file = directory / "apns-test-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.devices: dict[str, FakeDevice] = {}
        self.received: list[ApnsPush] = []
        #: Requests refused by the checks (not scripted answers), one line each.
        self.rejected: list[str] = []
        self.connections = 0
        self._expired: set[str] = set()
        self._seen_tokens: set[str] = set()
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.Transport] = set()
        self._arrived: asyncio.Condition | None = None
        self.url = ""

    def client_certificate(self, path: Path) -> Path:
        """A PEM client certificate and key issued by the test CA, written to ``path``."""
        cert = self.ca.issue_cert("provider.example.com", common_name=f"Apple Push Services: {self.topic}")
        path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems) + cert.private_key_pem.bytes())
        return path

    async def __aenter__(self) -> LoopbackApns:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        context.set_alpn_protocols(["h2"])
        context.verify_mode = ssl.CERT_OPTIONAL
        self.ca.configure_trust(context)
        self._arrived = asyncio.Condition()
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self), "127.0.0.1", self.port, ssl=context
        )
        self.url = f"https://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            for transport in self._transports:
                transport.close()
            await self._server.wait_closed()

    def device(self, token: str | None = None) -> FakeDevice:
        """A device APNs knows (a fresh random token unless ``token`` is given)."""
        device = FakeDevice(token or os.urandom(32).hex())
        self.devices[device.token] = device
        return device

    def expire_tokens(self) -> None:
        """Every provider token used so far is now past its hour."""
        self._expired |= self._seen_tokens

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ApnsPush]:
        assert self._arrived is not None
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.received) >= count), timeout)
        return list(self.received)

    # -- Apple's checks ----------------------------------------------------------------

    def _claims(self, authorization: str, certified: bool) -> dict[str, Any] | None:
        if not authorization:
            if not certified:
                raise Refused(403, "MissingProviderToken")
            return None
        token = authorization.removeprefix("bearer ")
        self._seen_tokens.add(token)
        if self.key is None or token == authorization:
            raise Refused(403, "InvalidProviderToken")
        try:
            header = jwt.get_unverified_header(token)
            claims: dict[str, Any] = jwt.decode(token, self.key, algorithms=["ES256"], options={"verify_iat": False})
        except jwt.PyJWTError:
            raise Refused(403, "InvalidProviderToken") from None
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            raise Refused(403, "InvalidProviderToken")
        if token in self._expired or not time.time() - 3600 < claims.get("iat", 0) <= time.time() + 60:
            raise Refused(403, "ExpiredProviderToken")
        return claims

    def _check(self, headers: dict[str, str], body: bytes, certified: bool) -> ApnsPush:
        path = headers.get(":path", "")
        if headers.get(":method") != "POST" or not path.startswith("/3/device/"):
            raise Refused(405 if headers.get(":method") != "POST" else 404, "MethodNotAllowed")
        device = self.devices.get(path.removeprefix("/3/device/"))
        if device is None:
            raise Refused(400, "BadDeviceToken")
        claims = self._claims(headers.get("authorization", ""), certified)
        if headers.get("apns-topic") != self.topic:
            raise Refused(400, "MissingTopic" if "apns-topic" not in headers else "BadTopic")
        push_type, priority = headers.get("apns-push-type"), headers.get("apns-priority")
        if push_type not in ("alert", "background") or priority not in ("5", "10"):
            raise Refused(400, "InvalidPushType" if priority in ("5", "10") else "BadPriority")
        if not headers.get("apns-expiration", "0").isdigit():  # optional: absent means "store it, try once"
            raise Refused(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            raise Refused(400, "BadCollapseId")
        if len(body) > MAX_PAYLOAD:
            raise Refused(413, "PayloadTooLarge")
        try:
            payload = json.loads(body)
            aps = payload["aps"]
        except (ValueError, KeyError, TypeError):
            raise Refused(400, "PayloadEmpty") from None
        if push_type == "background" and (priority != "5" or aps.get("content-available") != 1 or "alert" in aps):
            raise Refused(400, "BadPriority")  # Apple: background pushes are priority 5, silent
        if push_type == "alert" and "alert" not in aps:
            raise Refused(400, "PayloadEmpty")
        return ApnsPush(device.token, headers, payload, claims, 0)

    async def _answer(self, headers: dict[str, str], body: bytes, certified: bool, connection: int) -> Refused | None:
        try:
            push = self._check(headers, body, certified)
        except Refused as refused:
            if refused.reason != "ExpiredProviderToken":
                self.rejected.append(str(refused))
            return refused
        device = self.devices[push.token]
        if device.answers:
            status, reason = device.answers.popleft()
            if status != 200:
                return Refused(status, reason)
        assert self._arrived is not None
        async with self._arrived:
            self.received.append(ApnsPush(push.token, push.headers, push.payload, push.claims, connection))
            self._arrived.notify_all()
        return None


class _Connection(asyncio.Protocol):
    """One client's HTTP/2 connection: streams gathered, each answered once it ends."""

    def __init__(self, service: LoopbackApns) -> None:
        self.service = service
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.transport: asyncio.Transport | None = None
        self.certified = False
        self.number = 0
        self.answering: set[asyncio.Future[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.service._transports.add(transport)
        tls = transport.get_extra_info("ssl_object")
        if tls is None or tls.selected_alpn_protocol() != "h2":
            transport.close()  # APNs speaks HTTP/2 only
            return
        self.certified = bool(tls.getpeercert())
        self.service.connections += 1
        self.number = self.service.connections
        self.h2.initiate_connection()
        transport.write(self.h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.service._transports.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = (dict(event.headers), bytearray())  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived):
                self.streams[event.stream_id][1].extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                headers, body = self.streams.pop(event.stream_id)
                task = asyncio.ensure_future(self._respond(event.stream_id, headers, bytes(body)))
                self.answering.add(task)
                task.add_done_callback(self.answering.discard)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.transport.close()
        self.transport.write(self.h2.data_to_send())

    async def _respond(self, stream_id: int, headers: dict[str, str], body: bytes) -> None:
        refused = await self.service._answer(headers, body, self.certified, self.number)
        if self.transport is None or self.transport.is_closing():
            return
        # Apple echoes the request's apns-id, or makes one up.
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        answer = [(":status", "200" if refused is None else str(refused.status)), ("apns-id", apns_id)]
        if refused is None:
            self.h2.send_headers(stream_id, answer, end_stream=True)
        else:
            reason: dict[str, Any] = {"reason": refused.reason}
            if refused.status == 410:
                reason["timestamp"] = int(time.time() * 1000)
            self.h2.send_headers(stream_id, [*answer, ("content-type", "application/json")])
            self.h2.send_data(stream_id, json.dumps(reason).encode(), end_stream=True)
        self.transport.write(self.h2.data_to_send())
