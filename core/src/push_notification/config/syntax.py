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
from dataclasses import dataclass, field
from itertools import count

from push_notification.errors import ConfigError

_KEY_VALUE = re.compile(r"^([^\s=]*)\s*=\s*(.*)$")
_SECTION = re.compile(r"""^([^\s={}"']+)(?:\s+("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s{}"']+))?\s*\{\s*(\}?)$""")
_ESCAPE = re.compile(r"\\(.)")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^/\s@]*@")
_MAX_INCLUDE_DEPTH = 20


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


def _shown(line: str) -> str:
    """``line`` fit for an error message: URL passwords masked, as everywhere else."""
    return _URL_PASSWORD.sub(r"\1***@", line)


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
            value = unquote(kv.group(2), where, f"value of '{kv.group(1)}'")
            stack[-1].children.append(Entry(kv.group(1), value, source, number, next(self.orders)))
        elif (section := _SECTION.match(line)) is not None:
            name = unquote(section.group(2) or "", where, "block name")
            block = Block(section.group(1), name, source, number, next(self.orders))
            stack[-1].children.append(block)
            if not section.group(3):
                stack.append(block)
        elif "{" in line:
            raise ConfigError(
                f"{where}: cannot parse block header {_shown(line)!r} (write 'type [name] {{' and put each setting "
                "on its own line)"
            )
        else:
            raise ConfigError(f"{where}: expected 'name = value', 'type [name] {{' or '}}' but got {_shown(line)!r}")

    def _include(self, line: str, source: str, where: str, parent: Block) -> None:
        directive, *rest = line.split(maxsplit=1)
        argument = rest[0] if rest else ""
        if directive not in ("!include", "!include_try"):
            raise ConfigError(f"{where}: unknown directive {directive!r} (use !include or !include_try)")
        pattern = unquote(argument.strip(), where, f"{directive} path")
        if not pattern:
            raise ConfigError(f"{where}: {directive} needs a file name (e.g. {directive} conf.d/*.conf)")
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
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except FileNotFoundError:
            if directive == "!include_try":
                return
            raise ConfigError(f"{where}: !include: cannot read {path}: No such file or directory") from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"{where}: {directive}: {path} is not UTF-8 text (save it as UTF-8 or leave it out of the pattern)"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{where}: {directive}: cannot read {path}: {exc.strerror}") from None
        self.including.append(real)
        try:
            self.parse(text, path, parent)
        finally:
            self.including.pop()
