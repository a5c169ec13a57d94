# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Packaging artifacts from one declaration file (debian/<package>.capabilities).

`capsnap generate deb|rpm` and dh_capsnap both come here, so the build-time
validation is capsnap's own parser: a bad line fails the build with
FILE:LINE and the reason.
"""

from __future__ import annotations

import os
from typing import Any

from capsnap import captext, render
from capsnap.declarations.entries import Entry, escape_path, parse_lines
from capsnap.errors import InvalidInput, OperationFailed


def read_declarations(path: str) -> list[Entry]:
    """Every entry of a declaration file, sorted by path; InvalidInput on a bad line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such declaration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read: {exc}") from None
    # Declarations describe the installed system, whatever kernel builds them.
    entries, bad = parse_lines(lines, len(captext.CAP_NAMES))
    if bad:
        more = f" (and {len(bad) - 1} more bad lines)" if len(bad) > 1 else ""
        raise InvalidInput(f"{path}:{bad[0].number}: {bad[0].detail}{more}")
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.path in seen:
            raise InvalidInput(f"{path}:{entry.line}: {entry.path} is already declared on "
                               f"line {seen[entry.path]}")
        seen[entry.path] = entry.line
    return sorted(entries, key=lambda e: e.path)


def root_equivalent_warnings(path: str, entries: list[Entry]) -> list[str]:
    """What a packager should hear at build time: each root-equivalent
    capability declared, by FILE:LINE (capsnap warns again on every install,
    and never gives such an entry the setuid fallback)."""
    from capsnap.fileops import root_equivalent_warnings as reasons

    return [f"{path}:{e.line}: {escape_path(e.path)}: {reason}; capsnap will warn on "
            "every install, and never gives it the setuid fallback"
            for e in sorted(entries, key=lambda e: e.line) for reason in reasons(e.caps)]


def _context(entries: list[Entry]) -> list[dict[str, Any]]:
    from capsnap.fileops import root_equivalent_names

    known = len(captext.CAP_NAMES)
    out = []
    for e in entries:
        fallback_mode = ""
        # As capsnap reapply decides: setuid root is root, never the fallback
        # for a package's root-equivalent capability.
        if e.fallback is not None and e.fallback.kind == "setuid" and \
                not root_equivalent_names(e.caps):
            fallback_mode = f"{e.fallback.mode:04o}"
        out.append({
            "path": e.path,
            "text": " ".join(e.text.split()),
            "canonical": captext.format_text(e.caps, known),
            "numeric": captext.format_text(e.caps, known, numeric=True),
            "fallback_mode": fallback_mode,
        })
    return out


def field_path(path: str) -> str:
    """A path as the File-Capabilities field holds it.

    dpkg-gencontrol expands ${name} in every field, and rescans what it
    substituted, so ${Newline} in a path would split one checked entry into
    several unchecked ones.  Its own escape, ${} for $ (deb-substvars(5)),
    would leave a wrong path wherever the field does not pass through it
    (a control file written by hand); the declaration syntax's octal escape
    reads the same everywhere and leaves no '$' at all.
    """
    return escape_path(path).replace("$", "\\044")


def field_entries(entries: list[Entry]) -> list[str]:
    """The File-Capabilities field's lines: path, canonical text, options."""
    known = len(captext.CAP_NAMES)
    lines = []
    for e in entries:
        line = f"{field_path(e.path)} {captext.format_text(e.caps, known)}"
        if e.fallback is not None:
            line += f" fallback={e.fallback}"
        lines.append(line)
    return lines


# Debian's and rpm's package-name characters together; nothing a shell, a
# spec's macro expansion or a file name (package.postinst) would read.
_PACKAGE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._")


def artifacts(kind: str, entries: list[Entry], package: str,
              strict: bool = False) -> dict[str, str]:
    """Artifact name -> content, in a fixed order."""
    if not package or package[0] in ".-" or not _PACKAGE_CHARS.issuperset(package):
        raise InvalidInput(f"package name {package!r} is not valid (letters, digits and "
                           "+-._ only)")
    entries = sorted(entries, key=lambda e: e.path)  # the same bytes whatever the order
    context = {"package": package, "entries": _context(entries), "strict": "1" if strict else "0",
               "autoscript": False}
    if kind == "deb":
        lines = field_entries(entries)
        return {
            "postinst": render.render("deb/postinst.j2", **context),
            "postrm": render.render("deb/postrm.j2", **context),
            "triggers": render.render("deb/triggers.j2", **context),
            "control": "File-Capabilities:\n" + "".join(f" {line}\n" for line in lines),
            "substvars": "capsnap:File-Capabilities=" +
                         "".join("${Newline}" + line for line in lines) + "\n",
        }
    if kind == "rpm":
        with open(os.path.join(render.templates_dir(), "rpm", "macros.capsnap"),
                  encoding="utf-8") as f:
            macros = f.read()
        return {
            "files": render.render("rpm/files.j2", **context),
            "posttrans": render.render("rpm/posttrans.j2", **context),
            "macros.capsnap": macros,
        }
    raise InvalidInput(f"unknown artifact kind {kind!r} (deb or rpm)")


def autoscripts() -> dict[str, str]:
    """dh_capsnap's autoscripts (/usr/share/debhelper/autoscripts): the same
    templates, with debhelper's #PACKAGE#, #STRICT# and #ENTRIES# tokens."""
    context = {"package": "#PACKAGE#", "entries": [], "strict": "#STRICT#",
               "autoscript": True}
    return {f"{script}-capsnap": render.render(f"deb/{script}.j2", **context)
            for script in ("postinst", "postrm")}


def write(directory: str, produced: dict[str, str], package: str) -> list[str]:
    written = []
    try:
        os.makedirs(directory, exist_ok=True)
        for name, content in produced.items():
            target = os.path.join(directory, name if name == "macros.capsnap"
                                  else f"{package}.{name}")
            # A path that is not UTF-8 goes into scripts and spec files as its bytes.
            with open(target, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(content)
            written.append(target)
    except OSError as exc:
        raise OperationFailed(f"{directory}: cannot write: {exc.strerror}") from None
    return written
