"""The administrator's everyday commands (issue 13): declare means it,
dormant declarations, typos are errors.

Real dpkg in scratch roots; capsnap's main() runs in this process.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import getxattr_or_none, needs_root, run_cli
from tests.packaging import build_deb, dpkg_install, dpkg_remove, make_dpkg_root

pytestmark = needs_root

LOCAL = "etc/capsnap/capabilities.d/local.capabilities"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A scratch root with merged /usr (/bin -> usr/bin), a safe helper, an
    interpreter, a symlink and a directory anyone can write."""
    top = make_dpkg_root(tmp_path / "root")
    (top / "bin").symlink_to("usr/bin")
    shutil.copyfile("/bin/true", top / "usr/bin/tool")
    (top / "usr/bin/tool").chmod(0o755)
    # A version no host has: were --root ever ignored, the forced declare and
    # reapply below would otherwise give the host's own python3.11 a capability.
    shutil.copyfile(os.path.realpath("/usr/bin/python3"), top / "usr/bin/python3.99")
    (top / "usr/bin/python3.99").chmod(0o755)
    (top / "usr/bin/python3").symlink_to("python3.99")
    (top / "srv/open").mkdir(parents=True)
    (top / "srv/open").chmod(0o777)
    shutil.copyfile("/bin/true", top / "srv/open/tool")
    (top / "srv/open/tool").chmod(0o755)
    return top


def local_file(root: Path) -> str:
    path = root / LOCAL
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("path", ["/usr/bin/python3.99", "/usr/bin/python3",
                                  "/usr/bin/nonexistent", "/srv/open/tool"])
def test_declare_refuses_what_set_refuses_with_the_same_message(root: Path, path: str) -> None:
    r = str(root)
    refused = run_cli("--root", r, "declare", path, "cap_net_raw=ep")
    by_set = run_cli("--root", r, "set", "cap_net_raw=ep", path)
    assert (refused.status, by_set.status) == (3, 3)
    assert refused.err == by_set.err and len(refused.err.splitlines()) == 1
    assert local_file(root) == ""


def test_declare_applies_at_once_verified_and_warns_as_set_does(root: Path) -> None:
    r = str(root)
    declared = run_cli("--root", r, "declare", "/usr/bin/tool", "cap_sys_admin,cap_net_raw=ep")
    assert declared.status == 0, declared.err
    assert getxattr_or_none(root / "usr/bin/tool") is not None
    assert "applied and verified" in declared.err
    assert run_cli("--root", r, "remove", "/usr/bin/tool").status == 0
    by_set = run_cli("--root", r, "set", "cap_sys_admin,cap_net_raw=ep", "/usr/bin/tool")
    warnings = [line for line in declared.err.splitlines() if "warning" in line]
    assert warnings and warnings == by_set.err.splitlines()
    assert run_cli("--root", r, "check").status == 0


def test_declare_no_apply_only_records(root: Path) -> None:
    r = str(root)
    declared = run_cli("--root", r, "declare", "/usr/bin/tool", "cap_net_raw=ep", "--no-apply")
    assert declared.status == 0 and "not applied (--no-apply)" in declared.err
    assert getxattr_or_none(root / "usr/bin/tool") is None
    assert "/usr/bin/tool cap_net_raw=ep" in local_file(root)
    assert run_cli("--root", r, "check").status == 1


def test_declare_force_is_recorded_and_honoured_by_reapply(root: Path) -> None:
    r = str(root)
    forced = run_cli("--root", r, "declare", "/usr/bin/python3.99", "cap_net_bind_service=ep",
                     "--force")
    assert forced.status == 0, forced.err
    assert "forced past: refused: it is the Python interpreter" in forced.err
    assert "/usr/bin/python3.99 cap_net_bind_service=ep forced=yes" in local_file(root)
    assert getxattr_or_none(root / "usr/bin/python3.99") is not None
    assert run_cli("--root", r, "remove", "/usr/bin/python3.99").status == 0
    assert run_cli("--root", r, "reapply").status == 0
    assert getxattr_or_none(root / "usr/bin/python3.99") is not None
    # Missing: recorded as forced, not applied, and said so (exit 3).
    missing = run_cli("--root", r, "declare", "/usr/bin/later", "cap_net_raw=ep", "--force")
    assert missing.status == 3 and "not applied: no such file" in missing.err
    assert "/usr/bin/later cap_net_raw=ep forced=yes" in local_file(root)
    # A package cannot force anything.
    assert run_cli("--root", r, "declare", "/usr/bin/tool",
                   "cap_net_raw=ep forced=yes").status == 2


