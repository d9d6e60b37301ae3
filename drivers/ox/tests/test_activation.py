"""Who is notified: only MessageNew, only INBOX, only users whose METADATA entry is set."""

from __future__ import annotations

import pytest
from ox_testkit import OX_METADATA_KEY, FakeClock, OxEndpoint, activated, harness
from push_notification.events import Event
from push_notification.server.metadata import MetadataStore
from push_notification.testing import make_event, make_transaction
from push_notification_ox.activation import metadata_user


def new_mail(uid: int = 1, mailbox: str = "INBOX") -> Event:
    return make_event("MessageNew", mailbox=mailbox, uid=uid, subject="Hi")


async def test_nothing_is_sent_while_the_metadata_is_absent(ox_endpoint: OxEndpoint) -> None:
    async with harness({"url": ox_endpoint.url()}, metadata=activated("bob")) as h:
        await h.send(make_transaction(new_mail(), user="alice"))
    assert ox_endpoint.received == []


async def test_metadata_in_the_store_activates_the_user(ox_endpoint: OxEndpoint) -> None:
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(make_transaction(new_mail(), user="alice"))
    assert len(ox_endpoint.received) == 1


async def test_metadata_forwarded_with_the_transaction_activates_the_user(ox_endpoint: OxEndpoint) -> None:
    txn = make_transaction(new_mail(), user="alice", metadata={OX_METADATA_KEY: "user=22@5"})
    async with harness({"url": ox_endpoint.url(), "user_from_metadata": "yes"}) as h:
        await h.send(txn)
    assert ox_endpoint.bodies[0]["user"] == "22@5"


async def test_forwarded_metadata_wins_over_the_store(ox_endpoint: OxEndpoint) -> None:
    txn = make_transaction(new_mail(), user="alice", metadata={OX_METADATA_KEY: "user=22@5"})
    async with harness({"url": ox_endpoint.url(), "user_from_metadata": "yes"}, metadata=activated("alice")) as h:
        await h.send(txn)
    assert ox_endpoint.bodies[0]["user"] == "22@5"


async def test_metadata_without_user_sends_nothing_and_says_how_to_fix_it(
    ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture
) -> None:
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice", value="folder=INBOX")) as h:
        await h.send(make_transaction(new_mail(), user="alice"))
    assert ox_endpoint.received == []
    [error] = [r for r in logs.records if r.levelname == "ERROR"]
    assert "No user provided" in error.getMessage()
    assert "push-notification metadata set -u alice" in error.getMessage()


@pytest.mark.parametrize("mailbox", ["Work", "inbox", "INBOX/Sub"])
async def test_new_mail_outside_the_mailbox_named_exactly_inbox_is_not_sent(
    ox_endpoint: OxEndpoint, mailbox: str
) -> None:
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(make_transaction(new_mail(mailbox=mailbox), user="alice"))
    assert ox_endpoint.received == []


async def test_append_and_other_events_are_not_sent(ox_endpoint: OxEndpoint) -> None:
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(
            make_transaction(make_event("MessageAppend", uid=1, subject="Hi"), user="alice"),
            make_transaction(make_event("FlagsSet", uid=1, flags=["\\Seen"]), make_event("MessageRead", uid=1)),
            make_transaction(make_event("MailboxCreate")),
        )
    assert ox_endpoint.received == []


async def test_a_metadata_change_is_seen_after_the_cache_ttl_not_before(ox_endpoint: OxEndpoint) -> None:
    clock = FakeClock()
    store = activated("alice", value="user=11@3")
    settings = {"url": ox_endpoint.url(), "cache_ttl": "10s", "user_from_metadata": "yes"}
    async with harness(settings, metadata=store, clock=clock) as h:
        await h.send(make_transaction(new_mail(1), user="alice"))
        store.set("alice", OX_METADATA_KEY, "user=99@3")
        clock.advance(9.9)
        await h.send(make_transaction(new_mail(2), user="alice"))
        clock.advance(0.2)
        await h.send(make_transaction(new_mail(3), user="alice"))
    assert [b["user"] for b in ox_endpoint.bodies] == ["11@3", "11@3", "99@3"]


