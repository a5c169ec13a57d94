"""What capsnap reads from dpkg's database as dpkg writes it: diversions by
the declaring package itself, debug-symbol packages, continuation lines.

Scratch roots whose status file, file lists and diversions are written as
dpkg writes them; `capsnap --root ROOT check --json` reads them.  Nothing
is applied: only what capsnap would enforce, and where, is looked at.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import getxattr_or_none, needs_root, run_cli
from tests.packaging import make_dpkg_root


def installed(name: str, field: list[str], version: str = "1.0", extra: str = "") -> str:
    lines = "".join(f" {line}\n" for line in field)
    return (f"Package: {name}\nStatus: install ok installed\nArchitecture: all\n"
            f"Version: {version}\n{extra}File-Capabilities:\n{lines}")


def make_root(top: Path, paragraphs: list[str], lists: dict[str, list[str]],
              diversions: list[str] = ()) -> Path:
    root = make_dpkg_root(top / "root")
    (root / "var/lib/dpkg/status").write_text("\n".join(paragraphs))
    for package, files in lists.items():
        (root / f"var/lib/dpkg/info/{package}.list").write_text("".join(f"{f}\n" for f in files))
        for f in files:
            target = root / f.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copyfile("/bin/true", target)
                target.chmod(0o755)
    if diversions:
        (root / "var/lib/dpkg/diversions").write_text("".join(f"{d}\n" for d in diversions))
    return root


def check(root: Path) -> tuple[dict[str, dict[str, object]], str]:
    """What `check` enforces, by path, and what it says on stderr."""
    result = run_cli("--root", str(root), "check", "--json")
    findings = json.loads(result.out)["findings"]
    return {f["path"]: f for f in findings}, result.err


def test_the_diverting_package_declares_for_its_own_file(tmp_path: Path) -> None:
    """foo diverts /usr/bin/tool and ships its own there: foo's declaration is
    for /usr/bin/tool; bar's file, moved aside, gets bar's at the new name."""
    root = make_root(
        tmp_path,
        [installed("foo", ["/usr/bin/tool cap_net_raw=ep"]),
         installed("bar", ["/usr/bin/tool cap_net_bind_service=ep"])],
        {"foo": ["/usr/bin/tool"], "bar": ["/usr/bin/tool", "/usr/bin/tool.distrib"]},
        ["/usr/bin/tool", "/usr/bin/tool.distrib", "foo"])
    found, err = check(root)
    assert set(found) == {"/usr/bin/tool", "/usr/bin/tool.distrib"}, (found, err)
    assert found["/usr/bin/tool"]["package"] == "foo"
    assert found["/usr/bin/tool"]["expected"] == "cap_net_raw=ep"
    assert found["/usr/bin/tool.distrib"]["package"] == "bar"
    assert found["/usr/bin/tool.distrib"]["expected"] == "cap_net_bind_service=ep"


def test_a_debug_symbols_package_declares_nothing(tmp_path: Path) -> None:
    """dh_gencontrol copies the field into foo-dbgsym, which ships none of
    foo's files: not a refused entry, not a declaration."""
    field = ["/usr/lib/foo/helper cap_net_raw=ep"]
    root = make_root(
        tmp_path,
        [installed("foo", field),
         installed("foo-dbgsym", field, extra="Auto-Built-Package: debug-symbols\n")],
        {"foo": ["/usr/lib/foo/helper"], "foo-dbgsym": ["/usr/lib/debug/.build-id/ab.debug"]})
    found, err = check(root)
    assert list(found) == ["/usr/lib/foo/helper"]
    assert found["/usr/lib/foo/helper"]["package"] == "foo"
    assert "refused" not in err and "dbgsym" not in err, err


