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
        ("gained", "/a/old-unrecorded"), ("removed", "/a/removed"),
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
    assert [c.kind for c in diff.grouped(changes)] == ["lost", "gained", "gained"]
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