async def test_an_unset_entry_still_notifies_until_the_cache_ttl_ends(ox_endpoint: OxEndpoint) -> None:
    clock = FakeClock()
    store = activated("alice")
    async with harness({"url": ox_endpoint.url(), "cache_lifetime": "30s"}, metadata=store, clock=clock) as h:
        await h.send(make_transaction(new_mail(1), user="alice"))
        store.unset("alice", OX_METADATA_KEY)
        clock.advance(29)
        await h.send(make_transaction(new_mail(2), user="alice"))
        clock.advance(2)
        await h.send(make_transaction(new_mail(3), user="alice"))
    assert [b["imap-uid"] for b in ox_endpoint.bodies] == [1, 2]


async def test_a_missing_entry_is_not_cached_so_activation_is_immediate(ox_endpoint: OxEndpoint) -> None:
    clock = FakeClock()
    store = MetadataStore()
    async with harness({"url": ox_endpoint.url()}, metadata=store, clock=clock) as h:
        await h.send(make_transaction(new_mail(1), user="alice"))
        store.set("alice", OX_METADATA_KEY, "user=11@3")
        await h.send(make_transaction(new_mail(2), user="alice"))
    assert [b["imap-uid"] for b in ox_endpoint.bodies] == [2]


async def test_the_cache_is_per_user(ox_endpoint: OxEndpoint) -> None:
    store = activated("alice")
    async with harness({"url": ox_endpoint.url()}, metadata=store, clock=FakeClock()) as h:
        await h.send(make_transaction(new_mail(1), user="alice"))
        await h.send(make_transaction(new_mail(2), user="bob"))
    assert [b["user"] for b in ox_endpoint.bodies] == ["alice"]


def test_metadata_value_is_tab_separated_and_tab_escaped() -> None:
    assert metadata_user("user=11@3") == "11@3"
    assert metadata_user("events=MessageNew\tuser=11@3\texpire=0") == "11@3"
    assert metadata_user("user=a\x01tb") == "a\tb"
    assert metadata_user("folder=INBOX") is None


async def test_an_unreadable_metadata_store_is_a_retryable_failure(
    ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture
) -> None:
    store = activated("bob")
    store.close()
    async with harness({"url": ox_endpoint.url()}, metadata=store) as h:
        await h.send(make_transaction(new_mail(), user="alice"))
    assert ox_endpoint.received == []
    [line] = [r.getMessage() for r in logs.records if r.levelname == "ERROR"]
    assert "RetryableError: Skipped because unable to get METADATA of user alice" in line


async def test_dovecots_metadata_forwarded_as_unset_wins_over_a_leftover_store_entry(ox_endpoint: OxEndpoint) -> None:
    """OX App Suite turns push off with ``doveadm mailbox metadata unset``; the bridge forwards
    the key as "" (unset), and an entry left in the daemon's own store must not keep push on."""
    txn = make_transaction(new_mail(), user="alice", metadata={OX_METADATA_KEY: ""})
    async with harness({"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(txn)
    assert ox_endpoint.received == []


async def test_a_skip_for_missing_metadata_is_counted_and_logged_once_an_hour_per_user(
    ox_endpoint: OxEndpoint, logs: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    async with harness({"url": ox_endpoint.url()}, clock=clock) as h:
        for uid in (1, 2):
            await h.send(make_transaction(new_mail(uid), user="alice"))
        await h.send(make_transaction(new_mail(3), user="bob"))
        clock.advance(3601)
        await h.send(make_transaction(new_mail(4), user="alice"))
    assert h.plugin.skipped == {"no_metadata": 4}
    infos = [r.getMessage() for r in logs.records if r.levelname == "INFO" and "not active" in r.getMessage()]
    assert [("alice" in m, "bob" in m) for m in infos] == [(True, False), (False, True), (True, False)]
    assert all(OX_METADATA_KEY in m and "once an hour" in m for m in infos)
