# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Take a snapshot of file capabilities: what a scope holds, with its owners.

A snapshot records every file with capabilities in its scope, and also, with
or without capabilities, the paths that matter for telling changes apart:
declared paths, the tracked paths (every path any snapshot saw with
capabilities, until one finds its file gone).  A package scope looks at every
file of its packages but records only those with capabilities: a row for
each of the thousands of files an upgrade writes would tell a diff nothing
it cannot tell from the tracked paths, and made each transaction megabytes.
Each path is named once, as the file really is (merged /usr: /usr/bin/ping,
never /bin/ping).  For each it keeps inode, size, mtime and birth time, so a
later diff can say "capability stripped" (same file) rather than "file
replaced" (a new file, as dpkg and rpm write them, even when it reuses the
inode number).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator

from capsnap import captext, fileops, scan, xattr
from capsnap.declarations import Catalogue
from capsnap.diff import same_file as same_file
from capsnap.errors import AttrFormatError, CapsnapError, InvalidInput, OperationFailed
from capsnap.paths import SystemPaths
from capsnap.scope import Scope as Scope
from capsnap.store import Row, Store


def _text(raw: bytes | None, known_bits: int) -> tuple[str | None, int | None]:
    """Canonical text and rootid (revision 3 only) of a raw attribute."""
    if raw is None:
        return None, None
    try:
        caps = xattr.decode(raw)
    except AttrFormatError:
        return f"<malformed {raw.hex()}>", None
    return (captext.format_text(caps.capset(), known_bits),
            caps.rootid if caps.revision == 3 else None)


def _row(path: bytes, raw: bytes | None, present: bool, known_bits: int,
         st: os.stat_result | None = None, btime_ns: int | None = None) -> Row:
    return Row(path, raw, *_text(raw, known_bits), None, None, present,
               st.st_ino if st else None, st.st_size if st else None,
               st.st_mtime_ns if st else None, btime_ns)


def probe(path: str, paths: SystemPaths, known_bits: int) -> Row:
    """One path as it is now, resolved inside the root like every capsnap path."""
    try:
        with fileops.open_target(path, paths.root) as target:
            return _probe_target(target, known_bits)
    except OperationFailed:
        return _row(os.fsencode(path), None, False, known_bits)


def _probe_target(target: fileops.Target, known_bits: int) -> Row:
    encoded = os.fsencode(target.display)
    if target.link_target is not None or not stat.S_ISREG(target.st.st_mode):
        return _row(encoded, None, True, known_bits)  # no inode: not a file
    raw = fileops.read_raw(target)
    return _row(encoded, raw, True, known_bits, target.st,
                btime_ns=fileops.birth_time_ns(fd=target.fd))


def _package_files(paths: SystemPaths, package: str) -> tuple[list[str], tuple[str, str]]:
    from capsnap.declarations import dpkg, rpm

    files = dpkg.package_files(paths, package)
    if files is not None:
        return files, (package, dpkg.package_version(paths, package) or "")
    files = rpm.package_files(paths, package)
    if files is not None:
        return files, (package, rpm.package_version(paths, package) or "")
    raise InvalidInput(f"package {package!r} is not installed in {paths.root} (neither dpkg "
                       "nor rpm knows it)")


def require_installed(paths: SystemPaths, scope: Scope) -> None:
    """Refuse a package scope naming a package neither database knows,
    before anything is created for it."""
    for package in scope.items if scope.kind == "package" else ():
        _package_files(paths, package)


def attribute(paths: SystemPaths, rows: list[Row],
              known: dict[bytes, tuple[str, str]] | None = None) -> list[Row]:
    """Fill in the owning package and version where a package ships the path.

    `known` owners (from the declarations just read) spare the search of
    every package's file list, which is most of a hook's snapshot.
    """
    from capsnap.declarations import dpkg, rpm

    if known:
        rows = [r._replace(package=known[r.path][0], version=known[r.path][1])
                if r.package is None and r.path in known else r for r in rows]
    wanted = {os.fsdecode(r.path) for r in rows if r.package is None}
    if not wanted:
        return rows
    owners = dpkg.owners(paths, wanted)
    rest = wanted - owners.keys()
    if rest:
        owners.update(rpm.owners(paths, rest))
    out = []
    for r in rows:
        owner = owners.get(os.fsdecode(r.path)) if r.package is None else None
        out.append(r._replace(package=owner[0], version=owner[1]) if owner else r)
    return out


