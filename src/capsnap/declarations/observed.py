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
    explained: bool  # another declaration says so
    kept: bool  # the run began with this very file holding these capabilities
    ours: bool = False  # it holds what capsnap put back, untouched since


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
                not s.explained and not s.kept and not s.ours:
            if before is None and count >= LIMIT:
                continue
            count += before is None
            mine[s.path] = [s.text, *s.ident]
        elif before is not None and s.ours and s.ident is not None:
            # What capsnap put back (an administrator's reapply after an
            # unpack): setting the same value again leaves no trace (ext4
            # keeps the ctime), so whether the configure still sets it
            # cannot be told; it is not taken away.
            mine[s.path] = [before[0], *s.ident]
        elif before is not None and (s.ident is None or not same_file(before[1:], s.ident)):
            # The package's configure left another file there (or none)
            # and did not give it this: withdrawn.
            del mine[s.path]
            count -= 1
    return {package: paths for package, paths in out.items() if paths}


# --- the state file ------------------------------------------------------------

def _state_file(paths: SystemPaths) -> str:
    return os.path.join(paths.state_dir, f"{_STATE}.marshal")


class State(NamedTuple):
    records: Records
    lists: object  # dpkg's info directory when the records' lists were last read
    # What capsnap's hooks last wrote on a file: path -> [inode, ctime_ns]
    # after the write.  A file that still has that ctime holds capsnap's
    # capabilities, not a configure's (one that ran after capsnap put a
    # capability back after an unpack set it anew, and changed the ctime).
    written: dict[str, list[int]]


def load(paths: SystemPaths) -> State:
    data = cache.read_marshal(paths, _state_file(paths))
    if data.get("format") != _FORMAT:
        return State({}, None, {})
    observed = data.get("observed")
    records: Records = {}
    for package, entries in (observed.items() if isinstance(observed, dict) else ()):
        if not (isinstance(package, str) and isinstance(entries, dict)):
            continue
        for path, record in entries.items():
            if isinstance(path, str) and isinstance(record, list) and len(record) == 5 \
                    and isinstance(record[0], str) \
                    and all(isinstance(n, int) for n in record[1:]):
                records.setdefault(package, {})[path] = record
    written = data.get("written")
    return State(records, data.get("lists"), {
        path: mark for path, mark in (written.items() if isinstance(written, dict) else ())
        if isinstance(path, str) and isinstance(mark, list) and len(mark) == 2})


def save(paths: SystemPaths, state: State) -> None:
    import contextlib
    import marshal

    # An unprivileged or read-only run (capsnap list as a user): the next
    # hook does it.
    with contextlib.suppress(OSError, ValueError, CapsnapError):
        confine.write_atomically(paths, _state_file(paths), marshal.dumps(
            {"format": _FORMAT, "observed": state.records, "lists": state.lists,
             "written": state.written}))


def note_written(paths: SystemPaths, written: Iterable[str]) -> None:
    """Note the files capsnap's hook has just written capabilities on."""
    marks = {}
    for path in written:
        try:
            st = confine.lstat(paths, paths.inside(path))
        except (OSError, CapsnapError):
            continue
        marks[path] = [st.st_ino, st.st_ctime_ns]
    if not marks:
        return
    state = load(paths)
    kept = {**state.written, **marks}
    if len(kept) > LIMIT:
        # The oldest writes go first: a run looks only at its own.
        kept = dict(sorted(kept.items(), key=lambda item: item[1][1])[-LIMIT:])
    save(paths, state._replace(written=kept))


def packages(paths: SystemPaths) -> set[str]:
    return set(load(paths).records)


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


