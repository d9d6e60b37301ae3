"""Logging for the daemon and the CLI: one line per record, as text or JSON.

A logged value may come from a mail user (a user or mailbox name, a spool file name), so
control characters are escaped: nobody can forge or split a log line. JSON lines carry the
delivery fields (instance, user, transaction id, outcome...) that log records pass as
``extra``, so a log shipper can filter on them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

#: ``extra`` keys a JSON line carries when a record has them (the dispatcher and the queue set them).
FIELDS = ("instance", "driver", "user", "mailbox", "txn_id", "event", "outcome", "attempt", "next_attempt", "latency")

#: C0 and C1 controls, DEL, the Unicode line separators and lone surrogates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``)."""
    return _UNSAFE.sub(_escape_char, text)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``; the message's control characters escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Only the record's own line is escaped; a traceback appended after it keeps its lines.
        return escape_controls(super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``--log-format json``), for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                data[key] = value
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        # ensure_ascii=False keeps names readable; what json leaves raw (DEL, C1, U+2028,
        # lone surrogates, which UTF-8 cannot even write) becomes a JSON escape.
        return _UNSAFE.sub(_json_escape, json.dumps(data, ensure_ascii=False, default=str))


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger once, writing to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
    # aiohttp's access log is noise at info level for a high-rate ingress.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