def _walked_rows(paths: SystemPaths, scope: Scope, root_fd: int, known_bits: int,
                 stats: scan.WalkStats, progress: Callable[[scan.WalkStats], None] | None,
                 roots: tuple[str, ...]) -> Iterator[Row]:
    """The rows of a "full" or "path" scope: its directories walked inside
    the root, and the paths of a "path" scope that are not directories."""
    to_walk = scan.expand_roots(root_fd, roots) if scope.kind == "full" else []
    for path in scope.items if scope.kind == "path" else ():
        start: str | None = None
        row: Row | None = None
        if not scan.is_pseudo(path):
            # One resolution (a hook's scope can be thousands of files):
            # a directory is walked from where it really is, anything else probed.
            try:
                with fileops.open_target(path, paths.root) as target:
                    start = scan.start_directory(target, root_fd)
                    row = _probe_target(target, known_bits) if start is None else None
            except OperationFailed:
                row = _row(os.fsencode(path), None, False, known_bits)
        if scan.is_pseudo(start or path):
            raise InvalidInput(f"{path}: a pseudo filesystem; capsnap never walks "
                               f"{', '.join(scan.PSEUDO)}")
        if start is not None:
            to_walk.append(start)
        elif row is not None and row.raw is not None:
            # As in a walk, a file without capabilities is not recorded (rpm's
            # hook names every file of the packages it changes).
            yield row
    for found in scan.walk(to_walk, root_fd, stats, progress):
        yield Row(found.path, found.raw, *_text(found.raw, known_bits), None, None, True,
                  found.inode, found.size, found.mtime_ns, found.btime_ns)


def _maybe_with_capabilities(paths: SystemPaths, names: list[str]) -> set[str]:
    """Of these files (named inside the root), those that may have
    capabilities: the others need no probe.  Each directory is opened once,
    inside the root, and each of its files asked for the attribute through
    it without following a symlink at the end (as scan's walk does): one
    system call a file, where a probe walks from the root (an apt upgrade
    names thousands of files, nearly none with capabilities).  A file this
    cannot tell about is left to the probe."""
    by_directory: dict[str, set[str]] = {}
    for name in names:
        head, tail = os.path.split(name)
        by_directory.setdefault(head, set()).add(tail)
    out: set[str] = set()
    for head, tails in by_directory.items():
        try:
            with fileops.open_target(head, paths.root) as directory:
                if not stat.S_ISDIR(directory.st.st_mode):
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                prefix = directory.proc_path + "/"
                if not os.path.samestat(os.stat(prefix), directory.st):
                    raise OSError(errno.ENOENT, "no /proc")
                for tail in tails:
                    if tail in ("", ".", ".."):
                        out.add(os.path.join(head, tail))
                        continue
                    try:
                        os.getxattr(prefix + tail, xattr.XATTR_NAME, follow_symlinks=False)
                    except OSError as exc:
                        if exc.errno in (errno.ENODATA, errno.ENOENT, errno.EOPNOTSUPP):
                            continue  # what a probe would find: no capabilities
                    out.add(os.path.join(head, tail))
        except (OSError, CapsnapError):
            out.update(os.path.join(head, tail) for tail in tails)
    return out


