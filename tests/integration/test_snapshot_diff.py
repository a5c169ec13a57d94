"""Snapshots and diff on scratch roots, attributed by real dpkg and rpm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import needs_root, run_capsnap
from tests.packaging import (
    build_deb,
    build_rpm,
    dpkg_install,
    dpkg_remove,
    make_dpkg_root,
    make_rpm_root,
    rpm_install,
)

pytestmark = needs_root


def setcap(root: Path, path: str, caps: str | None) -> None:
    args = ["setcap", "-r"] if caps is None else ["setcap", caps]
    subprocess.run([*args, str(root / path.lstrip("/"))], check=True)


def changes_of(result_out: str) -> dict[str, dict[str, object]]:
    return {c["path"]: c for c in json.loads(result_out)["changes"]}


def test_every_kind_of_change_with_dpkg_attribution(tmp_path: Path) -> None:
    root = make_dpkg_root(tmp_path / "root")
    r = str(root)
    out = tmp_path / "debs"
    foo1 = build_deb(out, "foo", "1.0", {"/usr/lib/foo/helper": "/bin/true"},
                     file_capabilities=["/usr/lib/foo/helper cap_net_bind_service=ep"])
    foo2 = build_deb(out, "foo", "1.1", {"/usr/lib/foo/helper": "/bin/true"},
                     file_capabilities=["/usr/lib/foo/helper cap_net_bind_service=ep"])
    tools = build_deb(out, "tools", "3", {"/usr/bin/strip-me": "/bin/true",
                                          "/usr/bin/change-me": "/bin/true",
                                          "/usr/bin/gain-me": "/bin/true"})
    old = build_deb(out, "old", "0.9", {"/usr/bin/old-tool": "/bin/true"})
    new = build_deb(out, "newpkg", "2.0", {"/usr/sbin/new-tool": "/bin/true"})
    for deb in (foo1, tools, old):
        dpkg_install(root, deb)
    assert run_capsnap("--root", r, "reapply").status == 0
    setcap(root, "/usr/bin/strip-me", "cap_net_raw=ep")
    setcap(root, "/usr/bin/change-me", "cap_net_raw=ep")
    setcap(root, "/usr/bin/old-tool", "cap_kill=ep")
    (root / "opt").mkdir()
    shutil.copy("/bin/true", root / "opt/local-tool")
    setcap(root, "/opt/local-tool", "cap_chown=ep")

    taken = run_capsnap("--root", r, "snapshot", "--full", "--label", "before")
    assert taken.status == 0, taken.err
    assert taken.out.startswith("snapshot 1: 5 files with capabilities")
    assert run_capsnap("--root", r, "diff", "before").status == 0  # nothing changed yet

    dpkg_install(root, foo2)                      # replaced: dpkg drops the xattr
    setcap(root, "/usr/bin/strip-me", None)       # lost
    setcap(root, "/usr/bin/change-me", "cap_net_admin,cap_net_raw=ep")  # changed
    dpkg_remove(root, "old")                      # removed
    dpkg_install(root, new)                       # new
    setcap(root, "/usr/sbin/new-tool", "cap_sys_time=ep")
    setcap(root, "/usr/bin/gain-me", "cap_net_raw=p")  # gained
    os.unlink(root / "opt/local-tool")            # removed, no package

    live = run_capsnap("--root", r, "diff", "before", "--json")
    assert live.status == 1, live.err
    assert run_capsnap("--root", r, "snapshot", "--label", "after").status == 0
    result = run_capsnap("--root", r, "diff", "before", "after", "--json")
    assert result.status == 1
    for output in (live.out, result.out):
        changes = changes_of(output)
        kinds = {path: c["kind"] for path, c in changes.items()}
        assert kinds == {
            "/usr/lib/foo/helper": "replaced",
            "/usr/bin/strip-me": "lost",
            "/usr/bin/change-me": "changed",
            "/usr/bin/old-tool": "removed",
            "/opt/local-tool": "removed",
            "/usr/sbin/new-tool": "new",
            "/usr/bin/gain-me": "gained",
        }
        helper = changes["/usr/lib/foo/helper"]
        assert helper["survived"] is False
        assert (helper["before"]["package"], helper["before"]["version"]) == ("foo", "1.0")
        assert (helper["after"]["package"], helper["after"]["version"]) == ("foo", "1.1")
        assert helper["before"]["capabilities"] == "cap_net_bind_service=ep"
        assert helper["after"]["capabilities"] is None
        assert changes["/usr/bin/old-tool"]["before"]["package"] == "old"
        assert changes["/usr/sbin/new-tool"]["after"]["package"] == "newpkg"
        assert changes["/usr/bin/change-me"]["after"]["capabilities"] == \
            "cap_net_admin,cap_net_raw=ep"
    summary = json.loads(result.out)["summary"]
    assert summary == {"lost": 1, "gained": 1, "changed": 1, "replaced": 1, "removed": 2,
                       "new": 1}

    text = run_capsnap("--root", r, "diff", "before", "after")
    assert text.status == 1
    header, *lines = text.out.splitlines()
    assert header == "snapshot 1 (before) -> snapshot 2 (after)"
    assert lines[0].split() == ["CHANGE", "PATH", "BEFORE", "AFTER", "PACKAGE"]
    assert "\x1b[" not in text.out  # no colour off a terminal
    order = [line.split()[0].rstrip(",") for line in lines[1:]]
    assert order == ["lost", "gained", "changed", "replaced", "removed", "removed", "new"]
    replaced = next(line for line in lines if line.startswith("replaced"))
    assert "caps lost" in replaced and "foo 1.0 -> 1.1" in replaced
    assert "cap_net_bind_service=ep" in replaced

    # After reapply, the live system differs from "after" by the restored helper.
    assert run_capsnap("--root", r, "reapply").status == 0
    again = changes_of(run_capsnap("--root", r, "diff", "after", "--json").out)
    assert {p: c["kind"] for p, c in again.items()} == {"/usr/lib/foo/helper": "gained"}


def test_rpm_upgrade_keeps_caps_and_is_attributed(tmp_path: Path) -> None:
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild missing")
    root = make_rpm_root(tmp_path / "root")
    r = str(root)
    v1 = build_rpm(tmp_path, "pinger", "1.0", {"/usr/lib/pinger/ping": "/bin/true"},
                   caps={"/usr/lib/pinger/ping": "cap_net_raw=ep"})
    v2 = build_rpm(tmp_path, "pinger", "1.1", {"/usr/lib/pinger/ping": "/bin/true"},
                   caps={"/usr/lib/pinger/ping": "cap_net_raw,cap_net_admin=ep"})
    rpm_install(root, v1)
    assert run_capsnap("--root", r, "snapshot", "--package", "pinger", "--label", "a").status == 0
    subprocess.run(["rpm", "--root", r, "-U", "--nodeps", str(v2)], check=True,
                   capture_output=True)
    assert run_capsnap("--root", r, "snapshot", "--package", "pinger", "--label", "b").status == 0
    changes = changes_of(run_capsnap("--root", r, "diff", "a", "b", "--json").out)
    ping = changes["/usr/lib/pinger/ping"]
    assert ping["kind"] == "replaced" and ping["survived"] is False
    assert (ping["before"]["package"], ping["before"]["version"]) == ("pinger", "1.0-1")
    assert (ping["after"]["package"], ping["after"]["version"]) == ("pinger", "1.1-1")
    assert ping["after"]["capabilities"] == "cap_net_admin,cap_net_raw=ep"


def test_bad_references_and_databases(tmp_path: Path) -> None:
    root = make_dpkg_root(tmp_path / "root")
    r = str(root)
    # Nothing recorded yet: the same exit code and message with or without a database.
    none_yet = run_capsnap("--root", r, "diff")
    assert none_yet.status == 2 and "no package-manager transaction" in none_yet.err
    assert run_capsnap("--root", r, "snapshot", "--label", "x").status == 0
    unknown = run_capsnap("--root", r, "diff", "42")
    assert unknown.status == 2
    assert unknown.err.strip() == (f"capsnap: no snapshot '42' in {root}/var/lib/capsnap/"
                                   "capsnap.db; 'capsnap snapshots' lists the ids and labels "
                                   "there are")
    no_transaction = run_capsnap("--root", r, "diff")
    assert (no_transaction.status, no_transaction.err) == (none_yet.status, none_yet.err)

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"\x00garbage" * 512)
    for args in (["snapshot"], ["snapshots"], ["diff", "1"]):
        result = run_capsnap("--root", r, "--db", str(corrupt), *args)
        assert result.status == 3, (args, result)
        assert len(result.err.strip().splitlines()) == 1 and "leaves it alone" in result.err
    assert corrupt.read_bytes() == b"\x00garbage" * 512

    for _ in range(3):
        run_capsnap("--root", r, "snapshot")
    assert run_capsnap("--root", r, "prune", "--keep", "2").status == 0
    listed = json.loads(run_capsnap("--root", r, "snapshots", "--json").out)
    assert [s["id"] for s in listed] == [4, 3]


def test_unreadable_directories_are_counted_not_fatal(tmp_path: Path) -> None:
    root = make_dpkg_root(tmp_path / "root")
    locked = root / "opt/locked"
    locked.mkdir(parents=True)
    shutil.copy("/bin/true", root / "opt/tool")
    setcap(root, "/opt/tool", "cap_net_raw=ep")
    locked.chmod(0)
    for path in (tmp_path, root, root / "opt"):
        path.chmod(0o755)
    tmp_path.parent.chmod(0o755)
    tmp_path.parent.parent.chmod(0o755)
    subprocess.run(["chown", "-R", "nobody", str(root / "var")], check=True)
    result = run_capsnap("--root", str(root), "snapshot", user="nobody")
    assert result.status == 0, result.err
    assert result.out.startswith("snapshot 1: 1 files with capabilities")
    assert "/opt/locked: cannot read: Permission denied" in result.err
    assert "1 directory or files could not be read" in result.err


def test_a_damaged_database_is_one_line_and_left_alone(tmp_path: Path) -> None:
    root = make_dpkg_root(tmp_path / "root")
    shutil.copy("/bin/true", root / "usr/bin/t")
    setcap(root, "/usr/bin/t", "cap_net_raw=ep")
    for n in range(3):
        assert run_capsnap("--root", str(root), "snapshot", "--label", f"s{n}").status == 0
    db = root / "var/lib/capsnap/capsnap.db"
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(db.read_bytes())
    page = 4096
    data[3 * page:4 * page] = b"\xde\xad" * (page // 2)  # a table page
    db.write_bytes(bytes(data))
    for args in (["snapshots"], ["diff", "s0", "s2"]):
        result = run_capsnap("--root", str(root), *args)
        if result.status == 0:
            continue  # that command did not touch the damaged page
        assert result.status == 3, result
        assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert db.read_bytes() == bytes(data)


def test_snapshot_of_a_path_that_is_not_utf8(tmp_path: Path) -> None:
    root = make_dpkg_root(tmp_path / "root")
    odd = os.fsencode(str(root)) + b"/usr/bin/\xff\xfe"
    shutil.copy("/bin/true", odd)
    subprocess.run(["setcap", "cap_net_raw=ep", odd], check=True)
    result = run_capsnap("--root", str(root), "snapshot", "--path",
                         os.fsdecode(b"/usr/bin/\xff\xfe"))
    assert result.status == 0, result.err
    assert result.out.startswith("snapshot 1: 1 files with capabilities")
