"""tests/packaging.py against the real dpkg and rpm: what the builders make, installs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import needs_root
from tests.packaging import (
    build_deb,
    build_rpm,
    dpkg_install,
    dpkg_remove,
    make_dpkg_root,
    make_rpm_root,
    rpm,
    rpm_dbpath,
    rpm_install,
)

pytestmark = needs_root

HELPER = "/usr/lib/capsnap-demo/helper"
CAPS = "cap_net_raw=ep"


def _have(*tools: str) -> pytest.MarkDecorator:
    missing = [tool for tool in tools if shutil.which(tool, path=os.environ.get("PATH", "")
                                                      + ":/usr/sbin:/sbin") is None]
    return pytest.mark.skipif(bool(missing), reason=f"missing tools: {', '.join(missing)}")


def _getcap(path: Path) -> str:
    getcap = shutil.which("getcap") or "/usr/sbin/getcap"
    proc = subprocess.run([getcap, str(path)], capture_output=True, text=True, check=True)
    return proc.stdout


@_have("dpkg", "dpkg-deb", "dpkg-query")
def test_deb_with_file_capabilities_installs_into_scratch_root(tmp_path: Path) -> None:
    root = make_dpkg_root(tmp_path / "root")
    deb = build_deb(tmp_path, "capsnap-demo", "1.0", {HELPER: "/bin/true"},
                    file_capabilities=[f"{HELPER} {CAPS}"])
    assert deb == tmp_path / "capsnap-demo_1.0_all.deb"
    dpkg_install(root, deb)

    status = (root / "var" / "lib" / "dpkg" / "status").read_text(encoding="utf-8")
    # dpkg writes the empty first line of the field as "File-Capabilities: ".
    assert f"File-Capabilities: \n {HELPER} {CAPS}\n" in status, status
    assert "Status: install ok installed" in status

    query = subprocess.run(
        ["dpkg-query", f"--admindir={root / 'var' / 'lib' / 'dpkg'}", "-W",
         "-f", "${File-Capabilities}", "capsnap-demo"],
        capture_output=True, text=True, check=True)
    assert query.stdout == f"\n {HELPER} {CAPS}"

    installed = root / HELPER.lstrip("/")
    st = installed.stat()
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert (st.st_uid, st.st_gid) == (0, 0)

    # Reinstalling replaces the file (unpacked as .dpkg-new, renamed over it).
    # The open descriptor keeps the old inode alive, so its number cannot be reused.
    with installed.open("rb") as old:
        old_inode = os.fstat(old.fileno()).st_ino
        dpkg_install(root, deb)
        assert installed.stat().st_ino != old_inode

    dpkg_remove(root, "capsnap-demo", purge=True)
    assert not installed.exists()
    assert "Package: capsnap-demo" not in (root / "var/lib/dpkg/status").read_text("utf-8")


@_have("dpkg", "dpkg-deb")
def test_deb_contents_modes_extra_control_and_postinst(tmp_path: Path) -> None:
    root = make_dpkg_root(tmp_path / "root")
    deb = build_deb(tmp_path, "capsnap-extra", "1:2.0-1",
                    {"/usr/bin/tool": Path("/bin/true"), "/etc/capsnap-extra.conf": b"a=1\n",
                     "/usr/lib/capsnap-extra/private": "/bin/true"},
                    extra_control="Section: admin\nPriority: optional",
                    postinst='#!/bin/sh\nset -e\necho "$DPKG_ROOT" > "$DPKG_ROOT/postinst-ran"\n',
                    modes={"/usr/lib/capsnap-extra/private": 0o750})
    assert deb.name == "capsnap-extra_2.0-1_all.deb"
    dpkg_install(root, deb)
    assert (root / "postinst-ran").read_text().strip() == str(root)
    modes = {path: stat.S_IMODE((root / path).stat().st_mode)
             for path in ("usr/bin/tool", "etc/capsnap-extra.conf",
                          "usr/lib/capsnap-extra/private")}
    assert modes == {"usr/bin/tool": 0o755, "etc/capsnap-extra.conf": 0o644,
                     "usr/lib/capsnap-extra/private": 0o750}
    assert (root / "etc/capsnap-extra.conf").read_bytes() == b"a=1\n"
    status = (root / "var/lib/dpkg/status").read_text("utf-8")
    assert "Section: admin\n" in status and "Version: 1:2.0-1\n" in status
    assert "File-Capabilities" not in status


@_have("rpm", "rpmbuild", "getcap")
def test_rpm_with_caps_installs_into_scratch_root(tmp_path: Path) -> None:
    rpm_mod = pytest.importorskip("rpm")
    root = make_rpm_root(tmp_path / "root")
    assert (root / rpm_dbpath().lstrip("/") / "rpmdb.sqlite").is_file()
    rpmfile = build_rpm(tmp_path, "capsnap-demo", "1.0",
                        {HELPER: "/bin/true", "/usr/share/capsnap-demo/README": b"hi\n"},
                        caps={HELPER: CAPS})
    assert rpmfile == tmp_path / "capsnap-demo-1.0-1.noarch.rpm"
    rpm_install(root, rpmfile)

    installed = root / HELPER.lstrip("/")
    assert _getcap(installed) == f"{installed} {CAPS}\n"
    st = installed.stat()
    assert stat.S_IMODE(st.st_mode) == 0o755 and (st.st_uid, st.st_gid) == (0, 0)
    assert _getcap(root / "usr/share/capsnap-demo/README") == ""

    listed = rpm(root, "-q", "--filecaps", "capsnap-demo").stdout
    assert f"{HELPER}\t{CAPS}\n" in listed, listed

    ts = rpm_mod.TransactionSet(str(root))
    headers = list(ts.dbMatch("name", "capsnap-demo"))
    assert len(headers) == 1
    hdr = headers[0]
    caps_by_file = dict(zip(hdr[rpm_mod.RPMTAG_FILENAMES], hdr[rpm_mod.RPMTAG_FILECAPS],
                            strict=True))
    assert caps_by_file[HELPER] == CAPS
    assert CAPS in hdr[rpm_mod.RPMTAG_FILECAPS]
    ts.closeDB()

    # Dropping the capability shows as a P in rpm -V; --reinstall puts it back.
    subprocess.run([shutil.which("setcap") or "/usr/sbin/setcap", "-r", str(installed)],
                   check=True)
    verify = rpm(root, "-V", "capsnap-demo", check=False)
    assert verify.returncode == 1 and f"........P    {HELPER}" in verify.stdout, verify
    rpm_install(root, rpmfile, reinstall=True)
    assert _getcap(installed) == f"{installed} {CAPS}\n"
    assert rpm(root, "-V", "capsnap-demo").stdout == ""
