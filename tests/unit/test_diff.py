"""Classifying changes between snapshots (pure)."""

from __future__ import annotations

from capsnap import diff
from capsnap.store import Row

RAW = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw=ep
ADMIN = bytes.fromhex("0100000200100000000000000000000000000000")  # cap_net_admin=ep
T0 = 1_000_000_000_000_000_000


def row(path: str, raw: bytes | None, inode: int | None = 1, present: bool = True,
        package: str | None = None, version: str | None = None,
        btime: int | None = None) -> Row:
    return Row(path.encode(), raw, None, None, package, version, present, inode, 10, 5, btime)


def kinds(before: list[Row], after: list[Row], since: int | None = T0) -> list[tuple[str, str]]:
    return [(c.kind, c.path.decode()) for c in diff.compare(before, after, since)]


def test_every_kind() -> None:
    before = [
        row("/a/changed", RAW, 1),
        row("/a/gained", None, 2),
        row("/a/lost", RAW, 3),
        row("/a/new-after-missing", None, None, present=False),
        row("/a/removed", RAW, 5),
        row("/a/replaced-kept", RAW, 6),
        row("/a/replaced-lost", RAW, 7),
        row("/a/same", RAW, 8),
    ]
    after = [
        row("/a/changed", ADMIN, 1),
        row("/a/gained", RAW, 2),
        row("/a/lost", None, 3),
        row("/a/new-after-missing", RAW, 40),
        row("/a/new-unrecorded", RAW, 41, btime=T0 + 5),
        row("/a/old-unrecorded", RAW, 42, btime=T0 - 5),
        row("/a/removed", None, None, present=False),
        row("/a/replaced-kept", RAW, 60),
        row("/a/replaced-lost", None, 70),
        row("/a/same", RAW, 8),
    ]
    assert kinds(before, after) == [
        ("changed", "/a/changed"), ("gained", "/a/gained"), ("lost", "/a/lost"),
        ("new", "/a/new-after-missing"), ("new", "/a/new-unrecorded"),
        ("not recorded", "/a/old-unrecorded"), ("removed", "/a/removed"),
        ("replaced", "/a/replaced-kept"), ("replaced", "/a/replaced-lost")]
    survived = {c.path: c.survived for c in diff.compare(before, after, T0)
                if c.kind == "replaced"}
    assert survived == {b"/a/replaced-kept": True, b"/a/replaced-lost": False}


def test_nothing_changed_means_no_changes() -> None:
    rows = [row(f"/x/{n:03d}", RAW, n) for n in range(100)]
    assert list(diff.compare(rows, list(rows))) == []


def test_grouping_order_and_package_labels() -> None:
    changes = list(diff.compare([row("/b", RAW), row("/c", None)],
                                [row("/a", RAW), row("/b", None), row("/c", RAW)], None))
    assert [c.kind for c in diff.grouped(changes)] == ["lost", "gained", "not recorded"]
    before = row("/x", RAW, package="foo", version="1.0")
    assert diff.package_label(before, row("/x", None, package="foo", version="1.1")) == \
        "foo 1.0 -> 1.1"
    assert diff.package_label(before, row("/x", None, package="foo", version="1.0")) == \
        "foo 1.0"
    assert diff.package_label(None, row("/x", RAW, package="bar", version="2")) == "bar 2"
    assert diff.package_label(None, None) == "-"


def test_paths_are_bytes_and_sorted_bytewise() -> None:
    weird = Row(b"/opt/\xff\xfe", RAW, None, None, None, None, True, 1, 1, 1, None)
    assert [c.path for c in diff.compare([], [weird], None)] == [b"/opt/\xff\xfe"]


def test_a_path_one_side_never_looked_at_is_not_recorded_never_lost_or_gained() -> None:
    # A package-scope snapshot against a full one: the paths outside the
    # package were not looked at, whatever they held.
    package = [row("/usr/bin/ping", RAW, 1)]
    full = [row("/usr/bin/ping", RAW, 1), row("/usr/lib/helper", ADMIN, 2, btime=T0 - 9)]
    assert kinds(package, full) == [("not recorded", "/usr/lib/helper")]
    assert kinds(full, package) == [("not recorded", "/usr/lib/helper")]


def test_identity_survives_inode_reuse() -> None:
    # rm then cp: the new file got the freed inode number; its birth time differs.
    before = [row("/a/reused", RAW, 7, btime=T0 - 100), row("/a/stripped", RAW, 8, btime=T0 - 100),
              row("/a/plain", None, 9, btime=T0 - 100)]
    after = [row("/a/reused", None, 7, btime=T0 + 100), row("/a/stripped", None, 8, btime=T0 - 100),
             row("/a/plain", RAW, 19, btime=T0 + 100)]
    changes = {c.path.decode(): c for c in diff.compare(before, after, T0)}
    assert changes["/a/reused"].kind == "replaced" and changes["/a/reused"].survived is False
    assert changes["/a/stripped"].kind == "lost"
    # It existed before (without capabilities): replaced, never "new".
    assert changes["/a/plain"].kind == "replaced"
    # Without birth times, size and mtime tell the generations apart.
    a = Row(b"/a/x", RAW, None, None, None, None, True, 7, 10, 5, None)
    b = Row(b"/a/x", None, None, None, None, None, True, 7, 11, 6, None)
    assert [c.kind for c in diff.compare([a], [b], None)] == ["replaced"]


def test_a_path_the_later_full_snapshot_has_no_row_for_lost_its_capabilities() -> None:
    """A full snapshot records every file with capabilities under its roots:
    without a row there, the file had none (or was gone) when it was taken."""
    full = diff.covers("full", ["/usr"])
    before = [row("/opt/x", RAW, 1), row("/usr/bin/ping", RAW, 2)]
    changes = list(diff.compare(before, [], T0, covered_after=full))
    assert [(c.kind, c.path.decode()) for c in changes] == [
        ("not recorded", "/opt/x"), ("lost", "/usr/bin/ping")]
    assert changes[1].before == before[1] and changes[1].after is None


def test_a_file_born_when_the_earlier_snapshot_was_taken_is_not_new() -> None:
    """`since` is when the earlier snapshot was taken: only a file born
    after it cannot have been in it."""
    after = [row("/a/at", RAW, 5, btime=T0), row("/a/later", RAW, 6, btime=T0 + 1)]
    full = diff.covers("full", ["/a"])
    assert [(c.kind, c.path.decode()) for c in diff.compare([], after, T0, covered_before=full)] \
        == [("gained", "/a/at"), ("new", "/a/later")]
    assert kinds([], after) == [("not recorded", "/a/at"), ("new", "/a/later")]
