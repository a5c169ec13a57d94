# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""dpkg-script declarations learned by watching: what a package's own files
gained while its configure ran.

The script reader (declarations.scripts) sees setcap in its common forms,
not a call through a helper in another file, `eval`, a path a command
computes or a compiled helper.  The closing hook of each dpkg or apt run
sees their effect: it knows which packages the run configured (their status
paragraph changed and they are configured now), when the run began (the
mtime of the marker its first hook left) and what capsnap itself wrote in it
(the transaction's actions).  A file of such a package that has
capabilities, whose inode changed (ctime) since the run began, that capsnap
did not write, that the run did not find already so, and that no local,
dpkg or rpm declaration (nor the script reader, with the same text)
explains, was given them by the run: it is recorded for the package,
exactly as seen, so it is confirmed by construction.  A capability set by
hand between runs is older than the run and never counts.

It is withdrawn as a script-read one is: when a configure of the package
leaves a new file there that the run did not give it (even one capsnap put
it back on after an unpack: only the package's configure counts), and it is
forgotten when the package is removed or the path leaves its file list.
A file that merely lost it (the same file, or the package not configured,
as after `dpkg --unpack`) has drifted and is restored.

The records live in capsnap's state directory (at most LIMIT of them), read
by every declarations.load, so this module imports little.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from capsnap import cache, confine
from capsnap.declarations import Declaration
from capsnap.errors import CapsnapError
from capsnap.paths import SystemPaths
from capsnap.records import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from capsnap.declarations import Catalogue
    from capsnap.store import Row

SOURCE = "dpkg-script"
LIMIT = 1000  # records kept at most: what a run adds beyond is not learned
_STATE = "script-observed"
_FORMAT = 1
_CONFIGURED = {"installed", "triggers-pending", "triggers-awaited"}
_ON_DISK = {"installed", "half-configured", "unpacked", "triggers-awaited",
            "triggers-pending"}

# One record per path: [text, inode, size, mtime_ns, btime_ns or -1], the
# capabilities as seen (getcap's form) and the file they were seen on.
Record = list[object]
Records = dict[str, dict[str, Record]]


class Seen(NamedTuple):
    """A file of a package the run configured, as the run left it."""

    package: str
    path: str  # the file's one name (merged /usr: /usr/bin/ping)
    text: str | None  # its capabilities (getcap's form); None: none, or namespaced
    ident: tuple[int, int, int, int] | None  # inode, size, mtime, btime (-1); None: gone
    changed: bool  # its inode changed (ctime) after the run began
    explained: bool  # capsnap wrote it in the run, or another declaration says so
    kept: bool  # the run began with this very file holding these capabilities


def same_file(recorded: Iterable[object], now: tuple[int, int, int, int]) -> bool:
    """Whether a record and a file now are one file: one inode, and one birth
    time (or, where the filesystem keeps none, one size and mtime: dpkg's new
    file often gets the inode number of the one it replaced)."""
    ino, size, mtime, btime = list(recorded)
    if ino != now[0]:
        return False
    if isinstance(btime, int) and btime >= 0 and now[3] >= 0:
        return btime == now[3]
    return (size, mtime) == now[1:3]


def decide(records: Records, seen: Iterable[Seen], configured: Iterable[str]) -> Records:
    """The records after a run, from those before it and the files `seen` of
    the packages it `configured` (pure).  A record `seen` says nothing of
    is kept as it was."""
    chosen = set(configured)
    out = {package: dict(paths) for package, paths in records.items()}
    count = sum(len(paths) for paths in out.values())
    for s in seen:
        if s.package not in chosen:
            continue
        mine = out.setdefault(s.package, {})
        before = mine.get(s.path)
        if s.text is not None and s.ident is not None and s.changed and \
                not s.explained and not s.kept:
            if before is None and count >= LIMIT:
                continue
            count += before is None
            mine[s.path] = [s.text, *s.ident]
        elif before is not None and (s.ident is None or not same_file(before[1:], s.ident)):
            # The package's configure left another file there (or none)
            # and did not give it this: withdrawn.
            del mine[s.path]
            count -= 1
    return {package: paths for package, paths in out.items() if paths}


# --- the state file ------------------------------------------------------------

def _state_file(paths: SystemPaths) -> str:
    return os.path.join(paths.state_dir, f"{_STATE}.marshal")


def load(paths: SystemPaths) -> tuple[Records, object]:
    """The records, and the identity of dpkg's info directory when their
    packages' file lists were last looked at."""
    data = cache.read_marshal(paths, _state_file(paths))
    observed = data.get("observed")
    if data.get("format") != _FORMAT or not isinstance(observed, dict):
        return {}, None
    records: Records = {}
    for package, entries in observed.items():
        if not (isinstance(package, str) and isinstance(entries, dict)):
            continue
        for path, record in entries.items():
            if isinstance(path, str) and isinstance(record, list) and len(record) == 5 \
                    and isinstance(record[0], str) \
                    and all(isinstance(n, int) for n in record[1:]):
                records.setdefault(package, {})[path] = record
    return records, data.get("lists")


def save(paths: SystemPaths, records: Records, lists: object) -> None:
    import contextlib
    import marshal

    # An unprivileged or read-only run (capsnap list as a user): the next
    # hook does it.
    with contextlib.suppress(OSError, ValueError, CapsnapError):
        confine.write_atomically(paths, _state_file(paths), marshal.dumps(
            {"format": _FORMAT, "observed": records, "lists": lists}))


def packages(paths: SystemPaths) -> set[str]:
    return set(load(paths)[0])


# --- reading them as declarations ------------------------------------------------

def _listed(paths: SystemPaths, records: Records, lists: object) \
        -> tuple[Records, object]:
    """The records whose path is still in its package's file list; the file
    lists are read only when dpkg changed its info directory since."""
    from capsnap.declarations import canonical_in, dpkg

    try:
        with confine.directory(paths, paths.dpkg_info) as info:
            now: object = cache.identity(os.fstat(info))
    except (OSError, CapsnapError):
        return records, lists
    if now == lists:
        return records, lists
    canonical = canonical_in(paths)
    diverted = dpkg.diversions(paths)
    out: Records = {}
    for package, entries in records.items():
        files = dpkg.package_files(paths, package) or []
        names = {canonical(dpkg.true_name(f, package, diverted)) for f in files}
        kept = {path: record for path, record in entries.items() if path in names}
        if kept:
            out[package] = kept
    return out, now


def _look(paths: SystemPaths, path: str) -> tuple[tuple[int, int, int, int] | None, bytes | None]:
    """A file's identity and raw capabilities; (None, None) when it is gone."""
    from capsnap import fileops

    try:
        with fileops.open_target(path, paths.root) as target:
            st = target.st
            btime = fileops.birth_time_ns(fd=target.fd)
            return ((st.st_ino, st.st_size, st.st_mtime_ns, -1 if btime is None else btime),
                    fileops.read_raw(target))
    except (OSError, CapsnapError):
        return None, None


def _text(raw: bytes | None, known_bits: int) -> str | None:
    """Capabilities as getcap writes them; None for none, or namespaced ones
    (a container's root set those, not the package's configure here)."""
    from capsnap import captext, xattr
    from capsnap.errors import AttrFormatError

    if raw is None:
        return None
    try:
        caps = xattr.decode(raw)
    except AttrFormatError:
        return None
    return None if caps.revision == 3 else captext.format_text(caps.capset(), known_bits)


def read(paths: SystemPaths, known_bits: int, status: dict[str, tuple[str, str]],
         script: Iterable[Declaration] = ()) -> list[Declaration]:
    """The records as declarations, once the records of removed packages, of
    paths that left their package's list, and of files a configure left
    without them (status: package -> dpkg state, version) are dropped."""
    from capsnap import captext
    from capsnap.declarations import dpkg
    from capsnap.errors import CapTextError

    records, lists = load(paths)
    if not records:
        return []
    before = {package: dict(entries) for package, entries in records.items()}
    records = {package: entries for package, entries in records.items()
               if status.get(package, ("", ""))[0] in _ON_DISK}
    records, lists_now = _listed(paths, records, lists)
    # The script reader's own finding of the same thing is the one shown.
    read_too = {(d.package, alias, d.text) for d in script
                for alias in dpkg.path_aliases(d.path)}
    decls = []
    for package in sorted(records):
        state, version = status[package]
        for path in sorted(records[package]):
            record = records[package][path]
            text = str(record[0])
            if state in _CONFIGURED:
                ident, raw = _look(paths, path)
                if ident is not None and not same_file(record[1:], ident) and \
                        _text(raw, known_bits) != text:
                    # A configure (without capsnap's hooks) left a new file
                    # without it.
                    del records[package][path]
                    continue
            try:
                caps = captext.parse_file_caps(text, known_bits)
            except CapTextError:
                continue  # a capability this kernel does not know: not enforceable
            if (package, path, text) in read_too:
                continue
            decls.append(Declaration(path=path, text=text, caps=caps, source=SOURCE,
                                     package=package, version=version,
                                     origin=f"configure of {package}",
                                     reason=f"seen set during {package}'s configure"))
    records = {package: entries for package, entries in records.items() if entries}
    if records != before or lists_now != lists:
        save(paths, records, lists_now)
    return decls


# --- learning them in a hook -------------------------------------------------------

def configured(paths: SystemPaths, names: Iterable[str]) -> dict[str, str]:
    """Which of `names` dpkg has configured now, with their versions."""
    from capsnap.declarations import dpkg

    wanted = {name for name in names if ":" not in name}
    if not wanted:
        return {}
    out = {}
    try:
        paragraphs = dpkg.database_paragraphs(paths)
    except (OSError, CapsnapError):
        return {}
    for para in paragraphs:
        name = dpkg._field(para, "Package")
        if name in wanted:
            status = dpkg._field(para, "Status").split()
            if status and status[-1] in _CONFIGURED:
                out[name] = dpkg._field(para, "Version")
    return out


def _ctime(paths: SystemPaths, path: str) -> int | None:
    try:
        return confine.lstat(paths, paths.inside(path)).st_ctime_ns
    except (OSError, CapsnapError):
        return None


def _explanations(catalogue: Catalogue, paths: SystemPaths, known_bits: int) \
        -> tuple[set[str], set[tuple[str | None, str, str]]]:
    """Paths another source declares; (package, path, text) the script reader found."""
    from capsnap import captext
    from capsnap.declarations import SCRIPT, canonical_in

    canonical = canonical_in(paths)
    others = {canonical(d.path) for d in catalogue.declarations if d.source != SCRIPT}
    script = {(d.package, canonical(d.path), captext.format_text(d.stored, known_bits))
              for d in catalogue.declarations
              if d.source == SCRIPT and d.origin.startswith("postinst of ")}
    return others, script


def observe(paths: SystemPaths, known_bits: int, catalogue: Catalogue,
            packages: dict[str, str], started_ns: int, written: Iterable[bytes],
            before: Iterable[Row], after: Iterable[Row] | None = None) -> bool:
    """Revise the records after a run that configured `packages` (name ->
    version) and began at `started_ns`: with `after` (the after snapshot),
    learn what the run gave their files; without it (before capsnap's
    reapply), look again at the files already recorded for them.  `written`:
    the paths capsnap wrote in the run.  Whether anything changed."""
    records, lists = load(paths)
    if after is None:
        look: dict[str, str] = {path: package for package in packages
                                for path in records.get(package, {})}
        if not look:
            return False
    others, script = _explanations(catalogue, paths, known_bits)
    ours = {os.fsdecode(p) for p in written}
    rows = {os.fsdecode(r.path): r for r in after or ()
            if r.package in packages and r.raw is not None and r.present}
    if after is not None:
        look = {path: str(r.package) for path, r in rows.items()}
    if not look:
        return False
    was = {}
    for r in before:
        path = os.fsdecode(r.path)
        if path in look and r.present and r.inode is not None:
            was[path] = (r.text, r.inode, r.size, r.mtime_ns, r.btime_ns)
    seen = []
    for path, package in look.items():
        row = rows.get(path)
        if row is not None and row.inode is not None:
            ident: tuple[int, int, int, int] | None = (
                row.inode, row.size or 0, row.mtime_ns or 0,
                -1 if row.btime_ns is None else row.btime_ns)
            text = row.text if row.rootid is None else None
        else:
            ident, raw = _look(paths, path)
            text = _text(raw, known_bits)
        ctime = _ctime(paths, path)
        old = was.get(path)
        kept = old is not None and ident is not None and old[0] == text and \
            same_file([old[1], old[2], old[3], -1 if old[4] is None else old[4]], ident)
        seen.append(Seen(package, path, text, ident,
                         changed=ctime is not None and ctime >= started_ns,
                         explained=path in ours or path in others
                         or (package, path, text) in script,
                         kept=kept))
    revised = decide(records, seen, packages)
    if revised == records:
        return False
    save(paths, revised, lists)
    return True
