"""Several ox instances: each sends its own request, and a failing one holds back no other."""

from __future__ import annotations

import pytest
from ox_testkit import PATH, OxEndpoint, Reply, activated
from push_notification.dispatch import Dispatcher
from push_notification.drivers import DriverContext, DriverInstance, create_instance
from push_notification.queue import MemoryQueue
from push_notification.server.metadata import MetadataStore
from push_notification.settings import Settings
from push_notification.testing import DriverHarness, make_event, make_transaction
from push_notification_ox import OxDriver


def instance(name: str, url: str, store: MetadataStore) -> DriverInstance:
    context = DriverContext(instance=name, driver="ox", settings=Settings.from_dict(name, {"url": url}), metadata=store)
    return create_instance(context, OxDriver)


async def test_two_instances_with_different_urls_each_send_the_event(ox_endpoint: OxEndpoint) -> None:
    store = activated("alice")
    dispatcher = Dispatcher(
        MemoryQueue(),
        [
            instance("ox1", ox_endpoint.url(), store),
            instance("ox2", ox_endpoint.url(path=PATH + "/second"), store),
        ],
    )
    await dispatcher.start()
    await dispatcher.queue.put(make_transaction(make_event("MessageNew", uid=5), user="alice"))
    await dispatcher.stop()
    assert sorted(r.path for r in ox_endpoint.received) == [PATH, PATH + "/second"]
    assert [b["imap-uid"] for b in ox_endpoint.bodies] == [5, 5]


async def test_a_failing_instance_does_not_hold_back_the_other(
    ox_endpoint: OxEndpoint, free_port: int, logs: pytest.LogCaptureFixture
) -> None:
    store = activated("alice")
    ox_endpoint.replies = [Reply(200)]
    dead = f"http://127.0.0.1:{free_port}{PATH}"
    dispatcher = Dispatcher(MemoryQueue(), [instance("down", dead, store), instance("up", ox_endpoint.url(), store)])
    await dispatcher.start()
    for uid in (1, 2, 3):
        await dispatcher.queue.put(make_transaction(make_event("MessageNew", uid=uid), user="alice"))
    await dispatcher.stop()
    assert [b["imap-uid"] for b in ox_endpoint.bodies] == [1, 2, 3]
    failures = [r.getMessage() for r in logs.records if r.levelname == "ERROR"]
    assert len(failures) == 3 and all(line.startswith("push_notification down: ") for line in failures)


async def test_the_driver_is_found_through_its_entry_point(ox_endpoint: OxEndpoint) -> None:
    async with DriverHarness("ox", {"url": ox_endpoint.url()}, metadata=activated("alice")) as h:
        await h.send(make_transaction(make_event("MessageNew", uid=1), user="alice"))
    assert isinstance(h.plugin, OxDriver)
    assert len(ox_endpoint.received) == 1
