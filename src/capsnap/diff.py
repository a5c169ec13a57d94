# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""What changed between two snapshots (pure).

Both sides arrive as rows sorted by path and are merged in one pass, so a
diff of two large snapshots never holds either in memory.  The file's
identity (inode and birth time, see snapshot.same_file) tells a stripped
capability (same file) from a replaced file (dpkg and rpm write every
upgraded file anew, often on the inode number the old one freed).  A path
only one of the two snapshots looked at is "not recorded" on the other
side: never a loss or a gain that nobody saw.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

from capsnap.records import NamedTuple
from capsnap.store import Row

LOST = "lost"
GAINED = "gained"
CHANGED = "changed"
REPLACED = "replaced"
REMOVED = "removed"
NEW = "new"
NOT_RECORDED = "not recorded"
KINDS = (LOST, GAINED, CHANGED, REPLACED, REMOVED, NEW, NOT_RECORDED)
DESCRIPTIONS = {
    LOST: "capability lost",
    GAINED: "capability gained",
    CHANGED: "capability changed",
    REPLACED: "file replaced",
    REMOVED: "file removed",
    NEW: "new file with capabilities",
    NOT_RECORDED: "outside the scope of one of the two snapshots: not compared",
}


class Change(NamedTuple):
    kind: str
    path: bytes
    before: Row | None
    after: Row | None
    survived: bool | None = None  # for a replaced file: kept its capabilities?


def _replaced(a: Row, b: Row) -> bool:
    """Both rows saw a file, and not the same one.  A row that knows no
    identity (no inode) cannot say: then the file is taken as the same,
    except for a before row with capabilities but no inode: dpkg's hooks
    make those only for a file the run wrote over, whose capabilities its
    pre-invoke noted (no snapshot had seen it)."""
    if a.present and b.present and a.inode is None and a.raw is not None \
            and b.inode is not None:
        return True
    return a.present and b.present and a.inode is not None and b.inode is not None \
        and not same_file(a, b)


def same_file(before: Row, now: Row) -> bool:
    """Whether two rows of one path saw the same file (not merely the same
    inode number: a filesystem reuses a freed one, and dpkg's new file often
    gets the number of the old one it replaced)."""
    if before.present != now.present:
        return False
    if not before.present:
        return True
    if before.inode != now.inode:
        return False
    if before.btime_ns is not None and now.btime_ns is not None:
        return before.btime_ns == now.btime_ns
    return (before.size, before.mtime_ns) == (now.size, now.mtime_ns)


def covers(scope: str, roots: Iterable[str] = ()) -> Callable[[Row], bool]:
    """Whether a snapshot of `scope` (as stored) looked at the path of a row
    the other snapshot has, so that having no row for it means it had no
    capabilities then.  A full walk looks at everything under `roots`, a
    path scope under its paths, a package scope at every file of its
    packages (it records only those with capabilities; the row says whose
    file it is), and a "tracked" snapshot only at what it tracks."""
    from capsnap.scope import Scope

    parsed = Scope.parse(scope)
    if parsed.kind == "package":
        packages = {p.split(":", 1)[0] for p in parsed.items}
        return lambda row: row.package is not None and \
            row.package.split(":", 1)[0] in packages
    if parsed.kind == "full":
        patterns = [os.fsencode(r.rstrip("/")) for r in roots]
    elif parsed.kind == "path":
        patterns = [os.fsencode(i.rstrip("/")) for i in parsed.items]
    else:
        return _unseen

    def covered(row: Row) -> bool:
        path = row.path
        for pattern in patterns:
            depth = pattern.count(b"/")
            head = b"/".join(path.split(b"/")[:depth + 1])
            if (head == pattern or (_has_magic(pattern) and _fnmatch(head, pattern))) and \
                    (len(path) == len(head) or path[len(head):len(head) + 1] == b"/"):
                return True
        return False

    return covered


def _has_magic(pattern: bytes) -> bool:
    return b"*" in pattern or b"?" in pattern or b"[" in pattern


def _fnmatch(name: bytes, pattern: bytes) -> bool:
    # Imported when a pattern needs it: fnmatch imports re, a tenth of a diff's start.
    import fnmatch

    return fnmatch.fnmatchcase(name, pattern)


def _unseen(row: Row) -> bool:
    return False


