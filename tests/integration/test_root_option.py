"""--root DIR: every path resolves inside DIR; no symlink leads out of it."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import copy_binary, getxattr_or_none, needs_root, run_cli

pytestmark = needs_root


def make_root(top: Path) -> Path:
    """A merged-/usr scratch root with links that try to escape."""
    root = top / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "escape-abs").symlink_to("/usr/bin")
    (root / "escape-rel").symlink_to("../../../../../../usr/bin")
    copy_binary("/bin/true", root / "usr" / "bin" / "true")
    return root


def test_paths_resolve_inside_the_root(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    inner = root / "usr" / "bin" / "true"
    for spelled in ("/bin/true", "/escape-abs/true", "/escape-rel/true", "usr/bin/true",
                    "/usr/../../bin/true"):
        if getxattr_or_none(inner) is not None:
            os.removexattr(inner, "security.capability")
        result = run_cli("--root", str(root), "set", "cap_net_raw=ep", spelled)
        assert result.status == 0, (spelled, result.err)
        assert getxattr_or_none(inner) is not None, spelled
        got = run_cli("get", "--root", str(root), spelled)
        assert got.out == f"{spelled} cap_net_raw=ep\n"
    # The host's own /usr/bin/true was never the target.
    assert getxattr_or_none(os.path.realpath("/usr/bin/true")) is None


def test_last_component_symlink_is_refused_inside_root(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "usr" / "bin" / "alias").symlink_to("true")
    result = run_cli("--root", str(root), "set", "cap_net_raw=ep", "/usr/bin/alias")
    assert result.status == 3
    assert "symbolic link to true" in result.err
    assert getxattr_or_none(root / "usr" / "bin" / "true") is None


def test_recursive_get_walks_like_getcap(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "usr" / "lib" / "helper").mkdir(parents=True)
    helper = copy_binary("/bin/true", root / "usr" / "lib" / "helper" / "bind")
    assert run_cli("set", "cap_net_bind_service=ep", str(helper)).status == 0
    assert run_cli("set", "cap_net_raw=p", str(root / "usr" / "bin" / "true")).status == 0
    got = run_cli("--root", str(root), "get", "-r", "/usr/")
    assert sorted(got.out.splitlines()) == ["/usr/bin/true cap_net_raw=p",
                                            "/usr/lib/helper/bind cap_net_bind_service=ep"]
    # Without --root, and compared to getcap -r on the same tree.
    import subprocess
    expected = subprocess.run(["getcap", "-r", str(root / "usr")], capture_output=True,
                              text=True).stdout
    assert run_cli("get", "-r", str(root / "usr")).out == expected