def test_every_spelling_names_one_declaration(root: Path) -> None:
    r = str(root)
    assert run_cli("--root", r, "declare", "/bin//./tool", "cap_net_raw=ep").status == 0
    listed = json.loads(run_cli("--root", r, "list", "--json").out)
    assert [d["path"] for d in listed] == ["/usr/bin/tool"]
    # Declared again under another spelling: replaced, not added.
    again = run_cli("--root", r, "declare", "usr/bin/tool", "cap_net_bind_service=ep")
    assert again.status == 0 and again.err.startswith("capsnap: replaced")
    for spelling in ("usr/bin//tool", "/bin/./tool", "/usr/bin/tool"):
        (root / LOCAL).write_text("/bin/tool cap_net_raw=ep\n")
        gone = run_cli("--root", r, "undeclare", spelling)
        assert gone.status == 0, (spelling, gone.err)
        assert json.loads(run_cli("--root", r, "list", "--json").out) == []


@pytest.fixture
def with_foo(root: Path, tmp_path: Path) -> Path:
    deb = build_deb(tmp_path / "debs", "foo", "1.0", {"/usr/bin/foo": "/bin/true"})
    dpkg_install(root, deb)
    return deb


def test_a_declaration_of_a_removed_package_is_dormant(root: Path, with_foo: Path) -> None:
    r = str(root)
    declared = run_cli("--root", r, "declare", "/usr/bin/foo", "cap_net_raw=ep")
    assert declared.status == 0 and "file of package foo 1.0" in declared.err
    dpkg_remove(root, "foo", purge=True)

    check = run_cli("--root", r, "check")
    assert check.status == 0, check.out + check.err
    assert "dormant" in check.out and "foo is not installed" in check.out
    report = json.loads(run_cli("--root", r, "check", "--json").out)
    assert report["summary"] == {"dormant": 1}
    assert "dormant: foo is not installed" in run_cli("--root", r, "list").out
    log = root / "var/log/capsnap.log"
    before = log.read_text() if log.exists() else ""
    reapplied = run_cli("--root", r, "reapply")
    assert reapplied.status == 0 and reapplied.err == ""
    assert (log.read_text() if log.exists() else "") == before  # nothing to log
    assert not (root / "var/lib/capsnap/packages/foo").exists()

    dpkg_install(root, with_foo)  # back: in force again
    assert run_cli("--root", r, "check").status == 1
    assert run_cli("--root", r, "reapply").status == 0
    assert getxattr_or_none(root / "usr/bin/foo") is not None


@pytest.mark.parametrize("command", [["check"], ["reapply"], ["list"], ["snapshot"]])
def test_package_that_matches_nothing_is_an_error(root: Path, with_foo: Path,
                                                  command: list[str]) -> None:
    r = str(root)
    typo = run_cli("--root", r, *command, "--package", "fo")
    assert typo.status == 2 and len(typo.err.splitlines()) == 1 and "fo" in typo.err
    assert run_cli("--root", r, *command, "--package", "foo").status in (0, 1)


def test_forget_of_nothing_recorded_and_diff_usage(root: Path, with_foo: Path) -> None:
    r = str(root)
    forgot = run_cli("--root", r, "forget", "foo")
    assert forgot.status == 2 and "no records" in forgot.err
    assert run_cli("--root", r, "declare", "/usr/bin/foo", "cap_net_raw=ep").status == 0
    assert run_cli("--root", r, "reapply").status == 0
    assert run_cli("--root", r, "forget", "foo").status == 0

    # Nothing recorded yet: one exit code, database or not.
    db = root / "var/lib/capsnap/capsnap.db"
    assert not db.exists()
    no_db = run_cli("--root", r, "diff")
    assert not db.exists()  # reading does not create it
    listed = run_cli("--root", r, "snapshots")
    assert (listed.status, listed.out, listed.err) == (0, "", "")
    assert run_cli("--root", r, "snapshot", "--package", "foo").status == 0
    empty = run_cli("--root", r, "diff")
    assert no_db.status == empty.status == 2 and no_db.err == empty.err

    three = run_cli("--root", r, "diff", "1", "1", "1")
    assert three.status == 2 and "at most two" in three.err


