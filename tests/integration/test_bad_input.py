"""Every bad input gets exit 2 or 3, one line on stderr, and changes nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import copy_binary, getxattr_or_none, needs_root, run_capsnap, run_cli

pytestmark = needs_root

NOBODY = 65534


def tree_state(top: Path) -> dict[str, tuple[object, ...]]:
    """Everything capsnap could have changed under `top`."""
    state: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            state[path] = (st.st_mode, st.st_uid, st.st_nlink, st.st_size, st.st_ctime_ns,
                           getxattr_or_none(path))
    return state


def _symlink(d: Path) -> str:
    copy_binary("/bin/true", d / "real")
    (d / "link").symlink_to("real")
    return str(d / "link")


def _directory(d: Path) -> str:
    (d / "sub").mkdir()
    return str(d / "sub")


def _missing(d: Path) -> str:
    return str(d / "absent")


def _mode(mode: int) -> Callable[[Path], str]:
    def make(d: Path) -> str:
        return str(copy_binary("/bin/true", d / "tool", mode))
    return make


def _other_owner(d: Path) -> str:
    tool = copy_binary("/bin/true", d / "tool")
    os.chown(tool, NOBODY, NOBODY)
    return str(tool)


def _hard_link(d: Path) -> str:
    tool = copy_binary("/bin/true", d / "tool")
    os.link(tool, d / "alias")
    return str(tool)


def _writable_dir(d: Path) -> str:
    (d / "open").mkdir()
    (d / "open").chmod(0o777)
    return str(copy_binary("/bin/true", d / "open" / "tool"))


def _script(d: Path) -> str:
    script = d / "tool"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    return str(script)


def _shell_copy(d: Path) -> str:
    return str(copy_binary("/bin/dash", d / "innocent-name"))


def _plain(d: Path) -> str:
    return str(copy_binary("/bin/true", d / "tool"))


CASES = [
    ("symlink", _symlink, "cap_net_raw=ep", 3, "symbolic link"),
    ("directory", _directory, "cap_net_raw=ep", 3, "is a directory"),
    ("missing file", _missing, "cap_net_raw=ep", 3, "no such file"),
    ("group-writable", _mode(0o775), "cap_net_raw=ep", 3, "writable by group or others"),
    ("world-writable", _mode(0o757), "cap_net_raw=ep", 3, "writable by group or others"),
    ("other owner", _other_owner, "cap_net_raw=ep", 3, "owned by uid 65534"),
    ("hard link", _hard_link, "cap_net_raw=ep", 3, "2 hard links"),
    ("writable directory", _writable_dir, "cap_net_raw=ep", 3, "not sticky"),
    ("script", _script, "cap_net_raw=ep", 3, "a script run by /bin/sh"),
    ("shell by content", _shell_copy, "cap_net_raw=ep", 3, "a shell"),
    ("unknown name", _plain, "cap_net_rawx=ep", 2, "unknown capability name 'cap_net_rawx'"),
    ("malformed text", _plain, "cap_net_raw=ep,", 2, "unknown flag ','"),
    ("effective rule", _plain, "cap_net_raw=pe cap_kill=p", 2, "cap_kill not effective"),
    ("number too big", _plain, "64=ep", 2, "out of range"),
]


@pytest.mark.parametrize(("make", "caps", "status", "message"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_set_refuses_and_changes_nothing(world_dir: Path, make: Callable[[Path], str],
                                         caps: str, status: int, message: str) -> None:
    target = make(world_dir)
    before = tree_state(world_dir)
    result = run_capsnap("set", caps, target)
    assert result.status == status, result
    assert message in result.err
    lines = [ln for ln in result.err.splitlines() if "warning:" not in ln]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    assert tree_state(world_dir) == before


def test_force_overrides_policy_but_not_the_kernel(world_dir: Path) -> None:
    tool = _hard_link(world_dir)
    assert run_cli("set", "--force", "cap_net_raw=ep", tool).status == 0
    assert getxattr_or_none(tool) is not None


def test_root_equivalent_capability_warns_one_line_each(world_dir: Path) -> None:
    tool = _plain(world_dir)
    result = run_cli("set", "cap_sys_admin,cap_setuid,cap_net_raw=ep", tool)
    assert result.status == 0
    warnings = result.err.strip().splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith("capsnap: warning: cap_setuid is root-equivalent: ")
    assert warnings[1].startswith("capsnap: warning: cap_sys_admin is root-equivalent: ")


def test_get_reports_each_bad_path_and_goes_on(world_dir: Path) -> None:
    good = copy_binary("/bin/true", world_dir / "good")
    assert run_cli("set", "cap_net_raw=ep", str(good)).status == 0
    result = run_cli("get", str(world_dir / "absent"), str(good))
    assert result.status == 3
    assert result.out == f"{good} cap_net_raw=ep\n"
    assert result.err == f"capsnap: {world_dir / 'absent'}: no such file or directory\n"


def test_usage_errors_exit_2_in_one_line() -> None:
    for args in (["set"], ["frobnicate"], ["get", "--rootid", "x"], ["set", "--rootid", "-1",
                                                                     "cap_kill=p", "/x"]):
        result = run_cli(*args)
        assert result.status == 2, args
        assert len(result.err.strip().splitlines()) == 1, result.err


def test_unsupported_filesystem_says_why(tmp_path: Path) -> None:
    mount = tmp_path / "ramfs"
    mount.mkdir()
    if os.system(f"mount -t ramfs ramfs {mount} 2>/dev/null") != 0:
        pytest.skip("cannot mount ramfs here")
    try:
        mount.chmod(0o755)
        tool = copy_binary("/bin/true", mount / "tool")
        result = run_cli("set", "cap_net_raw=ep", str(tool))
        assert result.status == 3
        assert "does not support file capabilities" in result.err
        assert len(result.err.strip().splitlines()) == 1
    finally:
        os.system(f"umount {mount}")


def test_trailing_slash_on_a_file_is_not_a_directory(world_dir: Path) -> None:
    tool = _plain(world_dir)
    result = run_cli("set", "cap_net_raw=ep", tool + "/")
    assert result.status == 3 and "not a directory" in result.err
    assert getxattr_or_none(tool) is None


def test_get_recursive_on_dot_and_json_with_undecodable_names(world_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    import json

    odd = world_dir / os.fsdecode(b"bad\xffname")
    copy_binary("/bin/true", odd)
    assert run_cli("set", "cap_net_raw=ep", str(odd)).status == 0
    monkeypatch.chdir(world_dir)
    listed = run_cli("get", "-r", ".")
    assert listed.status == 0
    # The byte as an octal escape, as in declarations (getcap would print it raw).
    assert listed.out == "./bad\\377name cap_net_raw=ep\n"
    as_json = run_cli("get", "--json", str(odd))
    assert as_json.out.isascii()
    data = json.loads(as_json.out)
    assert data[0]["path_hex"] == os.fsencode(str(odd)).hex()


def test_refusal_stays_one_line_even_with_root_equivalent_caps(world_dir: Path) -> None:
    tool = copy_binary("/bin/true", world_dir / "tool", 0o775)
    result = run_cli("set", "cap_sys_admin,cap_setuid=ep", tool.as_posix())
    assert result.status == 3
    assert len(result.err.strip().splitlines()) == 1


def test_snapshot_of_an_unknown_package_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    before = tree_state(tmp_path)
    r = run_cli("--root", str(root), "snapshot", "--package", "no-such-package")
    assert r.status == 2
    assert r.err.strip() == (f"capsnap: package 'no-such-package' is not installed in {root} "
                             "(neither dpkg nor rpm knows it)")
    assert tree_state(tmp_path) == before
