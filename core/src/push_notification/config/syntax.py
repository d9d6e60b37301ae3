"""Dovecot config-file syntax: lines to a tree of blocks and ``key = value`` entries.

Kept apart from the meaning of the settings (config.py) so the syntax can be tested and
reused alone. It follows Dovecot's ``config-parser.c``: ``key = value``, ``type [name] {``,
``}``, ``!include`` / ``!include_try`` (relative to the including file, glob patterns),
``\\`` at the end of a line continues it, and ``"quoted"`` / ``'quoted'`` values with
backslash escapes.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from dataclasses import dataclass, field
from itertools import count

from push_notification.errors import ConfigError

_KEY_VALUE = re.compile(r"^([^\s=]*)\s*=\s*(.*)$")
_SECTION = re.compile(r"""^([^\s={}"']+)(?:\s+("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s{}"']+))?\s*\{\s*(\}?)$""")
_ESCAPE = re.compile(r"\\(.)")
#: What a setting or block name looks like; anything else is not shown back (it may be a secret).
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,99}")
_MAX_INCLUDE_DEPTH = 20
#: Blocks nest a few levels (instance, lua_settings); deeper is a broken or hostile file.
MAX_BLOCK_DEPTH = 20
#: A config file is a few kilobytes; a bigger one is the wrong file.
MAX_FILE_SIZE = 4 << 20


@dataclass
class Entry:
    """One ``key = value`` line."""

    key: str
    value: str
    source: str
    line: int
    order: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass
class Block:
    """A ``kind [name] { ... }`` block; the file itself is the root block (kind "")."""

    kind: str
    name: str
    source: str
    line: int
    order: int
    children: list[Entry | Block] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def title(self) -> str:
        return f"{self.kind} {self.name}".strip()


def parse_tree(text: str, source: str) -> Block:
    """The tree of ``text`` (read from ``source``), with every ``!include`` expanded in place."""
    root = Block("", "", source, 0, 0)
    including = [] if source.startswith("<") else [os.path.realpath(source)]
    _Parser(count(1), including).parse(text, source, root)
    return root


def _strip_comment(line: str) -> str:
    """``line`` without its comment.

    Unlike Dovecot (which cuts at any ``#`` outside quotes and only warns), ``#`` starts a
    comment only at the start or after whitespace, so ``url = http://host/#frag`` survives.
    A quote opens quoting only at the start of a word, so ``it's # note`` is still a comment.
    """
    quote = ""
    for i, char in enumerate(line):
        previous = line[i - 1] if i else " "
        if quote:
            if char == quote and previous != "\\":
                quote = ""
        elif char in "\"'" and (previous.isspace() or previous == "="):
            quote = char
        elif char == "#" and previous.isspace():
            return line[:i].rstrip()
    return line.rstrip()


def unquote(text: str, where: str, what: str) -> str:
    """``text`` with surrounding quotes removed and backslash escapes resolved."""
    if not text or text[0] not in "\"'":
        return text
    quote = text[0]
    match = re.match(rf"{quote}((?:[^{quote}\\]|\\.)*){quote}(.*)$", text)
    if match is None:
        raise ConfigError(f"{where}: missing closing {quote} in {what} (close the quote or remove it)")
    if match.group(2).strip():
        raise ConfigError(f"{where}: unexpected text after the quoted {what} (put the whole value inside the quotes)")
    return _ESCAPE.sub(r"\1", match.group(1))