def _database_readable(paths: SystemPaths) -> bool:
    from capsnap.declarations import dpkg

    try:
        dpkg.database_paragraphs(paths)
    except (OSError, CapsnapError):
        return False
    return True


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

    state = load(paths)
    records, lists = state.records, state.lists
    if not records:
        return []
    if not status and not _database_readable(paths):
        return []  # what is installed is unknown: nothing is forgotten for it
    before = {package: dict(entries) for package, entries in records.items()}
    records = {package: entries for package, entries in records.items()
               if status.get(package, ("", ""))[0] in _ON_DISK}
    records, lists_now = _listed(paths, records, lists)
    # The script reader's own finding of the same thing is the one shown.
    read_too = {(d.package, alias, captext.format_text(d.stored, known_bits))
                for d in script for alias in dpkg.path_aliases(d.path)}
    decls = []
    for package in sorted(records):
        dpkg_state, version = status[package]
        for path in sorted(records[package]):
            record = records[package][path]
            text = str(record[0])
            if dpkg_state in _CONFIGURED:
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
        save(paths, state._replace(records=records, lists=lists_now))
    return decls


def awaiting(paths: SystemPaths, catalogue: Catalogue) -> list[Declaration]:
    """The declarations read from here whose package awaits its configure
    (after `dpkg --unpack`) on a file other than the one they were seen on.
    A hook leaves them to the configure: put back now, the configure's own
    setcap of the same value would leave no trace (ext4 keeps the ctime),
    and whether the new version still sets it could not be told.  `check`
    and `reapply` run by hand still treat them as drift."""
    mine = [d for d in catalogue.declarations
            if d.source == SOURCE and d.origin == f"configure of {d.package}"]
    if not mine:
        return []
    records = load(paths).records
    ready = configured(paths, {str(d.package) for d in mine})
    out = []
    for d in mine:
        record = records.get(str(d.package), {}).get(d.path)
        if d.package in ready or record is None:
            continue
        ident, _ = _look(paths, d.path)
        if ident is None or not same_file(record[1:], ident):
            out.append(d)
    return out


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
            names: Iterable[str], started_ns: int, before: Iterable[Row],
            after: Iterable[Row] | None = None) -> bool:
    """Revise the records after a run that changed the packages `names` and
    began at `started_ns`, with the tracked paths as they were then
    (`before`): with `after` (the after snapshot), learn what the run gave
    the files of those it configured; without it (before capsnap's
    reapply), look again at the files already recorded for them.  Whether
    anything changed."""
    state = load(paths)
    records = state.records
    wanted = set(names)
    rows = {os.fsdecode(r.path): r for r in after or ()
            if r.package in wanted and r.raw is not None and r.present}
    look = {path: str(r.package) for path, r in rows.items()} if after is not None else \
        {path: package for package in wanted for path in records.get(package, {})}
    # Most runs end here: dpkg's database is read only for a package with a
    # file with capabilities, or a record.
    packages = configured(paths, set(look.values())) if look else {}
    look = {path: package for path, package in look.items() if package in packages}
    if not look:
        return False
    others, script = _explanations(catalogue, paths, known_bits)
    was = {}
    for r in before:
        path = os.fsdecode(r.path)
        if path in look and r.present and r.inode is not None:
            was[path] = (r.text, [r.inode, r.size, r.mtime_ns,
                                  -1 if r.btime_ns is None else r.btime_ns])
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
        try:
            st: os.stat_result | None = confine.lstat(paths, paths.inside(path))
        except (OSError, CapsnapError):
            st = None
        mark = state.written.get(path)
        ours = st is not None and mark == [st.st_ino, st.st_ctime_ns]
        old = was.get(path)
        # The run began with this very file holding these capabilities, and
        # not as capsnap had put them back.
        kept = old is not None and ident is not None and old[0] == text and \
            same_file(old[1], ident) and not (mark is not None and mark[0] == old[1][0])
        seen.append(Seen(package, path, text, ident,
                         changed=st is not None and st.st_ctime_ns >= started_ns,
                         explained=path in others or (package, path, text) in script,
                         kept=kept, ours=ours))
    revised = decide(records, seen, packages)
    if revised == records:
        return False
    save(paths, state._replace(records=revised))
    return True
