"""The structured fields of a delivery's log line, shared by the dispatcher and the queues.

Passed as ``extra``: the text format ignores them, ``--log-format json`` writes each one
(server/logs.py), so a log shipper can filter on instance, user or outcome.
"""

from __future__ import annotations

from push_notification.transaction import Transaction


def delivery_fields(instance: str, txn: Transaction, outcome: str, **more: object) -> dict[str, object]:
    """``instance``, ``user``, ``mailbox``, ``txn_id``, ``event`` (the event names) and
    ``outcome``, plus ``more`` (``driver``, ``attempt``, ``next_attempt``, ``latency``)."""
    fields: dict[str, object] = {
        "instance": instance,
        "user": txn.user.username,
        "mailbox": txn.mailbox,
        "txn_id": txn.id,
        "event": ",".join(dict.fromkeys(event.name for event in txn.events)),
        "outcome": outcome,
    }
    fields.update(more)
    return fields
