"""Reading dlog lines from Dovecot's log and from our daemon's log into comparable blocks.

A block is one ``Mailbox data:``/``Message data:`` line with the event lines under it. Both
sides are normalised for the differences we make on purpose (drivers/dlog/README.md):

* Dovecot labels the UTC wall-clock time with the message's offset in ``Date [...]``; we
  print the local time for that offset (same instant). Dovecot's value is converted.
* Dovecot logs the raw Subject; Dovecot's Lua API gives the bridge only the decoded one, so
  Dovecot's value is RFC 2047-decoded before comparing.
* Dovecot's ``MailboxUnsubscribe: Mailbox was subscribed to`` is a copy/paste bug we fix.
* With two drivers Dovecot repeats mailbox events and keywords once per driver (it shares
  one event registry); the bridge keeps one, so repeated lines within a block count once.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from email.header import decode_header, make_header

Block = tuple[str, tuple[str, ...]]

_DOVECOT_LINE = re.compile(r"^\w{3} [ \d]\d [\d:]{8} (?P<proc>\S+?): Debug: (?P<text>.*)$")
_EVENT = re.compile(r"^(FlagsClear|FlagsSet|Mailbox[A-Za-z]+|Message[A-Za-z]+): ")
_HEADER = re.compile(r"^(Mailbox|Message) data: ")
_TXN_END = "Called end_txn push_notification plugin hook."
_DATE = re.compile(r"^(Message(?:New|Append)): Date \[(.*)\]$")
_SUBJECT = re.compile(r"^(Message(?:New|Append)): Subject \[(.*)\]$")


def dovecot_streams(log_text: str) -> dict[str, list[str]]:
    """Dovecot's debug lines, per process/session prefix (processes interleave in the log)."""
    streams: dict[str, list[str]] = {}
    for line in log_text.splitlines():
        match = _DOVECOT_LINE.match(line)
        if match:
            streams.setdefault(match["proc"], []).append(match["text"])
    return streams


def daemon_streams(log_text: str, instance: str) -> dict[str, list[str]]:
    """Our dlog instance's lines (one stream: the dispatcher runs an instance's hooks in order)."""
    marker = re.compile(rf"\s{re.escape(instance)}: (.*)$")  # not the logger name's ".ourdlog: "
    lines = [match[1] for match in map(marker.search, log_text.splitlines()) if match]
    return {instance: lines}


def blocks(streams: dict[str, list[str]]) -> Counter[Block]:
    """Every data block, de-duplicated within itself, as a multiset."""
    found: Counter[Block] = Counter()
    for lines in streams.values():
        header: str | None = None
        events: list[str] = []
        for text in [*lines, "Called end"]:
            if _HEADER.match(text) or text.startswith("Called "):
                if header is not None:
                    found[(header, tuple(dict.fromkeys(events)))] += 1
                header, events = (text, []) if _HEADER.match(text) else (None, [])
            elif header is not None and _EVENT.match(text):
                events.append(text)
    return found


def transactions_ended(streams: dict[str, list[str]]) -> int:
    return sum(lines.count(_TXN_END) for lines in streams.values())


def normalise_dovecot(block: Block) -> Block:
    """Dovecot's block as our dlog writes it (see the module docstring for why)."""
    header, events = block
    fixed = []
    for text in events:
        date = _DATE.match(text)
        subject = _SUBJECT.match(text)
        if date:
            text = f"{date[1]}: Date [{_local_date(date[2])}]"
        elif subject:
            text = f"{subject[1]}: Subject [{make_header(decode_header(subject[2]))}]"
        elif text == "MailboxUnsubscribe: Mailbox was subscribed to":
            text = "MailboxUnsubscribe: Mailbox was unsubscribed from"
        fixed.append(text)
    return header, tuple(dict.fromkeys(fixed))


def _local_date(value: str) -> str:
    """``gmtime`` wall time labelled with the offset → the local time at that offset."""
    labelled = datetime.fromisoformat(value)
    offset = labelled.utcoffset() or timedelta(0)
    local = (labelled.replace(tzinfo=None) + offset).replace(tzinfo=labelled.tzinfo)
    return local.isoformat()