def _classify(a: Row | None, b: Row | None, since_ns: int | None,
              covered_before: Callable[[Row], bool] = _unseen,
              covered_after: Callable[[Row], bool] = _unseen) -> Change | None:
    path = a.path if a is not None else b.path  # type: ignore[union-attr]
    had = a is not None and a.raw is not None
    has = b is not None and b.raw is not None
    if not had and not has:
        return None
    if a is None and b is not None and covered_before(b):
        # Looked at, without capabilities then.
        born_after = since_ns is not None and b is not None and b.btime_ns is not None \
            and b.btime_ns > since_ns
        return Change(NEW if born_after else GAINED, path, a, b)
    if b is None and a is not None and covered_after(a):
        return Change(LOST, path, a, b)
    if a is None or b is None:
        if a is None and since_ns is not None and b is not None and b.btime_ns is not None \
                and b.btime_ns > since_ns:
            # The earlier snapshot did not record the path; the file was born after it.
            return Change(NEW, path, a, b)
        # One side never looked at this path: what it held there is unknown.
        return Change(NOT_RECORDED, path, a, b)
    if had and has:
        if _replaced(a, b):
            return Change(REPLACED, path, a, b, survived=a.raw == b.raw)
        if a.raw != b.raw:
            return Change(CHANGED, path, a, b)
        return None
    if had:
        if not b.present:
            return Change(REMOVED, path, a, b)
        if _replaced(a, b):
            return Change(REPLACED, path, a, b, survived=False)
        return Change(LOST, path, a, b)
    if not a.present:
        return Change(NEW, path, a, b)
    if _replaced(a, b):
        # The file existed (without capabilities) and was replaced by one with them.
        return Change(REPLACED, path, a, b, survived=False)
    return Change(GAINED, path, a, b)


def compare(before: Iterable[Row], after: Iterable[Row],
            since_ns: int | None = None,
            covered_before: Callable[[Row], bool] = _unseen,
            covered_after: Callable[[Row], bool] = _unseen) -> Iterator[Change]:
    """Changes from `before` to `after`, both sorted by path, in path order.

    `since_ns` is when `before` was taken: a file created after it that the
    earlier snapshot has no record of is new, not merely gained.  A path
    one side has no row for is "not recorded" there, unless that side's
    scope `covered` it (see covers()).
    """
    left, right = iter(before), iter(after)
    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a.path < b.path):
            change = _classify(a, None, since_ns, covered_before, covered_after)
            a = next(left, None)
        elif a is None or b.path < a.path:
            change = _classify(None, b, since_ns, covered_before, covered_after)
            b = next(right, None)
        else:
            change = _classify(a, b, since_ns)
            a, b = next(left, None), next(right, None)
        if change is not None:
            yield change


def compare_pairs(pairs: Iterable[tuple[Row | None, Row | None]],
                  since_ns: int | None = None,
                  covered_before: Callable[[Row], bool] = _unseen,
                  covered_after: Callable[[Row], bool] = _unseen) -> Iterator[Change]:
    """Changes from pairs of rows already matched by path (see Store.changed_pairs)."""
    for a, b in pairs:
        change = _classify(a, b, since_ns, covered_before, covered_after)
        if change is not None:
            yield change


def grouped(changes: Iterable[Change]) -> list[Change]:
    """Changes grouped by kind in the order of KINDS, by path within a kind."""
    order = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(changes, key=lambda c: (order[c.kind], c.path))


def package_label(before: Row | None, after: Row | None) -> str:
    """"foo 1.0 -> 1.1", "foo 1.0", "foo 1.0 -> bar 2", or "-"."""
    a = (before.package, before.version) if before is not None and before.package else None
    b = (after.package, after.version) if after is not None and after.package else None
    if a and b:
        if a[0] == b[0]:
            return f"{a[0]} {a[1]}" if a[1] == b[1] else f"{a[0]} {a[1]} -> {b[1]}"
        return f"{a[0]} {a[1]} -> {b[0]} {b[1]}"
    if a or b:
        name, version = a or b  # type: ignore[misc]
        return f"{name} {version}"
    return "-"


def caps_text(row: Row | None) -> str | None:
    """A side's capability text; namespaced ones (revision 3, rootid not 0)
    with `[rootid=N]`, as getcap -n shows them: they are no real capabilities."""
    if row is None or not row.text:
        return None
    if row.rootid:
        return f"{row.text} [rootid={row.rootid}]"
    return row.text
