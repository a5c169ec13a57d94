# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""One line syntax for every capability declaration (pure).

Used by `debian/<package>.capabilities`, the `File-Capabilities` control
field (one entry per continuation line) and the local files under
/etc/capsnap/capabilities.d/:

    PATH CAPABILITY-TEXT [fallback=none|setuid[:MODE]] [owner=PACKAGE] [forced=yes]
        [# comment]

CAPABILITY-TEXT "none" (or "=") declares that the file has no capabilities.

PATH is absolute; whitespace, a backslash, '#', and any byte that is not
printable UTF-8 in it is written as a three-digit octal escape of the byte
(\\040, \\377) as fstab(5) does, so any Linux file name can be declared.
Control characters (C0, DEL, C1) are refused: no packaged file needs one,
and they would reach terminals and logs.  The capability text
is everything between the path and the first option, so it may hold several
space-separated clauses; no capability is called "fallback", "owner" or
"forced", so the options cannot be mistaken for text.  A comment after an
entry is its reason.  `forced=yes` (the administrator's `declare --force`)
applies the capability where the safety policy would refuse it; only local
declarations may carry it, never a package's.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from capsnap import captext, display
from capsnap.errors import CapTextError, InvalidInput
from capsnap.records import NamedTuple

DEFAULT_SETUID_MODE = 0o4755
_OCTAL = frozenset("01234567")
_OPTIONS = ("fallback", "owner", "forced")

# String methods rather than re: hooks parse declarations on every
# transaction, and re (with enum) costs more to import than they take.


def unescape_path(text: str) -> str:
    """fstab-style escapes: a backslash and three octal digits is a byte."""
    return display.unescape(text)


def escape_path(path: str) -> str:
    """The path as the entry syntax writes it: whitespace and '#' too are escaped."""
    return display.escape(path, " #")


def control_character_in(path: str) -> bool:
    """Whether `path` holds a C0 or C1 control character or DEL."""
    return not path.isprintable() and any(
        c < " " or "\x7f" <= c <= "\x9f" for c in path)


class Fallback(NamedTuple):
    """What a packager wants where the filesystem cannot hold capabilities."""

    kind: str  # "none" or "setuid"
    mode: int = DEFAULT_SETUID_MODE

    def __str__(self) -> str:
        if self.kind == "setuid":
            return f"setuid:{self.mode:04o}"
        return self.kind


class Entry(NamedTuple):
    path: str
    text: str  # the capability text as written
    caps: captext.CapSet
    fallback: Fallback | None = None
    owner: str | None = None
    comment: str | None = None
    line: int = 0
    forced: bool = False

    def format(self) -> str:
        parts = [escape_path(self.path), self.text]
        if self.fallback is not None:
            parts.append(f"fallback={self.fallback}")
        if self.owner:
            parts.append(f"owner={self.owner}")
        if self.forced:
            parts.append("forced=yes")
        line = " ".join(parts)
        if self.comment:
            line += f"  # {self.comment}"
        return line


def _parse_fallback(value: str) -> Fallback:
    if value == "none":
        return Fallback("none")
    kind, colon, digits = value.partition(":")
    if kind != "setuid" or (colon and not (3 <= len(digits) <= 4 and set(digits) <= _OCTAL)):
        raise InvalidInput("fallback must be 'none' or 'setuid[:MODE]' (e.g. setuid:4755)")
    mode = int(digits, 8) if colon else DEFAULT_SETUID_MODE
    if not mode & 0o4000 or mode & 0o022:
        raise InvalidInput(f"fallback mode {mode:04o} must have the setuid bit and no "
                           "group or other write bit")
    return Fallback("setuid", mode)


def split_comment(line: str) -> tuple[str, str | None]:
    stripped = line.strip()
    if stripped.startswith("#"):
        return "", None
    at = stripped.find("#", 1)
    while at > 0 and not stripped[at - 1].isspace():
        at = stripped.find("#", at + 1)
    if at < 0:
        return stripped, None
    return stripped[:at - 1].rstrip(), stripped[at + 1:].strip() or None


def parse_entry(line: str, number: int = 0, known_bits: int = len(captext.CAP_NAMES),
                local: bool = False) -> Entry | None:
    """Parse one line; None for blank and comment lines; InvalidInput if bad.
    `local`: the administrator's own file, where `forced=yes` is allowed."""
    body, comment = split_comment(line)
    if not body:
        return None
    tokens = body.split()
    # The messages never quote the line: a declaration file may be a symlink
    # to a secret, and these messages reach logs and terminals.
    path = unescape_path(tokens[0])
    if not path.startswith("/"):
        raise InvalidInput("the path is not absolute")
    if control_character_in(path):
        raise InvalidInput("the path holds a control character (C0, DEL or C1); capsnap "
                           "refuses such paths")
    if ".." in path.split("/"):
        raise InvalidInput("the path has a '..' component: give the real path")
    # One spelling per file: "/usr//bin/x/" and "/usr/bin/x" must meet.
    path = posixpath.normpath(path).replace("//", "/")
    options: dict[str, str] = {}
    rest = tokens[1:]
    while rest and rest[-1].partition("=")[0] in _OPTIONS and "=" in rest[-1]:
        name, _, value = rest.pop().partition("=")
        if name in options:
            raise InvalidInput(f"option {name} given twice")
        options[name] = value
    if not rest:
        raise InvalidInput("no capability text after the path")
    text = " ".join(rest)
    # "none" (or "="): no capabilities at all, as an administrator's mask
    # over any package's declaration, like dpkg-statoverride over a mode.
    caps = captext.CapSet() if text == "none" else captext.parse_file_caps(text, known_bits)
    fallback = _parse_fallback(options["fallback"]) if "fallback" in options else None
    owner = options.get("owner") or None
    forced = "forced" in options
    if forced and options["forced"] != "yes":
        raise InvalidInput("forced must be 'yes'")
    if forced and not local:
        raise InvalidInput("forced=yes is for the administrator's local declarations only")
    return Entry(path=path, text=text, caps=caps, fallback=fallback, owner=owner,
                 comment=comment, line=number, forced=forced)


class BadLine(NamedTuple):
    number: int
    reason: str  # never quotes the line
    detail: str  # the full message, quoting the capability text where it is wrong


def parse_lines(lines: Iterable[str], known_bits: int = len(captext.CAP_NAMES),
                local: bool = False) -> tuple[list[Entry], list[BadLine]]:
    """Every entry of a file or field, and what is wrong with each bad line.

    A bad line never hides the good ones around it.
    """
    entries: list[Entry] = []
    bad: list[BadLine] = []
    for number, line in enumerate(lines, start=1):
        try:
            entry = parse_entry(line, number, known_bits, local)
        except CapTextError as exc:
            where = f" (clause {exc.clause_number})" if exc.clause_number else ""
            bad.append(BadLine(number, f"invalid capability text{where}", str(exc)))
            continue
        except InvalidInput as exc:
            bad.append(BadLine(number, str(exc), str(exc)))
            continue
        if entry is not None:
            entries.append(entry)
    return entries, bad
