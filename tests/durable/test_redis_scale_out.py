"""Many daemons on one Redis (``queue = redis``, issue 17): any daemon accepts, any daemon
delivers; SIGKILLed daemons' deliveries are taken over; a Redis outage is a 503 and nothing
accepted is lost; dead letters made on one daemon are retried from another."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from durable_kit import Daemon, eventually
from push_notification.queue.redis_store import partition_of_user
from push_notification.testing.loopback import loopback_server
from push_notification.testing.redis import RedisServer

pytestmark = pytest.mark.asyncio(loop_scope="function")

PARTITIONS = 16


class WebhookSink:
    """The endpoint of one webhook instance: every (transaction id, user, uid) that arrived, in order."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, str, int]] = []
        self.refuse = False
        self.url = ""
        self._server = contextlib.AsyncExitStack()

    @property
    def ids(self) -> set[str]:
        return {txn_id for txn_id, _, _ in self.arrivals}

    async def _handle(self, request: web.Request) -> web.Response:
        data = (await request.json())["data"]
        if self.refuse:
            return web.Response(status=400, text="bad token")
        self.arrivals.append((data["transaction"], data["user"], int(data["event"]["uid"])))
        return web.Response(text="ok")

    async def __aenter__(self) -> WebhookSink:
        self.url = await self._server.enter_async_context(loopback_server(self._handle))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.aclose()


def workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def config(redis: RedisServer, sink: WebhookSink) -> str:
    return (
        f"queue = redis\nqueue_url = {redis.url}\nqueue_partitions = {PARTITIONS}\n"
        "queue_visibility_timeout = 2s\nqueue_retry_delay = 100ms\nqueue_retry_max_delay = 1s\n"
        f"push_notification hook {{\n  driver = webhook\n  url = {sink.url}/hook\n}}\n"
    )


def transaction(user: str, uid: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "user": {"username": user, "service": "lmtp"},
        "mailbox": "INBOX",
        "events": [{"name": "MessageNew", "uid": uid, "uid_validity": 1700000000}],
    }


class SpreadSender:
    """Posts each user's transactions in order, spread over the daemons; a refused or failed
    post is repeated (same id) on the next daemon, as a fleet of bridges would, and a daemon
    that refused a connection is left alone for a second."""

    def __init__(self, daemons: list[Daemon]) -> None:
        self.daemons = daemons
        self.accepted: list[str] = []
        self.refused = 0
        self._down_until = [0.0] * len(daemons)

    async def send(self, per_user: dict[str, list[dict[str, Any]]], on_accept: Any = None) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await asyncio.gather(*(self._user(session, i, txns, on_accept) for i, txns in enumerate(per_user.values())))

    def _next(self, turn: int) -> int:
        now = time.monotonic()
        for step in range(len(self.daemons)):
            index = (turn + step) % len(self.daemons)
            if self._down_until[index] <= now:
                return index
        return turn % len(self.daemons)

    async def _user(
        self, session: aiohttp.ClientSession, start: int, txns: list[dict[str, Any]], on_accept: Any
    ) -> None:
        turn = start
        for txn in txns:
            while True:
                index = self._next(turn)
                turn = index + 1
                try:
                    async with session.post(f"{self.daemons[index].url}/v1/transactions", json=txn) as response:
                        await response.read()
                        if response.status == 202:
                            break
                        self.refused += 1
                except (aiohttp.ClientError, TimeoutError):
                    self.refused += 1
                    self._down_until[index] = time.monotonic() + 1.0
                await asyncio.sleep(0.02)
            self.accepted.append(txn["id"])
            if on_accept is not None:
                on_accept(len(self.accepted))


