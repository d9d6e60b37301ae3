"""A user's held transactions as the fewest transactions a driver can take: one per mailbox,
every event in the order it happened."""

from __future__ import annotations

from collections.abc import Sequence

from push_notification.transaction import Transaction


def merge(txns: Sequence[Transaction]) -> list[tuple[Transaction, list[int]]]:
    """One transaction per mailbox (in order of first appearance), with the indexes of the
    transactions it stands for. The latest user, status and METADATA win; a mailbox whose
    transactions all rolled back stays one rolled-back transaction."""
    groups: dict[str, list[int]] = {}
    for index, txn in enumerate(txns):
        groups.setdefault(txn.mailbox, []).append(index)
    merged = []
    for mailbox, indexes in groups.items():
        members = [txns[i] for i in indexes]
        if len(members) == 1:
            merged.append((members[0], indexes))
            continue
        committed = [t for t in members if t.success]
        last = (committed or members)[-1]
        metadata: dict[str, str] = {}
        for txn in members:
            metadata.update(txn.metadata)
        status = next((t.status for t in reversed(committed) if t.status is not None), None)
        merged.append(
            (
                Transaction(
                    user=last.user,
                    mailbox=mailbox,
                    events=tuple(event for txn in committed for event in txn.events),
                    success=bool(committed),
                    id=members[0].id,
                    metadata=metadata,
                    status=status,
                ),
                indexes,
            )
        )
    return merged
