"""What one side of a diff saw decides what having no row there means: a
package snapshot saw its packages' files only, a path snapshot what is at or
under its paths; and a before row known only from the capabilities dpkg's
pre-invoke noted (no identity) was replaced when the run wrote the file."""

from __future__ import annotations

from capsnap import diff
from capsnap.store import Row

RAW = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw=ep
T0 = 1_000_000_000_000_000_000


def row(path: str, raw: bytes | None, inode: int | None = 1,
        package: str | None = None) -> Row:
    return Row(path.encode(), raw, None, None, package, "1", True, inode, 10, 5, None)


def kinds(before: list[Row], after: list[Row], **covered: object) -> list[tuple[str, str]]:
    return [(c.kind, c.path.decode()) for c in diff.compare(before, after, T0, **covered)]


def test_a_package_snapshot_saw_only_its_packages_files() -> None:
    saw = diff.covers("package:foo:amd64,bar")
    before = [row("/usr/bin/a", RAW, package="foo"), row("/usr/bin/b", RAW, package="bar"),
              row("/usr/bin/c", RAW, package="baz"), row("/usr/bin/d", RAW)]
    assert kinds(before, [], covered_after=saw) == [
        ("lost", "/usr/bin/a"), ("lost", "/usr/bin/b"),
        ("not recorded", "/usr/bin/c"), ("not recorded", "/usr/bin/d")]


def test_a_path_snapshot_saw_what_is_at_or_under_its_paths() -> None:
    saw = diff.covers("path:/usr/bin,/opt/tool")
    before = [row("/opt/tool", RAW), row("/opt/toolbox", RAW), row("/usr/bin/x", RAW),
              row("/usr/bin2/x", RAW), row("/usr/x", RAW)]
    assert kinds(before, [], covered_after=saw) == [
        ("lost", "/opt/tool"), ("not recorded", "/opt/toolbox"), ("lost", "/usr/bin/x"),
        ("not recorded", "/usr/bin2/x"), ("not recorded", "/usr/x")]


def test_noted_capabilities_on_a_file_the_run_wrote_are_a_replaced_file() -> None:
    noted = row("/usr/bin/ping", RAW, inode=None)
    changes = list(diff.compare([noted], [row("/usr/bin/ping", None, inode=7)], T0))
    assert [(c.kind, c.survived) for c in changes] == [("replaced", False)]
