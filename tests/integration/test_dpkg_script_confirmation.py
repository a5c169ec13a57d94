"""When a script's setcap is confirmed, and for which file: only the very
capability the postinst sets, seen as a system capability, on the file the
package really has there (diversions, merged /usr), while the package is on
disk.  Scratch roots written as dpkg writes its info directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from capsnap import captext, declarations, xattr
from capsnap.declarations import dpkg_script
from capsnap.paths import SystemPaths
from tests.conftest import needs_root

pytestmark = needs_root
KNOWN = 41
TOOL = "/usr/bin/tool"


def raw(text: str, rootid: int = 0) -> bytes:
    return xattr.encode(captext.parse_file_caps(text, KNOWN), rootid)


def make_root(top: Path, script_path: str = TOOL, caps: str = "cap_net_raw+ep",
              stem: str = "pkg", listed: str = TOOL) -> Path:
    info = top / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (top / "var/lib/capsnap").mkdir(parents=True)
    (info / f"{stem}.list").write_text(f"/.\n/usr\n/usr/bin\n{listed}\n")
    (info / f"{stem}.postinst").write_text(
        f'#!/bin/sh\nset -e\nif [ "$1" = configure ]; then setcap {caps} {script_path}; fi\n')
    return top


def status(top: Path, state: str = "installed", version: str = "1.0",
           architecture: str = "amd64", extra: str = "") -> None:
    (top / "var/lib/dpkg/status").write_text(
        f"Package: pkg\nStatus: install ok {state}\nArchitecture: {architecture}\n"
        f"Version: {version}\n{extra}\n")


def put(top: Path, path: str, value: bytes | None) -> None:
    """A new file at `path`, with that security.capability (None: none)."""
    target = top / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.with_name(f".{target.name}.new")
    shutil.copy("/bin/true", fresh)
    if value is not None:
        os.setxattr(fresh, "security.capability", value)
    os.replace(fresh, target)


def enforced(top: Path) -> list[tuple[str, str, str | None]]:
    catalogue = declarations.load(SystemPaths.select(root=str(top)), KNOWN)
    return [(r.path, r.winner.text, r.winner.package) for r in catalogue.resolve()
            if r.winner]


def script_decls(top: Path) -> list[declarations.Declaration]:
    decls, problems, _ = dpkg_script.read(SystemPaths.select(root=str(top)), KNOWN)
    assert not problems
    return decls


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = make_root(tmp_path / "root")
    status(top)
    return top


def test_a_confirmation_holds_for_the_capability_seen_only(root: Path) -> None:
    put(root, TOOL, raw("cap_net_raw=ep"))
    assert enforced(root) == [(TOOL, "cap_net_raw+ep", "pkg")]
    # Version 2's postinst sets another capability; the file still has the
    # old one: nothing says version 2's setcap ran.
    (root / "var/lib/dpkg/info/pkg.postinst").write_text(
        '#!/bin/sh\nsetcap cap_net_admin+ep /usr/bin/tool\n')
    status(root, version="2.0")
    assert enforced(root) == []


def test_a_namespaced_capability_confirms_nothing(root: Path) -> None:
    put(root, TOOL, raw("cap_net_raw=ep", rootid=1000))
    assert enforced(root) == []
    assert [d.confirmed for d in script_decls(root)] == [False]


def test_a_removed_package_declares_nothing(root: Path) -> None:
    put(root, TOOL, raw("cap_net_raw=ep"))
    assert enforced(root) == [(TOOL, "cap_net_raw+ep", "pkg")]
    status(root, state="config-files")  # removed, its postinst kept until purge
    assert script_decls(root) == [] and enforced(root) == []


def test_a_diverted_path_is_credited_at_the_packages_file(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    status(root)
    (root / "var/lib/dpkg/diversions").write_text(f"{TOOL}\n{TOOL}.distrib\nother\n")
    put(root, TOOL + ".distrib", raw("cap_net_raw=ep"))
    put(root, TOOL, None)  # other's file
    assert enforced(root) == [(TOOL + ".distrib", "cap_net_raw+ep", "pkg")]


def test_a_merged_usr_spelling_in_the_script_is_the_listed_file(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", script_path="/bin/tool")
    status(root)
    put(root, TOOL, raw("cap_net_raw=ep"))
    assert enforced(root) == [(TOOL, "cap_net_raw+ep", "pkg")]


def test_a_package_of_one_architecture_is_named_without_it(tmp_path: Path) -> None:
    """Multi-Arch: same packages' info files are pkg:ARCH.*."""
    root = make_root(tmp_path / "root", stem="pkg:amd64")
    status(root, extra="Multi-Arch: same\n")
    put(root, TOOL, raw("cap_net_raw=ep"))
    assert enforced(root) == [(TOOL, "cap_net_raw+ep", "pkg")]


def test_a_package_installed_since_the_last_read_is_read(root: Path) -> None:
    """The scan is cached against the info directory: a new package's
    postinst is read once dpkg has put it there."""
    put(root, TOOL, raw("cap_net_raw=ep"))
    assert [d.package for d in script_decls(root)] == ["pkg"]
    info = root / "var/lib/dpkg/info"
    (info / "new.list").write_text("/.\n/usr\n/usr/bin\n/usr/bin/new\n")
    (info / "new.postinst").write_text("#!/bin/sh\nsetcap cap_net_admin+ep /usr/bin/new\n")
    (root / "var/lib/dpkg/status").write_text(
        (root / "var/lib/dpkg/status").read_text()
        + "\nPackage: new\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n")
    assert sorted(d.package for d in script_decls(root)) == ["new", "pkg"]
