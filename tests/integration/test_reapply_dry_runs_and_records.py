"""reapply's promises beyond a single repair: --dry-run changes nothing (no
capability removed, no mode taken back), capsnap takes back only what it
applied for a package and only once nothing declares it under any
spelling, and a missing file of an installed package is missing, not
dormant.

Scratch dpkg roots written by hand; capsnap runs in this process with
--root; every capability lands on copies of /bin/true inside the root.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

from tests.conftest import getxattr_or_none, needs_root, run_cli
from tests.packaging import make_dpkg_root

pytestmark = needs_root

LOCAL = "etc/capsnap/capabilities.d/local.capabilities"


def make_root(top: Path, status: str = "", lists: dict[str, list[str]] | None = None) -> Path:
    root = make_dpkg_root(top / "root")
    (root / "var/lib/dpkg/status").write_text(status)
    for package, files in (lists or {}).items():
        (root / f"var/lib/dpkg/info/{package}.list").write_text(
            "".join(f"{f}\n" for f in files))
    (root / "etc/capsnap/capabilities.d").mkdir(parents=True)
    (root / "var/lib/capsnap").mkdir(parents=True)
    return root


def tool(root: Path, path: str) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile("/bin/true", target)
    target.chmod(0o755)
    return target


def installed(name: str, field: list[str], version: str = "1") -> str:
    lines = "".join(f" {line}\n" for line in field)
    return (f"Package: {name}\nStatus: install ok installed\nArchitecture: all\n"
            f"Version: {version}\n" + (f"File-Capabilities:\n{lines}" if field else ""))


def findings(root: Path, *args: str) -> dict[str, dict[str, object]]:
    result = run_cli("--root", str(root), *args, "--json")
    return {f["path"]: f for f in json.loads(result.out)["findings"]}


def test_a_dry_run_neither_strips_nor_takes_back_a_mode(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    stripped = tool(root, "/usr/lib/x/declared-none")
    assert run_cli("set", "cap_net_raw=ep", str(stripped)).status == 0
    # What an old postinst left: the setuid fallback and the capability both.
    both = tool(root, "/usr/lib/x/both")
    assert run_cli("set", "cap_net_raw=ep", str(both)).status == 0
    both.chmod(0o4755)
    (root / LOCAL).write_text("/usr/lib/x/declared-none none\n"
                              "/usr/lib/x/both cap_net_raw=ep fallback=setuid:4755\n")
    found = findings(root, "reapply", "--dry-run")
    assert found["/usr/lib/x/declared-none"]["status"] == "would-restore"
    assert getxattr_or_none(stripped), "a dry run removed the capability"
    assert stat.S_IMODE(both.stat().st_mode) == 0o4755, "a dry run took back the mode"
    # The real run does both.
    run_cli("--root", str(root), "reapply")
    assert getxattr_or_none(stripped) is None
    assert stat.S_IMODE(both.stat().st_mode) == 0o755 and getxattr_or_none(both)


def test_a_missing_file_of_an_installed_package_is_missing(tmp_path: Path) -> None:
    """Dormant is for a declaration whose package is gone; foo is installed."""
    root = make_root(tmp_path, installed("foo", []), {"foo": ["/usr/lib/foo/other"]})
    (root / LOCAL).write_text("/usr/lib/foo/gone cap_net_raw=ep owner=foo\n"
                              "/usr/lib/bar/gone cap_net_raw=ep owner=bar\n")
    found = findings(root, "check")
    assert found["/usr/lib/foo/gone"]["status"] == "missing"
    assert found["/usr/lib/bar/gone"]["status"] == "dormant"


def test_a_local_declarations_capability_is_never_taken_back_for_its_package(
        tmp_path: Path) -> None:
    """The administrator declared it (for foo's file): when they withdraw the
    declaration, the capability is theirs to remove, not capsnap's."""
    root = make_root(tmp_path, installed("foo", []), {"foo": ["/usr/lib/foo/helper"]})
    helper = tool(root, "/usr/lib/foo/helper")
    (root / LOCAL).write_text("/usr/lib/foo/helper cap_net_raw=ep owner=foo\n")
    assert run_cli("--root", str(root), "reapply").status == 0
    assert getxattr_or_none(helper)
    (root / LOCAL).write_text("")
    run_cli("--root", str(root), "reapply")
    assert getxattr_or_none(helper), "taken back as if capsnap had applied it for foo"


def test_a_capability_recorded_under_another_spelling_is_kept(tmp_path: Path) -> None:
    """capsnap applied foo's /bin/tool when /bin was a directory; the system
    then went merged-/usr (/bin -> usr/bin): the record's /bin/tool and the
    declared file are one, still declared, never taken back."""
    root = make_root(tmp_path, installed("foo", ["/bin/tool cap_net_raw=ep"]),
                     {"foo": ["/bin/tool"]})
    (root / "bin").mkdir()
    tool(root, "/bin/tool")
    assert run_cli("--root", str(root), "reapply").status == 0
    assert json.loads((root / "var/lib/capsnap/packages/foo").read_text()).keys() == \
        {"/bin/tool"}
    os.replace(root / "bin/tool", root / "usr/bin/tool")  # usrmerge
    (root / "bin").rmdir()
    (root / "bin").symlink_to("usr/bin")
    run_cli("--root", str(root), "reapply")
    assert getxattr_or_none(root / "usr/bin/tool"), "taken back though foo declares it"


def test_a_declaration_of_the_inheritable_set_only_is_applied(tmp_path: Path) -> None:
    """cap_net_raw=i is a capability (for a program run with it in its
    ambient or inheritable set), not "none"."""
    root = make_root(tmp_path)
    target = tool(root, "/usr/lib/x/inherits")
    (root / LOCAL).write_text("/usr/lib/x/inherits cap_net_raw=i\n")
    assert findings(root, "check")["/usr/lib/x/inherits"]["status"] == "drifted"
    run_cli("--root", str(root), "reapply")
    assert getxattr_or_none(target) == bytes.fromhex("0000000200000000002000000000000000000000")


def test_nothing_is_taken_back_while_a_local_declaration_cannot_be_read(
        tmp_path: Path) -> None:
    """foo 2 no longer declares what capsnap applied for foo 1, but a local
    file that cannot be read may declare it: it stays."""
    root = make_root(tmp_path, installed("foo", ["/usr/lib/foo/helper cap_net_raw=ep"]),
                     {"foo": ["/usr/lib/foo/helper"]})
    helper = tool(root, "/usr/lib/foo/helper")
    assert run_cli("--root", str(root), "reapply").status == 0
    (root / "var/lib/dpkg/status").write_text(installed("foo", [], version="2"))
    (root / LOCAL).write_bytes(b"/usr/lib/foo/helper cap_net_raw=ep # caf\xe9\n")
    result = run_cli("--root", str(root), "reapply")
    assert "not UTF-8" in result.err, result.err
    assert getxattr_or_none(helper), "taken back though a local file was not read"
    (root / LOCAL).write_text("")
    run_cli("--root", str(root), "reapply")
    assert getxattr_or_none(helper) is None  # read whole: nothing declares it
