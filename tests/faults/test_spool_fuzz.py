"""Property: whatever lands in SPOOL/new (any bytes, any name, any kind of file), the reader
either delivers it and deletes it, or moves it to bad/ with exactly one log line naming it;
the reader itself never raises, hangs or stops."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from push_notification.queue import MemoryQueue
from push_notification.server.spool import SpoolReader
from push_notification.transaction import Transaction

KINDS = ("bytes", "transaction", "directory", "fifo", "symlink-dev-zero", "symlink-outside", "dangling", "oversize")

#: Names a bridge never writes but a hostile local user could: control characters, spaces,
#: non-ASCII, and bytes that are not UTF-8 (surrogate-escaped), never "/" or NUL.
names = st.text(
    st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)) | st.sampled_from("\n\r\t\x1b\\"),
    min_size=1,
    max_size=40,
).filter(lambda n: not n.startswith(".") and n.encode("utf-8", "surrogateescape")[:255] == n.encode())

#: Transaction-shaped JSON with any values: most are invalid, some are delivered.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
transactions = st.fixed_dictionaries(
    {"user": st.one_of(st.text(max_size=10), st.fixed_dictionaries({"username": st.text(min_size=1, max_size=10)}))},
    optional={
        "mailbox": st.text(max_size=10),
        "events": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["MessageNew", "FlagsSet", "Nope"])}, optional={"uid": json_values}
            ),
            max_size=3,
        ),
        "id": json_values,
        "metadata": json_values,
    },
)


class Accepting(MemoryQueue):
    """A queue that records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted: list[Transaction] = []

    async def put(self, txn: Transaction) -> None:
        self.accepted.append(txn)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def plant(root: Path, name: str, kind: str, data: bytes, txn: dict[str, object]) -> None:
    path = root / "spool" / "new" / name
    if kind == "bytes":
        path.write_bytes(data)
    elif kind == "transaction":
        path.write_text(json.dumps(txn))
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink-outside":
        (root / "outside").write_text(json.dumps(txn))
        path.symlink_to(root / "outside")
    elif kind == "dangling":
        path.symlink_to(root / "nowhere")
    else:
        path.write_bytes(b" " * 5000)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, kind=st.sampled_from(KINDS), data=st.binary(max_size=300), txn=transactions)
def test_every_spool_entry_is_delivered_or_moved_to_bad_with_one_line(
    name: str, kind: str, data: bytes, txn: dict[str, object]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        queue = Accepting()
        reader = SpoolReader(root / "spool", queue, max_size=4096, use_inotify=False)
        reader.prepare()
        plant(root, name, kind, data, txn)
        handler = Lines()
        logger = logging.getLogger("push_notification.server.spool")
        logger.addHandler(handler)
        try:
            taken = asyncio.run(asyncio.wait_for(reader.scan(), 10))
        finally:
            logger.removeHandler(handler)
        assert taken == 1
        assert list((root / "spool" / "new").iterdir()) == [], "nothing is left behind in new/"
        in_bad = list((root / "spool" / "bad").iterdir())
        if queue.accepted:
            assert kind in ("bytes", "transaction") and in_bad == [] and handler.lines == []
        else:
            assert [p.name for p in in_bad] == [name]
            assert len(handler.lines) == 1 and "\n" not in handler.lines[0] and "\r" not in handler.lines[0]
            assert handler.lines[0].startswith("spool: moved ")
