# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""The local administrator's declarations under /etc/capsnap/capabilities.d/.

Plain text files in the common entry syntax, read in name order; a comment
after an entry is its reason.  `capsnap declare` and `undeclare` edit them
line by line, keeping every other line and comment, and replace the file
atomically (write a temporary file beside it, fsync, rename).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable

from capsnap import captext, confine
from capsnap.declarations import Declaration, Problem
from capsnap.declarations.entries import Entry, escape_path, parse_entry, parse_lines
from capsnap.errors import CapsnapError, InvalidInput, OperationFailed
from capsnap.paths import SystemPaths

SUFFIX = ".capabilities"
HEADER = """\
# Local capability declarations for capsnap (see capsnap(1)).
# One entry a line: PATH CAPABILITY-TEXT [fallback=...] [owner=PACKAGE] [forced=yes]  # reason
# A local declaration wins over any package's. 'capsnap declare' and
# 'capsnap undeclare' edit this file and keep your comments.
"""


def declaration_files(paths: SystemPaths) -> list[str]:
    try:
        names = sorted(confine.listdir(paths, paths.local_declarations_dir))
    except FileNotFoundError:
        return []
    return [os.path.join(paths.local_declarations_dir, n) for n in names
            if n.endswith(SUFFIX) and not n.startswith(".")]


def read(paths: SystemPaths, known_bits: int) \
        -> tuple[list[Declaration], list[Problem], list[str]]:
    decls: list[Declaration] = []
    problems: list[Problem] = []
    try:
        files = declaration_files(paths)
    except (OSError, CapsnapError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        return [], [Problem("local", paths.local_declarations_dir,
                            f"cannot list local declarations: {why}")], []
    for file in files:
        try:
            text = confine.read_bytes(paths, file).decode("utf-8")
        except UnicodeDecodeError:
            problems.append(Problem("local", file, "not UTF-8 text; fix or remove the file"))
            continue
        except OSError as exc:
            problems.append(Problem("local", file, f"cannot read: {exc.strerror}"))
            continue
        entries, bad = parse_lines(text.splitlines(), known_bits, local=True)
        for line in bad:  # by number, never quoted: the file may be a symlink to a secret
            problems.append(Problem("local", f"{file}:{line.number}", line.reason))
        for entry in entries:
            decls.append(Declaration(
                path=entry.path, text=entry.text, caps=entry.caps, source="local",
                origin=f"{file.removeprefix(paths.root.rstrip('/'))}:{entry.line}",
                reason=entry.comment, owner=entry.owner, fallback=entry.fallback,
                forced=entry.forced))
    return decls, problems, []


def _write_atomically(paths: SystemPaths, path: str, content: str) -> None:
    try:
        # The directory is capsnap's: whoever could write it could make
        # root write through a link planted there.
        confine.write_atomically(paths, path, content.encode("utf-8", "surrogateescape"),
                                 sync=True)
    except OSError as exc:
        raise OperationFailed(f"{path}: cannot write: {exc.strerror}") from None


def _lines_of(paths: SystemPaths, file: str) -> list[str]:
    try:
        return confine.read_bytes(paths, file).decode("utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OperationFailed(f"{file}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise OperationFailed(f"{file}: not UTF-8 text; fix or remove the file") from None


def _readable_lines(paths: SystemPaths, file: str) -> list[str]:
    """A file's lines, or none when it cannot be read (`list` reports it)."""
    try:
        return _lines_of(paths, file)
    except OperationFailed:
        return []


def _declares(line: str, path: str, canonical: Callable[[str], str] | None = None) -> bool:
    try:
        entry = parse_entry(line, local=True)
    except InvalidInput:
        return False
    return entry is not None and (entry.path == path or (
        canonical is not None and canonical(entry.path) == canonical(path)))


def checked(path: str, text: str, known_bits: int) -> Entry:
    """The entry `path` and `text` make; InvalidInput, naming the path, if
    the syntax cannot hold them."""
    try:
        entry = parse_entry(f"{escape_path(path)} {text}", known_bits=known_bits)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc}") from None
    assert entry is not None
    return entry


def declare(paths: SystemPaths, path: str, text: str, reason: str | None,
            owner: str | None, known_bits: int, forced: bool = False,
            canonical: Callable[[str], str] | None = None) -> tuple[str, bool]:
    """Add or replace the local declaration of `path` (with `canonical`, of
    any spelling of its file); (file, replaced)."""
    parsed = checked(path, text, known_bits)
    path = parsed.path
    if reason is not None and ("\n" in reason or "#" in reason):
        raise InvalidInput("--reason must be one line without '#'")
    # Every way of saying "no capabilities" ("=", "none") is written "none".
    text = "none" if parsed.caps.is_empty() else " ".join(text.split())
    entry = Entry(path=path, text=text, caps=captext.CapSet(),
                  owner=owner, comment=reason, forced=forced)
    target = paths.local_declarations_file
    for file in declaration_files(paths):
        if any(_declares(line, path, canonical) for line in _readable_lines(paths, file)):
            target = file
            break
    lines = _lines_of(paths, target)
    replaced = False
    out = []
    for line in lines:
        if _declares(line, path, canonical):
            if not replaced:
                old = parse_entry(line, local=True)
                if reason is None and old is not None and old.comment:
                    entry = entry._replace(comment=old.comment)
                out.append(entry.format())
            replaced = True
        else:
            out.append(line)
    if not replaced:
        if not lines:
            out = HEADER.splitlines()
        out.append(entry.format())
    _write_atomically(paths, target, "\n".join(out) + "\n")
    return target, replaced


def undeclare(paths: SystemPaths, path: str,
              canonical: Callable[[str], str] | None = None) -> list[str]:
    """Remove every local declaration of `path` (with `canonical`, of any
    spelling of its file); the files changed."""
    path = posixpath.normpath(path)
    changed = []
    for file in declaration_files(paths):
        lines = _readable_lines(paths, file)
        kept = [line for line in lines if not _declares(line, path, canonical)]
        if len(kept) != len(lines):
            _write_atomically(paths, file, "\n".join(kept) + "\n")
            changed.append(file)
    if not changed:
        # Said with the path as given: every message is escaped when printed.
        raise InvalidInput(f"{path} has no local declaration (see 'capsnap list "
                           "--source local')")
    return changed
