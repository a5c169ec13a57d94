"""Declared capabilities from real dpkg and rpm databases: check and reapply.

dpkg and rpm run for real in scratch roots; capsnap runs as the hooks will,
a separate process under /usr/bin/python3 with --root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SRC, getxattr_or_none, needs_root, run_capsnap
from tests.packaging import (
    build_deb,
    build_rpm,
    dpkg_install,
    dpkg_remove,
    make_dpkg_root,
    make_rpm_root,
    rpm,
    rpm_install,
)

pytestmark = needs_root

HELPER = "/usr/lib/foo/bind-helper"


def getcap(path: Path) -> str:
    return subprocess.run(["getcap", str(path)], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def dpkg_root(tmp_path: Path) -> Path:
    return make_dpkg_root(tmp_path / "root")


def foo_deb(out: Path, version: str = "1.0", extra: list[str] | None = None) -> Path:
    return build_deb(out, "foo", version, {HELPER: "/bin/true", "/usr/bin/foo": "/bin/true"},
                     file_capabilities=[f"{HELPER} cap_net_bind_service=ep", *(extra or [])])


def test_dpkg_reinstall_drops_the_capability_and_reapply_restores_it(
        tmp_path: Path, dpkg_root: Path) -> None:
    deb = foo_deb(tmp_path)
    dpkg_install(dpkg_root, deb)
    root = str(dpkg_root)
    installed = dpkg_root / HELPER.lstrip("/")

    assert run_capsnap("--root", root, "reapply").status == 0
    assert getcap(installed) == f"{installed} cap_net_bind_service=ep\n"

    dpkg_install(dpkg_root, deb)  # reinstall: a new inode, no xattr
    assert getxattr_or_none(installed) is None

    check = run_capsnap("--root", root, "check")
    assert check.status == 1
    assert HELPER in check.out and "drifted" in check.out

    reapplied = run_capsnap("--root", root, "reapply", "--json")
    assert reapplied.status == 0, reapplied.err
    findings = json.loads(reapplied.out)["findings"]
    assert [(f["path"], f["status"], f["package"], f["version"]) for f in findings] == [
        (HELPER, "restored", "foo", "1.0")]
    assert getcap(installed) == f"{installed} cap_net_bind_service=ep\n"
    assert run_capsnap("--root", root, "check").status == 0

    log = (dpkg_root / "var/log/capsnap.log").read_text().splitlines()
    assert len(log) == 2
    assert f'path="{HELPER}"' in log[-1] and 'result="restored"' in log[-1]
    assert 'old="none"' in log[-1] and 'new="cap_net_bind_service=ep"' in log[-1]
    assert 'source="dpkg:foo 1.0"' in log[-1]


def test_dpkg_scratch_root_works_unprivileged_in_a_user_namespace(tmp_path: Path) -> None:
    """The same story as `nobody` inside `unshare -Ur`: namespaced capabilities."""
    if subprocess.run(["runuser", "-u", "nobody", "--", "unshare", "-Ur", "true"],
                      capture_output=True).returncode != 0:
        pytest.skip("unprivileged user namespaces are disabled")
    top = Path(shutil.copytree(SRC, tmp_path / "src"))
    deb = foo_deb(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(deb, work / deb.name)
    root = make_dpkg_root(work / "root")
    for path in [tmp_path, work, *work.rglob("*"), *top.rglob("*"), top]:
        os.lchown(path, 65534, 65534)
    tmp_path.chmod(0o755)
    tmp_path.parent.chmod(0o755)  # pytest's base directory is private to root
    tmp_path.parent.parent.chmod(0o755)
    script = (f"dpkg --root {root} --force-script-chrootless --force-not-root "
              f"--log={root}/var/log/dpkg.log -i {work / deb.name} >/dev/null && "
              f"PYTHONPATH={top} /usr/bin/python3 -m capsnap --root {root} reapply && "
              f"PYTHONPATH={top} /usr/bin/python3 -m capsnap --root {root} check")
    env = dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    done = subprocess.run(["runuser", "-u", "nobody", "--", "unshare", "-Ur", "sh", "-c",
                           script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    installed = root / HELPER.lstrip("/")
    listed = subprocess.run(["getcap", "-n", str(installed)], capture_output=True, text=True)
    assert listed.stdout == f"{installed} cap_net_bind_service=ep [rootid=65534]\n"


def test_bad_entries_are_reported_and_the_rest_still_applied(tmp_path: Path,
                                                             dpkg_root: Path) -> None:
    dpkg_install(dpkg_root, foo_deb(tmp_path, extra=["/usr/bin/foo cap_net_rawx=ep",
                                                     "relative/path cap_net_raw=ep",
                                                     "/usr/bin/foo cap_net_raw=ep"]))
    result = run_capsnap("--root", str(dpkg_root), "reapply")
    assert result.status == 1  # the bad entries are problems to fix
    warnings = [ln for ln in result.err.splitlines() if "warning:" in ln]
    assert len(warnings) == 2
    assert all("package foo 1.0: File-Capabilities entry" in w for w in warnings)
    # Told by number, never quoted: a field's text is anyone's.
    assert warnings[0].endswith("entry 2: invalid capability text (clause 1)")
    assert warnings[1].endswith("entry 3: the path is not absolute")
    assert "rawx" not in result.err and "relative" not in result.err
    assert getcap(dpkg_root / "usr/bin/foo").endswith(" cap_net_raw=ep\n")
    assert getcap(dpkg_root / HELPER.lstrip("/")).endswith(" cap_net_bind_service=ep\n")


def test_removed_package_in_config_files_state_does_not_count(tmp_path: Path,
                                                             dpkg_root: Path) -> None:
    deb = build_deb(tmp_path, "bar", "2", {"/usr/bin/bar": "/bin/true",
                                          "/etc/bar.conf": b"x=1\n"},
                    file_capabilities=["/usr/bin/bar cap_net_raw=ep"],
                    conffiles=["/etc/bar.conf"])
    dpkg_install(dpkg_root, deb)
    assert "/usr/bin/bar" in run_capsnap("--root", str(dpkg_root), "list").out
    dpkg_remove(dpkg_root, "bar")  # conffile stays: config-files state
    assert "Status: deinstall ok config-files" in \
        (dpkg_root / "var/lib/dpkg/status").read_text()
    listed = run_capsnap("--root", str(dpkg_root), "list", "--json")
    assert json.loads(listed.out) == []
    assert run_capsnap("--root", str(dpkg_root), "check").status == 0


def test_conflicting_packages_leave_the_path_alone_until_declared_locally(
        tmp_path: Path, dpkg_root: Path) -> None:
    # A package may only declare its own files, so two packages meet on one
    # file where dpkg does not see it: /bin/x and /usr/bin/x on merged /usr.
    (dpkg_root / "bin").symlink_to("usr/bin")
    shared = "/usr/bin/shared-helper"
    dpkg_install(dpkg_root, build_deb(tmp_path, "one", "1", {"/bin/shared-helper": "/bin/true"},
                                      file_capabilities=[f"{shared} cap_net_raw=ep"]))
    dpkg_install(dpkg_root, build_deb(tmp_path, "two", "1", {shared: "/bin/true"},
                                      file_capabilities=[f"{shared} cap_net_admin=ep"]))
    root = str(dpkg_root)
    result = run_capsnap("--root", root, "reapply")
    assert result.status == 1
    assert "skipped" in result.out and "packages disagree" in result.out
    assert getxattr_or_none(dpkg_root / shared.lstrip("/")) is None
    listed = run_capsnap("--root", root, "list").out
    assert listed.count("conflict: left alone") == 2

    assert run_capsnap("--root", root, "declare", shared, "cap_net_raw=ep",
                       "--reason", "one is right").status == 0
    listed = run_capsnap("--root", root, "list").out
    assert "wins over dpkg:one 1, dpkg:two 1" in listed
    assert "(file of one)" in listed
    assert run_capsnap("--root", root, "reapply").status == 0
    assert getcap(dpkg_root / shared.lstrip("/")).endswith(" cap_net_raw=ep\n")


def test_local_declaration_on_a_dpkg_file_survives_reinstall(tmp_path: Path,
                                                             dpkg_root: Path) -> None:
    deb = build_deb(tmp_path, "node", "18.0", {"/usr/bin/node-ish": "/bin/true"})
    dpkg_install(dpkg_root, deb)
    root = str(dpkg_root)
    declared = run_capsnap("--root", root, "declare", "/usr/bin/node-ish",
                           "cap_net_bind_service=+ep", "--reason", "serves port 443")
    assert declared.status == 0
    assert "file of package node 18.0" in declared.err
    conf = (dpkg_root / "etc/capsnap/capabilities.d/local.capabilities").read_text()
    assert "/usr/bin/node-ish cap_net_bind_service=+ep owner=node  # serves port 443" in conf
    installed = dpkg_root / "usr/bin/node-ish"
    for _ in range(2):
        assert run_capsnap("--root", root, "reapply", "--package", "node").status == 0
        assert getcap(installed).endswith(" cap_net_bind_service=ep\n")
        dpkg_install(dpkg_root, deb)
        assert getxattr_or_none(installed) is None
    # --package selects by owner too: another package's run leaves it alone.
    dpkg_install(dpkg_root, build_deb(tmp_path, "other", "1", {"/usr/bin/other": "/bin/true"}))
    assert run_capsnap("--root", root, "reapply", "--package", "other").status == 0
    assert getxattr_or_none(installed) is None
    assert run_capsnap("--root", root, "undeclare", "/usr/bin/node-ish").status == 0
    assert run_capsnap("--root", root, "list", "--json").out.strip() == "[]"


@pytest.fixture
def rpm_root(tmp_path: Path) -> Path:
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild missing")
    return make_rpm_root(tmp_path / "rpmroot")


def test_rpm_caps_are_checked_and_reapplied(tmp_path: Path, rpm_root: Path) -> None:
    pkg = build_rpm(tmp_path, "pinger", "2.0", {"/usr/lib/pinger/ping": "/bin/true"},
                    caps={"/usr/lib/pinger/ping": "cap_net_raw=ep"})
    rpm_install(rpm_root, pkg)
    installed = rpm_root / "usr/lib/pinger/ping"
    root = str(rpm_root)
    assert getcap(installed).endswith(" cap_net_raw=ep\n")
    assert run_capsnap("--root", root, "check").status == 0
    listed = json.loads(run_capsnap("--root", root, "list", "--json").out)
    assert [(d["path"], d["source"], d["package"], d["version"]) for d in listed] == [
        ("/usr/lib/pinger/ping", "rpm", "pinger", "2.0-1")]

    subprocess.run(["setcap", "-r", str(installed)], check=True)
    verify = rpm(rpm_root, "-V", "pinger", check=False)
    assert "P" in verify.stdout.split()[0]
    check = run_capsnap("--root", root, "check")
    assert check.status == 1 and "drifted" in check.out

    assert run_capsnap("--root", root, "reapply").status == 0
    assert getcap(installed).endswith(" cap_net_raw=ep\n")
    assert rpm(rpm_root, "-V", "pinger", check=False).stdout == ""
    assert run_capsnap("--root", root, "check").status == 0


def test_local_declaration_on_an_rpm_file_survives_reinstall(tmp_path: Path,
                                                            rpm_root: Path) -> None:
    pkg = build_rpm(tmp_path, "vpn", "1.1", {"/usr/sbin/vpnc-ish": "/bin/true"})
    rpm_install(rpm_root, pkg)
    root = str(rpm_root)
    declared = run_capsnap("--root", root, "declare", "/usr/sbin/vpnc-ish",
                           "cap_net_admin=ep")
    assert "file of package vpn 1.1-1" in declared.err
    installed = rpm_root / "usr/sbin/vpnc-ish"
    assert run_capsnap("--root", root, "reapply", "--package", "vpn").status == 0
    assert getcap(installed).endswith(" cap_net_admin=ep\n")
    rpm_install(rpm_root, pkg, reinstall=True)
    assert getxattr_or_none(installed) is None
    assert run_capsnap("--root", root, "check").status == 1
    assert run_capsnap("--root", root, "reapply", "--package", "vpn").status == 0
    assert getcap(installed).endswith(" cap_net_admin=ep\n")


def test_no_rpm_database_is_not_an_error(dpkg_root: Path) -> None:
    result = run_capsnap("--root", str(dpkg_root), "--verbose", "list", "--source", "rpm")
    assert result.status == 0
    assert result.out == ""
    assert "rpm: no database at" in result.err


def test_reapply_follows_dpkg_diversions(tmp_path: Path, dpkg_root: Path) -> None:
    """Another package diverted the helper: foo's file, and its capability, live at .real."""
    (dpkg_root / "var/lib/dpkg/diversions").write_text(
        f"{HELPER}\n{HELPER}.real\nother\n")
    dpkg_install(dpkg_root, foo_deb(tmp_path))
    real = dpkg_root / (HELPER.lstrip("/") + ".real")
    assert real.exists()
    shutil.copyfile("/bin/true", dpkg_root / HELPER.lstrip("/"))  # other's binary
    (dpkg_root / HELPER.lstrip("/")).chmod(0o755)
    assert run_capsnap("--root", str(dpkg_root), "reapply", "--package", "foo").status == 0
    assert getcap(real).endswith(" cap_net_bind_service=ep\n")
    assert getxattr_or_none(dpkg_root / HELPER.lstrip("/")) is None