def test_audit_from_a_snapshot_says_when_the_file_was_replaced_since(root: Path) -> None:
    """The snapshot saw a harmless helper with cap_net_raw; the file at that
    path now is a copy of python: audit --from judges the file there now and
    says it is not the one recorded, so the risk is not hidden or misplaced."""
    r = str(root)
    tool = root / "usr/bin/tool"
    assert run_cli("--root", r, "set", "cap_net_raw=ep", "/usr/bin/tool").status == 0
    assert run_cli("--root", r, "snapshot", "--label", "before").status == 0
    unchanged = json.loads(run_cli("--root", r, "audit", "--json", "--from", "before").out)
    [found] = [f for f in unchanged["findings"] if f["path"] == "/usr/bin/tool"]
    assert not any("replaced since" in d for d in found["details"]), found
    assert "interpreter" not in found["risks"]

    tool.unlink()
    shutil.copyfile(os.path.realpath("/usr/bin/python3"), tool)
    tool.chmod(0o755)
    report = run_cli("--root", r, "audit", "--json", "--from", "before")
    assert report.status == 1
    [found] = [f for f in json.loads(report.out)["findings"] if f["path"] == "/usr/bin/tool"]
    assert "interpreter" in found["risks"], found
    assert any("not the file the snapshot recorded" in d for d in found["details"]), found

    tool.unlink()
    gone = json.loads(run_cli("--root", r, "audit", "--json", "--from", "before").out)
    [found] = [f for f in gone["findings"] if f["path"] == "/usr/bin/tool"]
    assert any("gone now" in d for d in found["details"]), found


def test_configuration_management_declares_what_the_cli_declares(root: Path,
                                                                  tmp_path: Path) -> None:
    """The Ansible module's declare (capsnap.desired) and `capsnap declare`
    write the same declarations: one spelling on merged /usr, forced past the
    policy recorded as forced, "none" masks; and a second run changes nothing."""
    from capsnap import desired
    from capsnap.paths import SystemPaths

    twin = tmp_path / "twin"
    shutil.copytree(root, twin, symlinks=True)
    r, t = str(root), str(twin)
    paths = SystemPaths(root=t)
    steps = [("/bin/tool", "cap_net_raw=+ep", False), ("/srv/open/tool", "cap_kill=ep", True),
             ("/usr/bin/tool", "none", False)]
    for path, caps, force in steps:
        cli = run_cli("--root", r, "declare", *(["--force"] if force else []), path, caps)
        assert cli.status == 0, cli.err
        made = desired.declare(paths, path, caps, force=force)
        one_name = "/usr" + path if path.startswith("/bin/") else path
        assert made["changed"] and made["path"] == one_name
        again = desired.declare(paths, path, caps, force=force)
        assert not again["changed"], again
    assert (twin / LOCAL).read_text() == local_file(root)
    assert "/usr/bin/tool none" in local_file(root) and "/bin/tool" not in \
        local_file(root).replace("/usr/bin/tool", "")
    assert "forced=yes" in local_file(root)
    for top in (root, twin):
        assert getxattr_or_none(top / "usr/bin/tool") is None
        assert getxattr_or_none(top / "srv/open/tool") is not None
    # Refused without force, as set refuses, and nothing written.
    before = (twin / LOCAL).read_text()
    with pytest.raises(Exception, match="python3.99") as refused:
        desired.declare(paths, "/usr/bin/python3.99", "cap_net_raw=ep")
    assert str(refused.value) == run_cli("--root", r, "declare", "/usr/bin/python3.99",
                                         "cap_net_raw=ep").err.removeprefix("capsnap: ").strip()
    assert (twin / LOCAL).read_text() == before
