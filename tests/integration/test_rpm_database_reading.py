"""What capsnap reads from rpm's database: %caps of the files rpm put on
disk, read again when the database changes, and never taken for the
administrator's own declarations.

Real rpm (rpmbuild, rpm --root) in scratch roots; the packages are built
once for the module.  Every capability lands on copies of /bin/true inside
the scratch roots.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import getxattr_or_none, needs_root, run_capsnap
from tests.packaging import build_rpm, make_rpm_root, rpm, rpm_dbpath, rpm_install

pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild missing")]

HELPER = "/usr/lib/pinger/ping"
EXTRA = "/usr/lib/pinger/extra"


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("rpms")
    return {
        "1": build_rpm(out, "pinger", "1", {HELPER: "/bin/true", EXTRA: "/bin/true"},
                       caps={HELPER: "cap_net_raw=ep", EXTRA: "cap_net_raw=ep"}),
        "2": build_rpm(out, "pinger", "2", {HELPER: "/bin/true", EXTRA: "/bin/true"},
                       caps={HELPER: "cap_net_admin=ep", EXTRA: "cap_net_raw=ep"}),
        "admin": build_rpm(out, "netadmin", "1", {"/usr/lib/netadmin/tool": "/bin/true",
                                                  "/usr/lib/netadmin/plain": "/bin/true"},
                           caps={"/usr/lib/netadmin/tool": "cap_sys_admin=ep"}),
        "spaced": build_rpm(out, "spaced", "1", {"/usr/lib/sp ace/#tool": "/bin/true"},
                            caps={"/usr/lib/sp ace/#tool": "cap_net_raw=ep"}),
    }


def capsnap(root: Path, *args: str) -> tuple[int, dict[str, dict[str, object]], str]:
    result = run_capsnap("--root", str(root), *args, "--json")
    return result.status, {f["path"]: f for f in json.loads(result.out)["findings"]}, result.err


def test_a_file_rpm_did_not_install_is_not_declared(tmp_path: Path,
                                                    packages: dict[str, Path]) -> None:
    """--excludepath (or --excludedocs, a netshared path): rpm lists the file,
    never puts it on disk, and never gives it its %caps."""
    root = make_rpm_root(tmp_path / "root")
    rpm(root, "-i", "--nodeps", "--excludepath", EXTRA, str(packages["1"]))
    assert not (root / EXTRA.lstrip("/")).exists()
    status, found, err = capsnap(root, "check")
    assert list(found) == [HELPER], (found, err)
    assert status == 0, err


def test_the_database_is_read_again_when_rpm_changes_it(tmp_path: Path,
                                                        packages: dict[str, Path]) -> None:
    root = make_rpm_root(tmp_path / "root")
    rpm_install(root, packages["1"])
    assert capsnap(root, "check")[1][HELPER]["expected"] == "cap_net_raw=ep"
    rpm(root, "-U", "--nodeps", str(packages["2"]))  # the cache of version 1 must not count
    status, found, err = capsnap(root, "reapply")
    assert found[HELPER]["expected"] == "cap_net_admin=ep", err
    assert found[HELPER]["version"] == "2-1"
    assert status == 0, err
    assert getxattr_or_none(root / HELPER.lstrip("/"))


def test_an_rpms_root_equivalent_capability_is_the_packages(tmp_path: Path,
                                                           packages: dict[str, Path]) -> None:
    """A package asking for cap_sys_admin is warned about, as a package's
    declaration is (a local one is the administrator's choice)."""
    root = make_rpm_root(tmp_path / "root")
    rpm_install(root, packages["admin"])
    _, found, err = capsnap(root, "check")
    assert list(found) == ["/usr/lib/netadmin/tool"], err  # the plain file declares nothing
    assert "bad %caps" not in err, err
    tool = found["/usr/lib/netadmin/tool"]
    assert tool["source"] == "rpm" and tool["package"] == "netadmin"
    assert any("root-equivalent" in w for w in tool["warnings"]), tool


def applied(tmp_path: Path, package: Path) -> Path:
    """A root where capsnap applied pinger's %caps (rpm's was lost)."""
    root = make_rpm_root(tmp_path / "root")
    rpm_install(root, package)
    for path in (HELPER, EXTRA):
        os.removexattr(root / path.lstrip("/"), "security.capability")
    assert run_capsnap("--root", str(root), "reapply").status == 0
    assert getxattr_or_none(root / HELPER.lstrip("/"))
    return root


def test_a_database_gone_takes_nothing_back(tmp_path: Path, packages: dict[str, Path]) -> None:
    """Without the database what rpm packages declare is unknown, not
    withdrawn: what capsnap applied for them stays."""
    root = applied(tmp_path, packages["1"])
    shutil.rmtree(root / rpm_dbpath().lstrip("/"))
    result = run_capsnap("--root", str(root), "--verbose", "reapply")
    assert "rpm: no database at" in result.err, result.err
    assert getxattr_or_none(root / HELPER.lstrip("/")), "taken back without a database"


def test_a_database_that_cannot_be_read_takes_nothing_back(
        tmp_path: Path, packages: dict[str, Path]) -> None:
    root = applied(tmp_path, packages["1"])
    for f in (root / rpm_dbpath().lstrip("/")).glob("rpmdb.sqlite*"):
        f.write_bytes(b"this is not a database\n" * 512)
    for _ in range(2):  # and what could not be read is not cached as nothing
        result = run_capsnap("--root", str(root), "reapply")
        assert "cannot read the rpm database" in result.err, result.err
        assert getxattr_or_none(root / HELPER.lstrip("/")), "taken back: database unreadable"


def test_a_database_in_var_lib_rpm_is_the_one_read(tmp_path: Path,
                                                   packages: dict[str, Path]) -> None:
    """An image made on Fedora or SUSE keeps it in /var/lib/rpm (or
    /usr/lib/sysimage/rpm), not where this machine's rpm would look."""
    root = tmp_path / "root"
    root.mkdir()
    rpm(root, "--dbpath", "/var/lib/rpm", "--initdb")
    rpm(root, "--dbpath", "/var/lib/rpm", "-i", "--nodeps", str(packages["admin"]))
    assert not (root / rpm_dbpath().lstrip("/")).exists()
    _, found, err = capsnap(root, "check")
    assert list(found) == ["/usr/lib/netadmin/tool"], err


def test_an_rpms_version_carries_its_epoch(tmp_path: Path) -> None:
    """rpm's version of a package with an Epoch is E:V-R, as rpm -q --qf
    '%{EPOCH}:%{VERSION}-%{RELEASE}' says: the declaration's and the record's."""
    top = tmp_path / "epoch.rpmbuild"
    for sub in ("BUILD", "BUILDROOT", "RPMS", "SOURCES", "SPECS", "SRPMS"):
        (top / sub).mkdir(parents=True)
    spec = top / "SPECS/epoch.spec"
    spec.write_text("\n".join([
        "%define _binaries_in_noarch_packages_terminate_build 0",
        "%define debug_package %{nil}", "%define _build_id_links none",
        "%define __os_install_post %{nil}",
        "Name: epoch", "Epoch: 3", "Version: 1.2", "Release: 4", "Summary: x",
        "License: MIT", "BuildArch: noarch", "AutoReqProv: no", "", "%description", "x", "",
        "%install", "mkdir -p %{buildroot}/usr/lib/epoch",
        "cp /bin/true %{buildroot}/usr/lib/epoch/helper", "",
        "%files", "%caps(cap_net_raw=ep) /usr/lib/epoch/helper", ""]))
    subprocess.run(["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {top}", str(spec)],
                   check=True, capture_output=True)
    root = make_rpm_root(tmp_path / "root")
    rpm_install(root, top / "RPMS/noarch/epoch-1.2-4.noarch.rpm")
    _, found, err = capsnap(root, "check")
    assert found["/usr/lib/epoch/helper"]["version"] == "3:1.2-4", err


def test_a_path_with_a_space_or_a_hash_is_declared_whole(tmp_path: Path,
                                                         packages: dict[str, Path]) -> None:
    root = make_rpm_root(tmp_path / "root")
    rpm_install(root, packages["spaced"])
    status, found, err = capsnap(root, "check")
    assert list(found) == ["/usr/lib/sp ace/#tool"], err
    assert status == 0, err


def test_a_local_declaration_of_an_installed_rpms_missing_file_is_missing(
        tmp_path: Path, packages: dict[str, Path]) -> None:
    """Dormant is for a declaration whose package is gone; netadmin is installed."""
    root = make_rpm_root(tmp_path / "root")
    rpm_install(root, packages["admin"])
    local = root / "etc/capsnap/capabilities.d"
    local.mkdir(parents=True)
    (local / "x.capabilities").write_text("/usr/lib/netadmin/gone cap_net_raw=ep owner=netadmin\n")
    _, found, err = capsnap(root, "check")
    assert found["/usr/lib/netadmin/gone"]["status"] == "missing", err
