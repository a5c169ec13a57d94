"""What a package may declare, and what capsnap takes back when it stops.

Real dpkg in scratch roots (tests/packaging.py); capsnap runs as a separate
process with --root, as a hook or an administrator would run it.  Every
capability lands on copies of /bin/true inside the scratch root.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    build_with_tree_addon,
    getxattr_or_none,
    needs_root,
    ramfs_at,
    run_capsnap,
)
from tests.packaging import build_deb, dpkg_install, dpkg_remove, make_dpkg_root

pytestmark = needs_root


def getcap(path: Path) -> str:
    """The capability text getcap prints for a file, "" for none."""
    out = subprocess.run(["getcap", str(path)], capture_output=True, text=True).stdout
    return out.split(" ", 1)[1].strip() if " " in out else ""


def log_lines(root: Path) -> list[str]:
    log = root / "var/log/capsnap.log"
    return log.read_text().splitlines() if log.exists() else []


ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                      check=True).stdout.strip()


def multi_arch_same(deb: Path) -> Path:
    """The package rebuilt for this architecture as Multi-Arch: same (build_deb
    makes Architecture: all packages, which cannot be)."""
    tree = deb.with_suffix(".tree")
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN/control"
    control.write_text(control.read_text().replace(
        "Architecture: all\n", f"Architecture: {ARCH}\nMulti-Arch: same\n"))
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)], check=True,
                   capture_output=True)
    return deb


@pytest.fixture
def dpkg_root(tmp_path: Path) -> Path:
    return make_dpkg_root(tmp_path / "root")


def test_a_package_cannot_give_another_packages_file_a_capability(
        tmp_path: Path, dpkg_root: Path) -> None:
    root = str(dpkg_root)
    dpkg_install(dpkg_root, build_deb(tmp_path, "victim", "1", {"/usr/bin/victim": "/bin/true"}))
    dpkg_install(dpkg_root, multi_arch_same(build_deb(
        tmp_path, "evil-data", "1.0",
        {"/usr/lib/evil/helper": "/bin/true", "/usr/share/doc/evil-data/README": "x\n"},
        file_capabilities=["/usr/bin/victim cap_dac_read_search=ep",
                           "/usr/lib/evil/helper cap_net_bind_service=ep",
                           # Not shipped either, and a terminal escape in its name.
                           "/usr/bin/odd\\033[31mname cap_net_raw=ep"])))
    # dpkg names its file list evil-data:ARCH.list, not evil-data.list.
    assert (dpkg_root / f"var/lib/dpkg/info/evil-data:{ARCH}.list").exists()
    victim = dpkg_root / "usr/bin/victim"

    reapplied = run_capsnap("--root", root, "reapply")
    assert reapplied.status == 1  # a refused entry is a problem to fix
    assert getxattr_or_none(victim) is None
    assert getcap(dpkg_root / "usr/lib/evil/helper") == "cap_net_bind_service=ep"
    refused = "package evil-data 1.0: File-Capabilities entry /usr/bin/victim refused: " \
        "the package does not ship that file"
    assert refused in reapplied.err
    assert "\x1b" not in reapplied.out + reapplied.err

    check = run_capsnap("--root", root, "check")
    assert check.status == 1
    assert refused in check.err
    assert "victim" not in check.out  # not a declaration at all: nothing to check
    data = json.loads(run_capsnap("--root", root, "check", "--json").out)
    assert {(p["where"], p["message"].split(":")[0]) for p in data["problems"]} >= {
        ("package evil-data 1.0", "File-Capabilities entry /usr/bin/victim refused")}
    assert [f["path"] for f in data["findings"]] == ["/usr/lib/evil/helper"]
    assert all("victim" not in line for line in log_lines(dpkg_root))


def test_diverted_and_merged_usr_spellings_count_other_directories_do_not(
        tmp_path: Path, dpkg_root: Path) -> None:
    root = str(dpkg_root)
    (dpkg_root / "bin").symlink_to("usr/bin")  # merged /usr; /sbin stays a directory
    (dpkg_root / "sbin").mkdir()
    (dpkg_root / "usr/sbin").mkdir()
    diverted = subprocess.run(
        ["dpkg-divert", "--root", root, "--local", "--rename", "--divert",
         "/usr/lib/div/tool.real", "--add", "/usr/lib/div/tool"], capture_output=True, text=True)
    assert diverted.returncode == 0, diverted.stderr
    dpkg_install(dpkg_root, build_deb(tmp_path, "other", "1", {"/usr/sbin/tool": "/bin/true"}))
    dpkg_install(dpkg_root, build_deb(
        tmp_path, "mine", "1",
        {"/bin/merged": "/bin/true", "/sbin/tool": "/bin/true", "/usr/lib/div/tool": "/bin/true"},
        file_capabilities=["/usr/bin/merged cap_net_raw=ep",  # ships it as /bin/merged
                           "/usr/lib/div/tool cap_net_raw=ep",
                           # /sbin/x is not /usr/sbin/x here: that is other's file.
                           "/usr/sbin/tool cap_net_raw=ep"]))

    reapplied = run_capsnap("--root", root, "reapply", "--json")
    assert getcap(dpkg_root / "usr/bin/merged") == "cap_net_raw=ep"
    assert getcap(dpkg_root / "usr/lib/div/tool.real") == "cap_net_raw=ep"
    assert not (dpkg_root / "usr/lib/div/tool").exists()
    assert getxattr_or_none(dpkg_root / "usr/sbin/tool") is None
    assert getxattr_or_none(dpkg_root / "sbin/tool") is None
    assert reapplied.status == 1
    assert "package mine 1: File-Capabilities entry /usr/sbin/tool refused" in reapplied.err
    assert sorted(f["path"] for f in json.loads(reapplied.out)["findings"]) == [
        "/usr/bin/merged", "/usr/lib/div/tool.real"]


def test_a_package_file_list_is_read_again_when_dpkg_rewrites_it(tmp_path: Path,
                                                                 dpkg_root: Path) -> None:
    files = {"/usr/lib/moving/helper": "/bin/true", "/usr/lib/moving/other": "/bin/true"}
    declared = ["/usr/lib/moving/helper cap_net_raw=ep"]
    dpkg_install(dpkg_root, build_deb(tmp_path, "moving", "1", files,
                                      file_capabilities=declared))
    root = str(dpkg_root)
    assert run_capsnap("--root", root, "check").err == ""
    # Version 2 no longer ships the file but still declares it: the cached
    # answer for version 1's list must not count.
    dpkg_install(dpkg_root, build_deb(tmp_path, "moving", "2",
                                      {"/usr/lib/moving/other": "/bin/true"},
                                      file_capabilities=declared))
    check = run_capsnap("--root", root, "check")
    assert "package moving 2: File-Capabilities entry /usr/lib/moving/helper refused" \
        in check.err


def test_root_equivalent_package_capability_is_applied_with_a_warning(
        tmp_path: Path, dpkg_root: Path) -> None:
    root = str(dpkg_root)
    dpkg_install(dpkg_root, build_deb(
        tmp_path, "powerful", "1.0",
        {"/usr/lib/powerful/helper": "/bin/true", "/usr/lib/powerful/mild": "/bin/true"},
        file_capabilities=["/usr/lib/powerful/helper cap_setuid,cap_net_raw=ep",
                           "/usr/lib/powerful/mild cap_net_raw=ep"]))
    local = dpkg_root / "usr/local/bin/mine"
    local.parent.mkdir(parents=True)
    shutil.copyfile("/bin/true", local)
    local.chmod(0o755)
    assert run_capsnap("--root", root, "declare", "/usr/local/bin/mine",
                       "cap_sys_admin=ep").status == 0

    reapplied = run_capsnap("--root", root, "reapply")
    assert reapplied.status == 0, reapplied.err
    assert getcap(dpkg_root / "usr/lib/powerful/helper") == "cap_setuid,cap_net_raw=ep"
    warnings = [line for line in log_lines(dpkg_root) if " warning " in line]
    assert len(warnings) == 1, log_lines(dpkg_root)
    assert 'path="/usr/lib/powerful/helper"' in warnings[0]
    assert 'source="dpkg:powerful 1.0"' in warnings[0]
    assert "root-equivalent cap_setuid" in warnings[0]

    check = run_capsnap("--root", root, "check")
    assert check.status == 0  # in place: a warning, not a failure
    said = [line for line in check.err.splitlines() if "warning:" in line]
    assert said == ["capsnap: warning: /usr/lib/powerful/helper: dpkg:powerful 1.0 declares "
                    "root-equivalent cap_setuid: can become any user, root included"]
    data = json.loads(run_capsnap("--root", root, "check", "--json").out)
    by_path = {f["path"]: f for f in data["findings"]}
    assert by_path["/usr/lib/powerful/helper"]["warnings"] == [said[0].split(": ", 3)[3]]
    assert by_path["/usr/lib/powerful/mild"]["warnings"] == []
    assert by_path["/usr/local/bin/mine"]["warnings"] == []  # the administrator's choice
    assert data["warnings"] == [{"path": "/usr/lib/powerful/helper",
                                 "message": by_path["/usr/lib/powerful/helper"]["warnings"][0]}]


@pytest.fixture
def ramfs(tmp_path: Path) -> Iterator[Path]:
    """A filesystem that cannot hold capabilities (EOPNOTSUPP), as NFS."""
    with ramfs_at(tmp_path / "ramfs") as mount:
        yield mount


def test_root_equivalent_package_capability_never_gets_the_setuid_fallback(
        tmp_path: Path, ramfs: Path) -> None:
    root = make_dpkg_root(ramfs / "root")
    dpkg_install(root, build_deb(
        tmp_path, "ptp", "1",
        {"/usr/lib/ptp/helper": "/bin/true", "/usr/lib/ptp/binder": "/bin/true"},
        file_capabilities=[
            "/usr/lib/ptp/helper cap_net_bind_service,cap_net_admin=ep fallback=setuid:4755",
            "/usr/lib/ptp/binder cap_net_bind_service=ep fallback=setuid:4755"]))
    reapplied = run_capsnap("--root", str(root), "reapply", "--json")
    findings = {f["path"]: f for f in json.loads(reapplied.out)["findings"]}
    assert findings["/usr/lib/ptp/binder"]["status"] == "fallback"
    assert stat.S_IMODE((root / "usr/lib/ptp/binder").stat().st_mode) == 0o4755
    helper = findings["/usr/lib/ptp/helper"]
    assert helper["status"] == "failed"
    assert "never gets the setuid fallback" in helper["detail"]
    assert stat.S_IMODE((root / "usr/lib/ptp/helper").stat().st_mode) == 0o755
    assert reapplied.status == 1
    # Nor does check count a setuid mode put there by hand as the fallback.
    (root / "usr/lib/ptp/helper").chmod(0o4755)
    check = json.loads(run_capsnap("--root", str(root), "check", "--json").out)
    assert {f["path"]: f["status"] for f in check["findings"]}["/usr/lib/ptp/helper"] == \
        "drifted"


def test_what_capsnap_applied_for_a_package_goes_when_its_declaration_does(
        tmp_path: Path, dpkg_root: Path) -> None:
    """Conffiles keep their inode (and capability) across an upgrade and a
    removal: only capsnap can take back what it applied there."""
    root = str(dpkg_root)
    tools = {f"/etc/keeper/{name}": "/bin/true" for name in ("dropped", "admin", "local")}
    modes = dict.fromkeys(tools, 0o755)
    v1 = build_deb(tmp_path, "keeper", "1.0", tools, modes=modes, conffiles=sorted(tools),
                   file_capabilities=[f"{path} cap_net_raw=ep" for path in sorted(tools)])
    v2 = build_deb(tmp_path, "keeper", "1.1", tools, modes=modes, conffiles=sorted(tools))
    gone = build_deb(tmp_path, "gone", "1", {"/etc/gone/tool": "/bin/true"},
                     modes={"/etc/gone/tool": 0o755}, conffiles=["/etc/gone/tool"],
                     file_capabilities=["/etc/gone/tool cap_net_bind_service=ep"])
    dpkg_install(dpkg_root, v1)
    dpkg_install(dpkg_root, gone)
    assert run_capsnap("--root", root, "reapply").status == 0
    etc = dpkg_root / "etc"
    for name in ("dropped", "admin", "local"):
        assert getcap(etc / "keeper" / name) == "cap_net_raw=ep"
    # The administrator changes one, and declares another locally.
    assert subprocess.run(["setcap", "cap_net_admin=ep", str(etc / "keeper/admin")]).returncode \
        == 0
    assert run_capsnap("--root", root, "declare", "/etc/keeper/local",
                       "cap_net_raw=ep").status == 0

    dpkg_install(dpkg_root, v2)  # no longer declares anything
    dpkg_remove(dpkg_root, "gone")  # its conffile stays
    assert getcap(etc / "keeper/dropped") == "cap_net_raw=ep"  # dpkg left them as they were
    assert getcap(etc / "gone/tool") == "cap_net_bind_service=ep"
    before = len(log_lines(dpkg_root))

    reapplied = run_capsnap("--root", root, "reapply")
    assert reapplied.status == 0, reapplied.out + reapplied.err
    assert getxattr_or_none(etc / "keeper/dropped") is None
    assert getxattr_or_none(etc / "gone/tool") is None
    assert getcap(etc / "keeper/admin") == "cap_net_admin=ep"
    assert getcap(etc / "keeper/local") == "cap_net_raw=ep"
    new = log_lines(dpkg_root)[before:]
    removed = sorted(line for line in new if 'result="removed"' in line)
    assert len(removed) == 2, new
    assert 'path="/etc/gone/tool"' in removed[0] and 'source="dpkg:gone 1"' in removed[0]
    assert 'old="cap_net_bind_service=ep" new="none"' in removed[0]
    assert 'path="/etc/keeper/dropped"' in removed[1]
    assert 'source="dpkg:keeper 1.0"' in removed[1]
    left = [line for line in new if 'result="left-alone"' in line]
    assert len(left) == 1 and 'path="/etc/keeper/admin"' in left[0]
    assert not any("/etc/keeper/local" in line for line in new)

    # Once: the records no longer hold what was dealt with.
    assert run_capsnap("--root", root, "reapply").status == 0
    assert log_lines(dpkg_root)[before + len(new):] == []
    records = dpkg_root / "var/lib/capsnap/packages"
    assert not (records / "gone").exists()
    assert '"applied"' not in (records / "keeper").read_text()

    # An administrator's own setcap on a file nobody declares stays too.
    assert subprocess.run(["setcap", "cap_net_raw=ep", str(etc / "keeper/dropped")]).returncode \
        == 0
    assert run_capsnap("--root", root, "reapply").status == 0
    assert getcap(etc / "keeper/dropped") == "cap_net_raw=ep"


def test_a_dry_run_takes_nothing_back(tmp_path: Path, dpkg_root: Path) -> None:
    conf = "/etc/dry/tool"
    dpkg_install(dpkg_root, build_deb(tmp_path, "dry", "1", {conf: "/bin/true"},
                                      modes={conf: 0o755}, conffiles=[conf],
                                      file_capabilities=[f"{conf} cap_net_raw=ep"]))
    root = str(dpkg_root)
    assert run_capsnap("--root", root, "reapply").status == 0
    dpkg_remove(dpkg_root, "dry")
    dry = run_capsnap("--root", root, "reapply", "--dry-run", "--json")
    assert [(f["path"], f["status"]) for f in json.loads(dry.out)["findings"]] == [
        (conf, "would-remove")]
    assert getcap(dpkg_root / conf.lstrip("/")) == "cap_net_raw=ep"
    assert run_capsnap("--root", root, "reapply").status == 0
    assert getxattr_or_none(dpkg_root / conf.lstrip("/")) is None


def test_nothing_is_taken_back_while_the_database_cannot_be_read(tmp_path: Path,
                                                                 dpkg_root: Path) -> None:
    conf = "/etc/kept/tool"
    dpkg_install(dpkg_root, build_deb(tmp_path, "kept", "1", {conf: "/bin/true"},
                                      modes={conf: 0o755}, conffiles=[conf],
                                      file_capabilities=[f"{conf} cap_net_raw=ep"]))
    root = str(dpkg_root)
    assert run_capsnap("--root", root, "reapply").status == 0
    status = dpkg_root / "var/lib/dpkg/status"
    dpkg_remove(dpkg_root, "kept")
    status.rename(status.with_name("status.away"))  # nothing declared, or nothing known?
    run_capsnap("--root", root, "reapply")
    assert getcap(dpkg_root / conf.lstrip("/")) == "cap_net_raw=ep"
    status.with_name("status.away").rename(status)

    # Nor while an installed package's file list is missing.
    other = "/usr/lib/listless/helper"
    dpkg_install(dpkg_root, build_deb(tmp_path, "listless", "1", {other: "/bin/true"},
                                      file_capabilities=[f"{other} cap_net_raw=ep"]))
    assert run_capsnap("--root", root, "reapply", "--package", "listless").status == 0
    listed = dpkg_root / "var/lib/dpkg/info/listless.list"
    listed.rename(listed.with_name("listless.away"))
    check = run_capsnap("--root", root, "check")
    assert "package listless 1: File-Capabilities entry /usr/lib/listless/helper refused: " \
        "its file list cannot be read" in check.err
    run_capsnap("--root", root, "reapply")
    assert getcap(dpkg_root / other.lstrip("/")) == "cap_net_raw=ep"
    assert getcap(dpkg_root / conf.lstrip("/")) == "cap_net_raw=ep"

    listed.with_name("listless.away").rename(listed)
    assert run_capsnap("--root", root, "reapply").status == 0
    assert getxattr_or_none(dpkg_root / conf.lstrip("/")) is None
    assert getcap(dpkg_root / other.lstrip("/")) == "cap_net_raw=ep"


def test_dh_capsnap_warns_about_root_equivalent_capabilities(tmp_path: Path) -> None:
    if shutil.which("dh") is None or shutil.which("dpkg-buildpackage") is None:
        pytest.skip("debhelper or dpkg-dev missing")
    source = tmp_path / "hello-caps"
    shutil.copytree(REPO / "tests/fixtures/hello-caps", source)
    (source / "debian/hello-caps.capabilities").write_text(
        "# a comment\n/usr/lib/hello-caps/bind-helper cap_net_bind_service,cap_sys_admin=ep\n")
    built = build_with_tree_addon(source)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert ("capsnap: warning: debian/hello-caps.capabilities:2: "
            "/usr/lib/hello-caps/bind-helper: cap_sys_admin is root-equivalent") in built.stderr


def test_an_rpm_ghost_file_is_not_the_packages_to_give_capabilities(tmp_path: Path) -> None:
    """%caps is per file of the package's own header, but a %ghost entry may
    name another package's file: rpm never installs it, nor gives it %caps."""
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild missing")
    from tests.packaging import build_rpm, make_rpm_root, rpm_install

    top = tmp_path / "ghosty.rpmbuild"
    for sub in ("BUILD", "BUILDROOT", "RPMS", "SOURCES", "SPECS", "SRPMS"):
        (top / sub).mkdir(parents=True)
    spec = top / "SPECS/ghosty.spec"
    spec.write_text("\n".join([
        "%define _binaries_in_noarch_packages_terminate_build 0",
        "%define debug_package %{nil}", "%define _build_id_links none",
        "%define __os_install_post %{nil}",
        "Name: ghosty", "Version: 1", "Release: 1", "Summary: x", "License: MIT",
        "BuildArch: noarch", "AutoReqProv: no", "", "%description", "x", "",
        "%install", "mkdir -p %{buildroot}/usr/lib/ghosty",
        "cp /bin/true %{buildroot}/usr/lib/ghosty/helper", "",
        "%files", "%caps(cap_net_raw=ep) /usr/lib/ghosty/helper",
        "%ghost %caps(cap_dac_read_search=ep) /usr/bin/victim", ""]))
    subprocess.run(["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {top}", str(spec)],
                   check=True, capture_output=True)
    root = make_rpm_root(tmp_path / "rpmroot")
    rpm_install(root, build_rpm(tmp_path, "victim", "1", {"/usr/bin/victim": "/bin/true"}))
    rpm_install(root, top / "RPMS/noarch/ghosty-1-1.noarch.rpm")

    for _ in range(2):  # read from the database, then from the cache
        reapplied = run_capsnap("--root", str(root), "reapply")
        assert reapplied.status == 1
        assert "package ghosty 1-1: %caps(cap_dac_read_search=ep) for /usr/bin/victim " \
            "refused: a %ghost file, which the package does not ship" in reapplied.err
        assert getxattr_or_none(root / "usr/bin/victim") is None
        assert getcap(root / "usr/lib/ghosty/helper") == "cap_net_raw=ep"
