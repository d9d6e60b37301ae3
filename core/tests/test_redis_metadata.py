"""METADATA in Redis (``queue = redis``): every daemon sees what any daemon or the CLI wrote."""

from __future__ import annotations

import pytest
from push_notification.config import parse_config
from push_notification.errors import PushNotificationError
from push_notification.server.metadata import MetadataStore, open_metadata
from push_notification.server.redis_metadata import RedisMetadataStore

KEY = "/private/vendor/vendor.dovecot/http-notify"


async def test_what_one_daemon_writes_another_reads(redis_url: str) -> None:
    one, two = RedisMetadataStore(redis_url), RedisMetadataStore(redis_url)
    one.set("alice", KEY, "user=11@3")
    one.set("alice", "/private/flag", "on", mailbox="INBOX")
    assert two.get("alice", KEY) == "user=11@3"
    assert two.get("alice", KEY, mailbox="INBOX") is None
    assert two.list("alice", "/private/", mailbox="INBOX") == {"/private/flag": "on"}
    assert two.list("alice") == {KEY: "user=11@3"}
    two.set("alice", KEY, None)
    assert one.get("alice", KEY) is None
    one.close()
    two.close()


async def test_keys_outside_private_and_shared_are_refused(redis_url: str) -> None:
    store = RedisMetadataStore(redis_url)
    with pytest.raises(PushNotificationError, match="must start with /private/ or /shared/"):
        store.set("alice", "vendor/x", "1")
    store.close()


async def test_the_config_picks_the_store(redis_url: str, tmp_path) -> None:
    dlog = "push_notification dlog { }\n"
    shared = open_metadata(parse_config(f"queue = redis\nqueue_url = {redis_url}\n{dlog}", "t.conf"))
    local = open_metadata(parse_config(f"state_dir = {tmp_path}\n{dlog}", "t.conf"))
    assert isinstance(shared, RedisMetadataStore) and isinstance(local, MetadataStore)
    shared.close()
    local.close()