def live_rows(paths: SystemPaths, scope: Scope, known_bits: int,
              extra: Iterable[bytes] = (), stats: scan.WalkStats | None = None,
              progress: Callable[[scan.WalkStats], None] | None = None,
              roots: tuple[str, ...] = scan.DEFAULT_ROOTS,
              known_owners: dict[bytes, tuple[str, str]] | None = None,
              missing_packages_ok: bool = False) -> Iterator[Row]:
    """The rows of a snapshot of `scope` taken now, in path order.

    `missing_packages_ok`: a package of the scope that is gone (comparing an
    old snapshot with the live system) has no files, rather than an error.
    """
    stats = stats if stats is not None else scan.WalkStats()
    rows: dict[bytes, Row] = {}
    canonical = canonical_paths(paths)
    if scope.kind in ("full", "path"):
        root_fd = scan.open_root(paths.root)
        try:
            for row in _walked_rows(paths, scope, root_fd, known_bits, stats, progress, roots):
                rows[row.path] = row
        finally:
            os.close(root_fd)
    elif scope.kind == "package":
        listed: list[tuple[list[str], tuple[str, str]]] = []
        for package in dict.fromkeys(scope.items):
            try:
                files, owner = _package_files(paths, package)
            except InvalidInput:
                if not missing_packages_ok:
                    raise
                continue
            # dpkg lists /bin/ping where the file is /usr/bin/ping: one file,
            # one row, under the name the walk finds.
            listed.append(([canonical(path) for path in files], owner))
        maybe = _maybe_with_capabilities(paths, [n for names, _ in listed for n in names])
        for names, owner in listed:
            for name in names:
                if name not in maybe or os.fsencode(name) in rows:
                    continue
                row = probe(name, paths, known_bits)
                if row.raw is not None:
                    rows[row.path] = row._replace(package=owner[0], version=owner[1])
    elif scope.kind != "tracked":
        raise InvalidInput(f"unknown snapshot scope {scope.kind!r}")
    for wanted in extra:
        name = canonical(os.fsdecode(wanted))
        if os.fsencode(name) not in rows:
            rows[os.fsencode(name)] = probe(name, paths, known_bits)
    finished = list(rows.values())
    yield from sorted(attribute(paths, finished, known_owners), key=lambda r: r.path)


def canonical_paths(paths: SystemPaths) -> Callable[[str], str]:
    """The one name of a file: its directories' symlinks inside the root
    followed (merged /usr: /bin/ping is /usr/bin/ping), doubled slashes and
    `.` components gone.  Every row of every snapshot is named this way."""
    from capsnap.declarations import canonical_in

    follow = canonical_in(paths)

    def canonical(path: str) -> str:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        return follow("/" + "/".join(parts)) if parts else "/"

    return canonical


def tracked(store: Store, catalogue: Catalogue, paths: SystemPaths | None = None) \
        -> tuple[list[bytes], dict[bytes, tuple[str, str]]]:
    """The paths every snapshot includes (declared ones, and those seen with
    capabilities until their file is gone), each under its one name, and
    the owners the declarations name."""
    canonical = canonical_paths(paths) if paths is not None else (lambda p: p)
    owners: dict[bytes, tuple[str, str]] = {}
    declared = set()
    for d in catalogue.declarations:
        name = os.fsencode(canonical(d.path))
        declared.add(name)
        if d.package:
            owners[name] = (d.package, d.version or "")
    known = {os.fsencode(canonical(os.fsdecode(p))) for p in store.tracked()}
    return sorted(declared | known), owners


def take(paths: SystemPaths, store: Store, scope: Scope, known_bits: int,
         catalogue: Catalogue, roots: tuple[str, ...] = scan.DEFAULT_ROOTS,
         label: str | None = None, transaction_id: int | None = None,
         phase: str | None = None,
         progress: Callable[[scan.WalkStats], None] | None = None) -> tuple[int, scan.WalkStats]:
    """Take and store a snapshot of `scope` plus the tracked paths; its id and walk counts."""
    stats = scan.WalkStats()
    extra, owners = tracked(store, catalogue, paths)
    rows = live_rows(paths, scope, known_bits, extra=extra, stats=stats, progress=progress,
                     roots=roots, known_owners=owners)
    snapshot_id = store.add_snapshot(scope.describe(), paths.root, rows, label=label,
                                     transaction_id=transaction_id, phase=phase)
    return snapshot_id, stats