def test_a_dot_line_of_the_field_is_an_empty_line(tmp_path: Path) -> None:
    """dpkg writes an empty line of a multi-line field as " ."."""
    root = make_root(
        tmp_path,
        [installed("foo", ["/usr/lib/foo/a cap_net_raw=ep", ".", "/usr/lib/foo/b cap_kill=ep"])],
        {"foo": ["/usr/lib/foo/a", "/usr/lib/foo/b"]})
    found, err = check(root)
    assert sorted(found) == ["/usr/lib/foo/a", "/usr/lib/foo/b"]
    assert err == "", err


def test_dpkgs_journal_is_read_over_the_status_file(tmp_path: Path) -> None:
    """While a maintainer script runs, dpkg's newest records are in updates/:
    there foo 1.1 declares another capability, and baz (being configured)
    declares its first."""
    root = make_root(
        tmp_path,
        [installed("foo", ["/usr/lib/foo/helper cap_net_raw=ep"])],
        {"foo": ["/usr/lib/foo/helper"], "baz": ["/usr/lib/baz/helper"]})
    (root / "var/lib/dpkg/updates/0001").write_text(
        installed("foo", ["/usr/lib/foo/helper cap_kill=ep"], version="1.1"))
    (root / "var/lib/dpkg/updates/0002").write_text(
        installed("baz", ["/usr/lib/baz/helper cap_net_admin=ep"]).replace(
            "install ok installed", "install ok half-configured"))
    found, err = check(root)
    assert sorted(found) == ["/usr/lib/baz/helper", "/usr/lib/foo/helper"], (found, err)
    assert found["/usr/lib/foo/helper"]["expected"] == "cap_kill=ep"
    assert found["/usr/lib/foo/helper"]["version"] == "1.1"


def test_a_package_of_two_architectures_is_named_with_each(tmp_path: Path) -> None:
    paragraphs = [installed("foo", [f"/usr/lib/{arch}/foo/helper cap_net_raw=ep"]).replace(
        "Architecture: all", f"Architecture: {arch}").replace(
        "Status:", "Multi-Arch: same\nStatus:") for arch in ("amd64", "i386")]
    root = make_root(tmp_path, paragraphs,
                     {f"foo:{arch}": [f"/usr/lib/{arch}/foo/helper"] for arch in ("amd64", "i386")})
    found, err = check(root)
    assert {p: f["package"] for p, f in found.items()} == {
        "/usr/lib/amd64/foo/helper": "foo:amd64", "/usr/lib/i386/foo/helper": "foo:i386"}, err


@needs_root
def test_a_package_whose_field_cannot_be_read_keeps_what_capsnap_applied(
        tmp_path: Path) -> None:
    """A byte that is not UTF-8 in foo's paragraph costs foo's declarations
    this run, and is said; what capsnap applied for foo is not taken back on
    the grounds that foo no longer declares it: that is unknown."""
    root = make_root(tmp_path, [installed("foo", ["/usr/lib/foo/helper cap_net_raw=ep"])],
                     {"foo": ["/usr/lib/foo/helper"]})
    helper = root / "usr/lib/foo/helper"
    assert run_cli("--root", str(root), "reapply").status == 0
    assert getxattr_or_none(helper)
    status = root / "var/lib/dpkg/status"
    status.write_bytes(status.read_bytes().replace(b"Version: 1.0", b"Version: 1.0\xff"))
    result = run_cli("--root", str(root), "reapply")
    assert "its File-Capabilities field is skipped" in result.err, result.err
    assert getxattr_or_none(helper), "taken back though foo's declaration was not read"


def test_the_field_name_is_read_in_any_case(tmp_path: Path) -> None:
    """dpkg keeps an unknown field's name as the package spelt it; field
    names are case-insensitive (deb822)."""
    root = make_root(
        tmp_path, [installed("foo", ["/usr/lib/foo/helper cap_net_raw=ep"]).replace(
            "File-Capabilities:", "file-CAPABILITIES:")],
        {"foo": ["/usr/lib/foo/helper"]})
    found, err = check(root)
    assert list(found) == ["/usr/lib/foo/helper"], err
