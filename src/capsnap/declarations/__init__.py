# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Where declared capabilities come from, and which declaration wins.

Sources: the dpkg status database (the File-Capabilities field of installed
packages), the rpm database (%caps, the FILECAPS tag), the local
administrator's files under /etc/capsnap/capabilities.d/, and the setcap
calls of installed packages' maintainer scripts (dpkg-script).  As with
dpkg-statoverride for owner and mode, a local declaration wins over any
package's (a local "none" keeps a file free of capabilities); a package's
declaration (dpkg, rpm) wins over what a script sets, which counts only once
seen on disk.  Two packages that disagree about one path are a conflict, and
that path is left alone until someone resolves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from capsnap import captext, xattr
from capsnap.declarations.entries import Fallback
from capsnap.paths import SystemPaths
from capsnap.records import NamedTuple

SOURCES = ("dpkg", "rpm", "local", "dpkg-script")
SCRIPT = "dpkg-script"
# Declaration.stored of each set of capabilities met (a pure function of it).
_STORED: dict[captext.CapSet, captext.CapSet] = {}


class Declaration(NamedTuple):
    path: str
    text: str  # capability text as declared
    caps: captext.CapSet
    source: str  # one of SOURCES
    package: str | None = None
    version: str | None = None
    origin: str = ""  # where it was read: "dpkg status", "FILE:LINE", "rpm database"
    reason: str | None = None
    owner: str | None = None  # for local declarations: the package that ships the path
    fallback: Fallback | None = None
    # A dpkg-script declaration is enforced only once seen on disk
    # (declarations.dpkg_script); every other one always is.
    confirmed: bool = True
    forced: bool = False  # local only: applied where the safety policy would refuse

    @property
    def stored(self) -> captext.CapSet:
        """The sets as the file will read back (one effective flag per file)."""
        # Asked for each declaration when resolving and again when checking.
        found = _STORED.get(self.caps)
        if found is None:
            found = _STORED[self.caps] = xattr.decode(xattr.encode(self.caps)).capset()
        return found

    def label(self) -> str:
        if self.source == "local":
            return f"local ({self.origin})"
        return f"{self.source}:{self.package} {self.version}"

    def as_json(self, known_bits: int) -> dict[str, object]:
        return {
            "path": self.path,
            "capabilities": captext.format_text(self.caps, known_bits),
            "declared_as": self.text,
            "source": self.source,
            "package": self.package,
            "version": self.version,
            "origin": self.origin,
            "reason": self.reason,
            "owner": self.owner,
            "fallback": str(self.fallback) if self.fallback else None,
            "enforced": self.confirmed,
            "forced": self.forced,
        }


class Problem(NamedTuple):
    """A declaration that could not be read; reported, never fatal."""

    source: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class Resolved(NamedTuple):
    """Everything declared for one path, and what capsnap will enforce."""

    path: str
    winner: Declaration | None
    overridden: tuple[Declaration, ...] = ()
    conflicting: tuple[Declaration, ...] = ()

    @property
    def in_conflict(self) -> bool:
        return bool(self.conflicting)

    def packages(self) -> set[str]:
        names = {d.package for d in (self.winner, *self.overridden, *self.conflicting)
                 if d is not None and d.package}
        if self.winner is not None and self.winner.owner:
            names.add(self.winner.owner)
        return names


class Catalogue:
    """Every declaration read, with the problems and notes met on the way."""

    def __init__(self, declarations: list[Declaration], problems: list[Problem],
                 notes: list[str]) -> None:
        self.declarations = declarations
        self.problems = problems
        self.notes = notes

    def unread(self) -> set[str]:
        """Sources not read whole: a database missing or unreadable, a local
        file bad.  What they declare is unknown, so nothing capsnap applied for
        them may be taken back on the grounds that nobody declares it."""
        out = {note.split(":", 1)[0] for note in self.notes}
        for problem in self.problems:
            if problem.source == "local" or not problem.where.startswith("package "):
                out.add(problem.source)
        return out

    def resolve(self, canonical: Callable[[str], str] | None = None) -> list[Resolved]:
        """What to enforce per file.  `canonical` maps a path to the one
        spelling of its file (on merged-/usr systems /bin/x is /usr/bin/x)."""
        by_path: dict[str, list[Declaration]] = {}
        for decl in self.declarations:
            if not decl.confirmed:
                continue  # listed by `list`, never enforced
            key = canonical(decl.path) if canonical else decl.path
            by_path.setdefault(key, []).append(decl)
        out = []
        for path in sorted(by_path):
            decls = by_path[path]
            local = [d for d in decls if d.source == "local"]
            packaged = [d for d in decls if d.source not in ("local", SCRIPT)]
            scripted = [d for d in decls if d.source == SCRIPT]
            if local:
                # The last local file read wins among local ones (sorted names).
                out.append(Resolved(path, local[-1],
                                    overridden=tuple(local[:-1] + packaged + scripted)))
                continue
            if not packaged:
                # What scripts set counts only where no package declares.
                packaged, scripted = scripted, []
            distinct = {d.stored for d in packaged}
            if len(distinct) > 1:
                out.append(Resolved(path, None, conflicting=tuple(packaged + scripted)))
            else:
                out.append(Resolved(path, packaged[0],
                                    overridden=tuple(packaged[1:] + scripted)))
        return out


def owner_of(paths: SystemPaths, path: str) -> tuple[str, str] | None:
    """The installed package (dpkg first, then rpm) that ships `path`, and its version."""
    from capsnap.declarations import dpkg, rpm

    return dpkg.owner_of(paths, path) or rpm.owner_of(paths, path)


def canonical_in(paths: SystemPaths) -> Callable[[str], str]:
    """The spelling of a path after following the symlinks of its directories
    inside the root; the path as it is when they lead outside."""
    import functools
    import os

    top = os.path.realpath(paths.root)

    @functools.lru_cache(maxsize=1024)
    def directory(d: str) -> str:
        real = os.path.realpath(paths.inside(d))
        if real == top:
            return "/"
        if top == "/" or real.startswith(top + "/"):
            return real[len(top):] if top != "/" else real
        return d

    def canonical(path: str) -> str:
        head, name = os.path.split(path)
        return os.path.join(directory(head), name)

    return canonical


def load(paths: SystemPaths, known_bits: int, sources: Iterable[str] = SOURCES,
         note: Callable[[str], None] | None = None) -> Catalogue:
    """Read every selected source; problems are collected, not raised."""
    catalogue = Catalogue([], [], [])
    for source in sources:
        if source == "dpkg":
            from capsnap.declarations import dpkg as reader
        elif source == "rpm":
            from capsnap.declarations import rpm as reader  # type: ignore[no-redef]
        elif source == SCRIPT:
            from capsnap.declarations import dpkg_script as reader  # type: ignore[no-redef]
        else:
            from capsnap.declarations import local as reader  # type: ignore[no-redef]
        try:
            decls, problems, notes = reader.read(paths, known_bits)
        except Exception as exc:  # one source's trouble must not stop the others
            from capsnap.errors import CapsnapError

            why = str(exc) if isinstance(exc, CapsnapError) else \
                getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
            decls, problems, notes = [], [Problem(source, f"{source} declarations",
                                                  f"cannot be read: {why}")], []
        catalogue.declarations.extend(decls)
        catalogue.problems.extend(problems)
        catalogue.notes.extend(notes)
    if note is not None:
        for line in catalogue.notes:
            note(line)
    return catalogue
