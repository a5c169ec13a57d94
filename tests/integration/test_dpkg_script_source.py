"""The dpkg-script source in a scratch root: a script's setcap counts once
seen on disk, is withdrawn when the package's configure leaves a new file
without it, yields to a package's declaration and to a local one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from capsnap import captext, declarations, reapply, xattr
from capsnap.declarations import dpkg_script
from capsnap.paths import SystemPaths
from tests.conftest import needs_root

pytestmark = needs_root
KNOWN = 41
TOOL = "/usr/bin/tool"
RAW = xattr.encode(captext.parse_file_caps("cap_net_raw=ep", KNOWN))


def postinst(path: str = TOOL) -> str:
    return f"""#!/bin/sh
set -e
P=$(dpkg-divert --truename {path})
if [ "$1" = configure ]; then
    db_get pkg/use-caps
    if [ "$RET" = true ] && ! setcap cap_net_raw+ep "$P"; then chmod u+s "$P"; fi
fi
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "root"
    info = top / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (top / "var/lib/capsnap").mkdir(parents=True)
    (top / "usr/bin").mkdir(parents=True)
    (info / "pkg.list").write_text(f"/.\n/usr\n/usr/bin\n{TOOL}\n")
    (info / "pkg.postinst").write_text(postinst())
    status("installed", top)
    new_file(top)
    return top


def status(state: str, top: Path, version: str = "1.0", extra: str = "") -> None:
    (top / "var/lib/dpkg/status").write_text(
        f"Package: pkg\nStatus: install ok {state}\nArchitecture: amd64\n"
        f"Version: {version}\n{extra}\n")


def new_file(top: Path, caps: bool = False) -> None:
    """dpkg's way: a new inode renamed over the old one."""
    path = top / TOOL.lstrip("/")
    fresh = path.with_name(".tool.dpkg-new")
    shutil.copy("/bin/true", fresh)
    if caps:
        os.setxattr(fresh, "security.capability", RAW)
    os.replace(fresh, path)


def script_decls(top: Path) -> list[declarations.Declaration]:
    decls, problems, _ = dpkg_script.read(SystemPaths.select(root=str(top)), KNOWN)
    assert not problems
    return decls


def enforced(top: Path) -> list[str]:
    paths = SystemPaths.select(root=str(top))
    catalogue = declarations.load(paths, KNOWN)
    return [f"{r.winner.source} {r.path}" for r in catalogue.resolve() if r.winner]


def test_not_seen_on_disk_is_listed_but_not_enforced(root: Path) -> None:
    (decl,) = script_decls(root)
    assert (decl.path, decl.text, decl.package, decl.version, decl.confirmed) == \
        (TOOL, "cap_net_raw+ep", "pkg", "1.0", False)
    assert decl.origin == "postinst of pkg:6"
    assert enforced(root) == []


def test_seen_while_configured_is_enforced_and_drift_restored(root: Path) -> None:
    new_file(root, caps=True)
    assert enforced(root) == [f"dpkg-script {TOOL}"]
    # dpkg --unpack: a new file without it, the package not configured yet.
    status("unpacked", root)
    new_file(root)
    assert enforced(root) == [f"dpkg-script {TOOL}"]
    paths = SystemPaths.select(root=str(root))
    items = declarations.load(paths, KNOWN).resolve()
    (finding,) = reapply.check(items, paths, KNOWN)
    assert finding.status == reapply.DRIFTED
    assert finding.detail == "no capabilities (set by pkg's postinst)"
    # The same inode losing it (setcap -r by someone) is drift too.
    status("installed", root)
    new_file(root, caps=True)
    assert enforced(root) == [f"dpkg-script {TOOL}"]
    os.removexattr(root / TOOL.lstrip("/"), "security.capability")
    assert enforced(root) == [f"dpkg-script {TOOL}"]


def test_a_configure_that_leaves_a_new_file_without_it_withdraws_it(root: Path) -> None:
    new_file(root, caps=True)
    assert enforced(root) == [f"dpkg-script {TOOL}"]
    new_file(root)  # reinstalled and configured, its debconf answer now "no"
    assert enforced(root) == []
    new_file(root, caps=True)
    assert enforced(root) == [f"dpkg-script {TOOL}"]


def test_a_new_script_that_no_longer_sets_it_stops_it(root: Path) -> None:
    new_file(root, caps=True)
    assert enforced(root) == [f"dpkg-script {TOOL}"]
    (root / "var/lib/dpkg/info/pkg.postinst").write_text("#!/bin/sh\n# setcap gone\n")
    assert script_decls(root) == [] and enforced(root) == []


def test_files_the_package_does_not_ship_are_never_credited(root: Path) -> None:
    (root / "var/lib/dpkg/info/pkg.postinst").write_text(
        postinst("/usr/bin/python3") + 'setcap cap_sys_admin+ep "$(mktemp)"\n')
    assert script_decls(root) == []


def test_a_package_declaration_and_a_local_one_win(root: Path) -> None:
    new_file(root, caps=True)
    status("installed", root,
           extra=f"File-Capabilities:\n {TOOL} cap_net_bind_service=ep\n")
    (item,) = declarations.load(SystemPaths.select(root=str(root)), KNOWN).resolve()
    assert item.winner is not None and item.winner.source == "dpkg"
    assert [d.source for d in item.overridden] == ["dpkg-script"]
    local = root / "etc/capsnap/capabilities.d"
    local.mkdir(parents=True)
    (local / "local.capabilities").write_text(f"{TOOL} none\n")
    (item,) = declarations.load(SystemPaths.select(root=str(root)), KNOWN).resolve()
    assert item.winner is not None and item.winner.source == "local"
    assert item.winner.caps.is_empty()
    paths = SystemPaths.select(root=str(root))
    findings, _ = reapply.reapply([item], paths, KNOWN)
    assert findings[0].status == reapply.RESTORED
    assert not os.listxattr(root / TOOL.lstrip("/"))
    assert reapply.check([item], paths, KNOWN)[0].status == reapply.OK