def owners(redis: RedisServer, daemons: list[Daemon]) -> dict[int, int]:
    """Partition → index of the daemon holding its lease (read from Redis)."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis.url, decode_responses=True)
    pids = {d.proc.pid: i for i, d in enumerate(daemons) if d.proc is not None}
    held: dict[int, int] = {}
    for p in range(PARTITIONS):
        owner = client.get(f"pn:lease:hook:{p}")
        if owner is not None and int(owner.split(":")[1]) in pids:
            held[p] = pids[int(owner.split(":")[1])]
    client.close()
    return held


async def test_three_daemons_deliver_everything_across_two_sigkills_and_a_restart(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with WebhookSink() as sink:
        daemons = [Daemon(workdir(tmp_path / f"d{i}"), config(redis_server, sink)) for i in range(3)]
        for daemon in daemons:
            daemon.start()
        try:
            # Settled: every partition leased, each by its rendezvous owner among the three.
            await eventually(lambda: len(set(owners(redis_server, daemons).values())) == 3
                             and len(owners(redis_server, daemons)) == PARTITIONS, 30, "leases settled")  # fmt: skip
            steady = {p for p, i in owners(redis_server, daemons).items() if i == 0}
            users = [f"user{n}@example.com" for n in range(40)]
            per_user = {u: [transaction(u, uid) for uid in range(1, 251)] for u in users}

            def chaos(accepted: int) -> None:
                if accepted == 3_000:
                    daemons[1].kill()
                elif accepted == 6_000:
                    daemons[2].kill()
                elif accepted == 7_000:
                    daemons[1].start(wait=False)

            sender = SpreadSender(daemons)
            await sender.send(per_user, chaos)
            assert len(sender.accepted) == 10_000
            await eventually(lambda: set(sender.accepted) <= sink.ids, 90, "every accepted transaction at the sink")
        finally:
            for daemon in daemons:
                daemon.stop()
    duplicates = len(sink.arrivals) - len(sink.ids)
    print(
        f"\n10,000 accepted, {len(sink.ids)} distinct arrived, {duplicates} duplicate(s), {sender.refused} re-sent post(s)"
    )
    # Users whose partition the never-killed daemon owned throughout: strictly in order, once each.
    first: dict[str, list[int]] = {}
    seen: set[str] = set()
    for txn_id, user, uid in sink.arrivals:
        if txn_id not in seen:
            seen.add(txn_id)
            first.setdefault(user, []).append(uid)
    calm = [u for u in users if partition_of_user(u, PARTITIONS) in steady]
    assert calm, "some users' partitions stayed with the surviving daemon"
    for user in calm:
        assert first[user] == list(range(1, 251)), f"{user} out of order"


async def test_redis_away_for_five_seconds_means_503_then_delivery_resumes_with_nothing_lost(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with WebhookSink() as sink:
        daemon = Daemon(tmp_path, config(redis_server, sink))
        daemon.start()
        try:
            statuses: list[int] = []
            accepted: list[str] = []
            async with aiohttp.ClientSession() as session:

                async def post(txn: dict[str, Any]) -> None:
                    async with session.post(f"{daemon.url}/v1/transactions", json=txn) as response:
                        await response.read()
                        statuses.append(response.status)
                        if response.status == 202:
                            accepted.append(txn["id"])
                        else:
                            assert response.status == 503 and response.headers.get("Retry-After")

                for uid in range(1, 201):
                    await post(transaction("alice", uid))
                    if uid == 100:
                        redis_server.stop()
                        for n in range(50):
                            await post(transaction("bob", n + 1))
                        await asyncio.sleep(5)
                        redis_server.start()
                        await eventually(lambda: _accepts(daemon), 20, "the daemon accepting again")
            assert 503 in statuses
            await eventually(lambda: set(accepted) <= sink.ids, 30, "every accepted transaction delivered")
        finally:
            daemon.stop()
    log = daemon.log()
    assert "is unreachable" in log and "Traceback" not in log


async def _accepts(daemon: Daemon) -> bool:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{daemon.url}/v1/transactions", json=transaction("probe", 1)) as response,
    ):
        return response.status == 202


async def _health(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.url}/healthz") as response:
        return response.status, await response.json()


async def test_healthz_names_a_redis_the_daemon_cannot_reach_and_recovers_by_itself(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    daemon = Daemon(tmp_path, f"queue = redis\nqueue_url = {redis_server.url}\npush_notification dlog {{ }}\n")
    daemon.start()
    try:
        assert (await _health(daemon))[0] == 200
        redis_server.stop()

        async def degraded() -> bool:
            return (await _health(daemon))[0] == 503

        await eventually(degraded, 10, "/healthz degraded while Redis is away")
        _, body = await _health(daemon)
        assert body["status"] == "degraded"
        [problem] = body["problems"]
        assert f"queue {redis_server.url} is unreachable: " in problem and "\n" not in problem

        redis_server.start()

        async def healthy() -> bool:
            status, body = await _health(daemon)
            return status == 200 and body["status"] == "ok" and "problems" not in body

        await eventually(healthy, 15, "/healthz ok again once Redis answers")
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log()


async def test_an_unreachable_redis_at_start_up_is_one_line(tmp_path: Path) -> None:
    from push_notification.testing.net import free_port

    daemon = Daemon(
        tmp_path, f"queue = redis\nqueue_url = redis://:pw@127.0.0.1:{free_port()}/0\npush_notification dlog {{ }}\n"
    )
    result = daemon.cli("serve", "-c", str(daemon.config), check=False)
    assert result.returncode != 0
    # Besides the daemon's first line (which config it read), one line says what is wrong.
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1 and "cannot use Redis" in lines[0] and "pw" not in result.stderr, result.stderr


async def test_dead_letters_made_on_one_daemon_are_listed_and_retried_from_another(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with WebhookSink() as sink:
        one, two = (Daemon(workdir(tmp_path / n), config(redis_server, sink)) for n in ("one", "two"))
        one.start()
        try:
            sink.refuse = True  # 400: a permanent failure, dead at once
            txn = transaction("carol", 1)
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{one.url}/v1/transactions", json=txn) as response,
            ):
                assert response.status == 202
            listed: dict[str, Any] = {}

            def dead_listed() -> bool:
                result = two.cli("queue", "-c", str(two.config), "list", "--json", check=False)
                rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
                listed.update({row["id"]: row for row in rows})
                return txn["id"] in listed

            await eventually(dead_listed, 20, "the dead letter listed from the other daemon's config")
            assert listed[txn["id"]]["instance"] == "hook" and "400" in listed[txn["id"]]["error"]
            sink.refuse = False
            one.stop()
            two.start()
            retried = two.cli("queue", "-c", str(two.config), "retry", "--instance", "hook", check=False)
            assert retried.returncode == 0 and "requeued 1" in retried.stdout, retried.stderr
            await eventually(lambda: txn["id"] in sink.ids, 20, "the retried letter delivered by the other daemon")
        finally:
            one.stop()
            two.stop()