def read_config_file(path: str) -> str:
    """The text of the config file ``path``: a regular UTF-8 file of at most MAX_FILE_SIZE.

    Errors are ``PATH: reason``. Nothing of the file's content is ever shown: a wrong path
    (``/etc/shadow``) must not print what it reads.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    too_big = ConfigError(f"{path}: larger than {MAX_FILE_SIZE >> 20} MiB (is this the config file?)")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file (name a config file)")
        if info.st_size > MAX_FILE_SIZE:
            raise too_big
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_SIZE:
        raise too_big
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (is this the config file?)") from None


@dataclass
class _Parser:
    orders: count[int]
    including: list[str]

    def parse(self, text: str, source: str, root: Block) -> None:
        """Add the statements of ``text`` to ``root``; blocks must close in the same file."""
        stack = [root]
        pending, pending_line = "", 0
        for number, raw in enumerate(text.splitlines(), start=1):
            line = _strip_comment(raw).strip()
            if line.endswith("\\"):
                pending_line = pending_line or number
                pending += line[:-1].rstrip() + " "
                continue
            if pending:
                line, number, pending, pending_line = pending + line, pending_line, "", 0
            if line:
                self._statement(line, source, number, stack)
        if pending:  # the last line ended with a backslash
            self._statement(pending.strip(), source, pending_line, stack)
        if len(stack) > 1:
            block = stack[-1]
            raise ConfigError(f"{block.where}: {block.title}: missing '}}' (block opened here is never closed)")

    def _statement(self, line: str, source: str, number: int, stack: list[Block]) -> None:
        where = f"{source}:{number}"
        if line.startswith("}"):
            if line != "}":
                raise ConfigError(f"{where}: unexpected text after '}}' (put it on its own line)")
            if len(stack) == 1:
                raise ConfigError(f"{where}: unexpected '}}' (no block is open here; remove it)")
            stack.pop()
        elif line.startswith("!"):
            self._include(line, source, where, stack[-1])
        elif (kv := _KEY_VALUE.match(line)) is not None:
            if not kv.group(1):
                raise ConfigError(f"{where}: missing setting name before '=' (write 'name = value')")
            if _NAME.fullmatch(kv.group(1)) is None:
                raise ConfigError(f"{where}: invalid setting name (use letters, digits and '_'; a config file?)")
            value = unquote(kv.group(2), where, f"value of '{kv.group(1)}'")
            stack[-1].children.append(Entry(kv.group(1), value, source, number, next(self.orders)))
        elif (section := _SECTION.match(line)) is not None:
            if _NAME.fullmatch(section.group(1)) is None:
                raise ConfigError(f"{where}: invalid block type (use letters, digits and '_'; is this a config file?)")
            name = unquote(section.group(2) or "", where, "block name")
            block = Block(section.group(1), name, source, number, next(self.orders))
            stack[-1].children.append(block)
            if not section.group(3):
                if len(stack) > MAX_BLOCK_DEPTH:
                    raise ConfigError(f"{where}: blocks nest more than {MAX_BLOCK_DEPTH} deep (close some with '}}')")
                stack.append(block)
        elif "{" in line:
            raise ConfigError(
                f"{where}: cannot parse this block header (write 'type [name] {{' and put each setting on its own line)"
            )
        else:
            # The line is not shown: without '=' it may be a secret ('ingress_token s3cret') or
            # a line of a file included by mistake.
            raise ConfigError(f"{where}: expected 'name = value', 'type [name] {{' or '}}' (is a '=' missing?)")

    def _include(self, line: str, source: str, where: str, parent: Block) -> None:
        directive, *rest = line.split(maxsplit=1)
        argument = rest[0] if rest else ""
        if directive not in ("!include", "!include_try"):
            raise ConfigError(f"{where}: unknown directive {directive!r} (use !include or !include_try)")
        pattern = unquote(argument.strip(), where, f"{directive} path")
        if not pattern:
            raise ConfigError(f"{where}: {directive} needs a file name (e.g. {directive} conf.d/*.conf)")
        if "\0" in pattern:
            raise ConfigError(f"{where}: {directive}: the file name contains a NUL byte (remove it)")
        base = os.path.dirname(source) if not source.startswith("<") else os.getcwd()
        pattern = os.path.normpath(os.path.join(base, os.path.expanduser(pattern)))
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not paths and directive == "!include":
            raise ConfigError(f"{where}: !include: no file matches {pattern} (fix the pattern or use !include_try)")
        for path in paths:
            self._include_file(path, directive, where, parent)

    def _include_file(self, path: str, directive: str, where: str, parent: Block) -> None:
        real = os.path.realpath(path)
        if real in self.including:
            raise ConfigError(f"{where}: {directive}: {path} includes itself (remove the loop)")
        if len(self.including) >= _MAX_INCLUDE_DEPTH:
            raise ConfigError(f"{where}: {directive}: includes nest more than {_MAX_INCLUDE_DEPTH} deep (flatten them)")
        if directive == "!include_try" and not os.path.lexists(path):
            return
        try:
            text = read_config_file(path)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {directive}: {exc}") from None
        self.including.append(real)
        try:
            self.parse(text, path, parent)
        finally:
            self.including.pop()
