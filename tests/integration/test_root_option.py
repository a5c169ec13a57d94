"""--root DIR: every path resolves inside DIR; no symlink leads out of it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SRC, SYSTEM_PYTHON, copy_binary, getxattr_or_none, needs_root, run_cli

pytestmark = needs_root


def make_root(top: Path) -> Path:
    """A merged-/usr scratch root with links that try to escape.

    Every place an escape could lead to is a canary in `top`, never a host
    file, even when confinement is broken: the root sits one level below
    `top` (a ".." above the root lands in `top`), and the absolute links
    name `top/host`, not the host's /usr/bin.
    """
    root = top / "root"
    host = top / "host"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "lib").mkdir()
    (root / "bin").symlink_to("usr/bin")
    (root / "escape-abs").symlink_to(host)
    (root / "usr" / "lib" / "deeper-abs").symlink_to(host)
    (root / "escape-rel").symlink_to("../usr/bin")
    copy_binary("/bin/true", root / "usr" / "bin" / "true")
    (root / str(host).lstrip("/")).mkdir(parents=True)
    copy_binary("/bin/true", root / str(host).lstrip("/") / "true")
    for canary in (host / "true", top / "usr" / "bin" / "true", top / "bin" / "true"):
        canary.parent.mkdir(parents=True, exist_ok=True)
        copy_binary("/bin/true", canary)
    return root


def canaries(top: Path) -> dict[str, bytes | None]:
    """What the files outside the root hold: they must never change."""
    return {str(p): getxattr_or_none(p) for p in
            (top / "host" / "true", top / "usr" / "bin" / "true", top / "bin" / "true",
             Path(os.path.realpath("/usr/bin/true")))}


def test_paths_resolve_inside_the_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_root(tmp_path)
    # A relative path resolved from the working directory would meet a canary.
    monkeypatch.chdir(tmp_path)
    before = canaries(tmp_path)
    assert all(raw is None for raw in before.values()), before
    usr_true = root / "usr" / "bin" / "true"
    # Absolute links restart at the root, wherever they are met.
    host_true = root / str(tmp_path / "host").lstrip("/") / "true"
    for spelled, inner in (("/bin/true", usr_true), ("/escape-abs/true", host_true),
                           ("/usr/lib/deeper-abs/true", host_true),
                           ("/escape-rel/true", usr_true), ("usr/bin/true", usr_true),
                           ("/usr/../../bin/true", usr_true)):
        for path in (usr_true, host_true):
            if getxattr_or_none(path) is not None:
                os.removexattr(path, "security.capability")
        result = run_cli("--root", str(root), "set", "cap_net_raw=ep", spelled)
        assert result.status == 0, (spelled, result.err)
        assert getxattr_or_none(inner) is not None, spelled
        got = run_cli("get", "--root", str(root), spelled)
        assert got.out == f"{spelled} cap_net_raw=ep\n"
        assert canaries(tmp_path) == before, spelled


@pytest.mark.parametrize("loop", ["a/tool", "self/tool", "chain/tool"])
def test_a_symlink_loop_fails_instead_of_hanging(tmp_path: Path, loop: str) -> None:
    root = make_root(tmp_path)
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("/a")
    (root / "self").symlink_to("self")
    # 41 links in a row: one more than the kernel follows (MAXSYMLINKS).
    (root / "chain").symlink_to("c1")
    for n in range(1, 41):
        (root / f"c{n}").symlink_to(f"c{n + 1}")
    (root / "c41").mkdir()
    copy_binary("/bin/true", root / "c41" / "tool")
    # A separate process with a deadline: without a limit the walk never ends.
    done = subprocess.run([SYSTEM_PYTHON, "-m", "capsnap", "--root", str(root), "set",
                           "cap_net_raw=ep", "/" + loop], capture_output=True, text=True,
                          timeout=30, env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert done.returncode == 3, done
    assert done.stderr == f"capsnap: /{loop}: too many levels of symbolic links\n"
    # One link fewer is followed, as the kernel does.
    with pytest.raises(OSError, match="Too many levels"):
        os.stat(root / "chain" / "tool")
    (root / "chain").unlink()
    (root / "chain").symlink_to("c2")
    os.stat(root / "chain" / "tool")
    assert run_cli("--root", str(root), "set", "cap_net_raw=ep", "/chain/tool").status == 0
    assert getxattr_or_none(root / "c41" / "tool") is not None


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
    expected = subprocess.run(["getcap", "-r", str(root / "usr")], capture_output=True,
                              text=True).stdout
    assert run_cli("get", "-r", str(root / "usr")).out == expected
