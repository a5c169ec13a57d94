"""What `check` and `reapply` decide for one declared file, and what they leave alone.

Every case is a copy of /bin/true in a scratch root, declared in the root's
own /etc/capsnap/capabilities.d as an administrator would, and capsnap runs
with --root: a wrong decision can only change files of the scratch root.
Mounts (ramfs, read-only binds) are made in the session's private mount
namespace (tests/conftest.py) and unmounted at the end of the test.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from capsnap import fileops, xattr
from tests.conftest import (
    SRC,
    SYSTEM_PYTHON,
    copy_binary,
    getxattr_or_none,
    needs_root,
    ramfs_at,
    run_cli,
)

pytestmark = needs_root

NOBODY = 65534
NET_RAW = "cap_net_raw=ep"


def scratch_root(top: Path) -> Path:
    root = top / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc/capsnap/capabilities.d").mkdir(parents=True)
    return root


def declare(root: Path, *lines: str) -> None:
    (root / "etc/capsnap/capabilities.d/local.capabilities").write_text(
        "".join(f"{line}\n" for line in lines))


def tool(root: Path, name: str, mode: int = 0o755) -> Path:
    return copy_binary("/bin/true", root / "usr/bin" / name, mode)


def findings(root: Path, command: str, *args: str) -> dict[str, dict[str, str]]:
    result = run_cli("--root", str(root), command, "--json", *args)
    assert "Traceback" not in result.err, result.err
    return {f["path"]: f for f in json.loads(result.out)["findings"]}


def statuses(root: Path, command: str, *args: str) -> dict[str, str]:
    return {path: f["status"] for path, f in findings(root, command, *args).items()}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def log_lines(root: Path) -> list[str]:
    log = root / "var/log/capsnap.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return scratch_root(tmp_path)


@pytest.fixture
def ramfs_root(tmp_path: Path) -> Iterator[Path]:
    """A scratch root on a filesystem that cannot hold capabilities (EOPNOTSUPP)."""
    with ramfs_at(tmp_path / "ramfs") as mount:
        yield scratch_root(mount)


@pytest.mark.parametrize("on_disk", [
    ("set", "--rootid", "1000", NET_RAW),  # namespaced: works only inside its namespace
    ("set", "cap_net_raw=p"),  # the capability, without the effective flag
    ("set", "cap_net_raw,cap_kill=ep"),  # one more than declared
], ids=["namespaced", "other flags", "more capabilities"])
def test_only_the_declared_capability_counts_as_in_place(root: Path,
                                                         on_disk: tuple[str, ...]) -> None:
    target = tool(root, "tool")
    declare(root, f"/usr/bin/tool {NET_RAW}")
    assert run_cli(*on_disk, str(target)).status == 0

    assert statuses(root, "check") == {"/usr/bin/tool": "drifted"}
    assert statuses(root, "reapply") == {"/usr/bin/tool": "restored"}
    raw = getxattr_or_none(target)
    assert raw is not None
    stored = xattr.decode(raw)
    assert stored.revision == 2 and stored.rootid == 0
    assert run_cli("get", str(target)).out == f"{target} {NET_RAW}\n"
    assert statuses(root, "check") == {"/usr/bin/tool": "ok"}


FALLBACK_CASES = [
    # (declared options, mode, owner, capabilities on disk, check's verdict)
    ("fallback=setuid", 0o4755, 0, None, "fallback"),
    ("fallback=setuid:4750", 0o4750, 0, None, "fallback"),
    ("fallback=setuid", 0o4755, 0, "cap_kill=ep", "drifted"),
    ("fallback=none", 0o4755, 0, None, "drifted"),
    ("fallback=setuid", 0o4755, NOBODY, None, "unsafe"),
    ("fallback=setuid:4750", 0o4755, 0, None, "drifted"),
]


@pytest.mark.parametrize(("options", "mode", "owner", "caps", "verdict"), FALLBACK_CASES,
                         ids=["declared mode", "declared 4750", "other capabilities",
                              "fallback none", "not root's", "another setuid mode"])
def test_a_setuid_mode_stands_in_only_for_the_declared_fallback(
        root: Path, options: str, mode: int, owner: int, caps: str | None,
        verdict: str) -> None:
    """`check` takes a setuid mode for the capability only when it is the
    fallback declared, on a root-owned file without capabilities: anything
    else is a file to repair, or to refuse."""
    target = tool(root, "tool")
    os.chown(target, owner, owner)  # first: chown clears capabilities and setuid bits
    if caps:
        assert run_cli("set", caps, str(target)).status == 0
    target.chmod(mode)
    declare(root, f"/usr/bin/tool {NET_RAW} {options}")

    found = findings(root, "check")["/usr/bin/tool"]
    assert found["status"] == verdict, found
    assert found["actual"] == caps
    assert mode_of(target) == mode


def test_the_setuid_fallback_never_covers_a_refused_write(root: Path) -> None:
    """The fallback is for filesystems that cannot store capabilities
    (EOPNOTSUPP); setxattr refused for another reason (here EPERM: no
    CAP_SETFCAP) leaves the file as it was."""
    if shutil.which("capsh") is None:
        pytest.skip("capsh (libcap2-bin) missing")
    target = tool(root, "tool")
    declare(root, f"/usr/bin/tool {NET_RAW} fallback=setuid")
    env = dict(os.environ, PYTHONPATH=str(SRC), LC_ALL="C.UTF-8")
    done = subprocess.run(["capsh", "--drop=cap_setfcap", "--", "-c",
                           f'exec {SYSTEM_PYTHON} -m capsnap --root "$0" reapply --json',
                           str(root)], capture_output=True, text=True, env=env)
    assert done.returncode == 1, done.stderr
    found = {f["path"]: f for f in json.loads(done.stdout)["findings"]}["/usr/bin/tool"]
    assert found["status"] == "failed"
    assert "not permitted" in found["detail"]
    assert mode_of(target) == 0o755
    assert getxattr_or_none(target) is None


def test_a_read_only_filesystem_gets_no_fallback_either(root: Path) -> None:
    """EROFS: neither capability nor mode can change, and the finding says
    why, not that a fallback was tried."""
    target = tool(root, "tool")
    declare(root, f"/usr/bin/tool {NET_RAW} fallback=setuid")
    bin_dir = str(root / "usr/bin")
    subprocess.run(["mount", "--bind", bin_dir, bin_dir], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", bin_dir], check=True)
        found = findings(root, "reapply")["/usr/bin/tool"]
    finally:
        subprocess.run(["umount", bin_dir], check=True)
    assert found["status"] == "failed"
    assert "the filesystem is read-only" in found["detail"], found
    assert "fallback" not in found["detail"]
    assert mode_of(target) == 0o755


def test_without_capabilities_only_the_declared_setuid_fallback_is_applied(
        ramfs_root: Path) -> None:
    """On a filesystem without capabilities: fallback=setuid makes the file
    setuid, fallback=none does not, and neither does fallback=setuid over an
    administrator's dpkg-statoverride."""
    root = ramfs_root
    for name in ("plain", "none", "overridden"):
        tool(root, name)
    declare(root, f"/usr/bin/plain {NET_RAW} fallback=setuid",
            f"/usr/bin/none {NET_RAW} fallback=none",
            f"/usr/bin/overridden {NET_RAW} fallback=setuid")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/statoverride").write_text(
        "root root 0755 /usr/bin/overridden\nroot staff 2755 /usr/bin/unrelated\n")

    found = findings(root, "reapply")
    assert {path: f["status"] for path, f in found.items()} == {
        "/usr/bin/none": "failed", "/usr/bin/overridden": "failed",
        "/usr/bin/plain": "fallback"}
    assert "dpkg-statoverride" in found["/usr/bin/overridden"]["detail"]
    assert mode_of(root / "usr/bin/plain") == 0o4755
    assert mode_of(root / "usr/bin/none") == 0o755
    assert mode_of(root / "usr/bin/overridden") == 0o755


def test_a_statoverride_keeps_the_setuid_mode_once_the_capability_is_back(
        root: Path) -> None:
    """The capability is in place beside the declared fallback mode: capsnap
    takes the setuid bit back, except where a dpkg-statoverride sets the mode."""
    for name in ("kept", "taken"):
        target = tool(root, name)
        assert run_cli("set", NET_RAW, str(target)).status == 0
        target.chmod(0o4755)
    declare(root, f"/usr/bin/kept {NET_RAW} fallback=setuid",
            f"/usr/bin/taken {NET_RAW} fallback=setuid")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/statoverride").write_text("root root 4755 /usr/bin/kept\n")

    found = findings(root, "reapply")
    assert found["/usr/bin/taken"]["status"] == "restored"
    assert mode_of(root / "usr/bin/taken") == 0o755
    assert found["/usr/bin/kept"]["status"] == "ok"
    assert "dpkg-statoverride" in found["/usr/bin/kept"]["detail"]
    assert mode_of(root / "usr/bin/kept") == 0o4755


def test_a_declared_path_that_is_no_regular_file_is_left_alone(root: Path) -> None:
    (root / "usr/bin/dir").mkdir()
    tool(root, "real")
    (root / "usr/bin/link").symlink_to("real")
    declare(root, f"/usr/bin/dir {NET_RAW}", f"/usr/bin/link {NET_RAW}")

    checked = findings(root, "check")
    assert {path: f["status"] for path, f in checked.items()} == {
        "/usr/bin/dir": "unsafe", "/usr/bin/link": "unsafe"}
    assert "is a directory" in checked["/usr/bin/dir"]["detail"]
    assert "symbolic link" in checked["/usr/bin/link"]["detail"]
    assert statuses(root, "reapply") == {"/usr/bin/dir": "skipped", "/usr/bin/link": "skipped"}
    for name in ("dir", "real"):
        assert getxattr_or_none(root / "usr/bin" / name) is None


def test_a_capability_the_kernel_does_not_know_is_never_applied(root: Path) -> None:
    known = fileops.kernel_cap_bits()
    if known >= 64:
        pytest.skip("the kernel knows every capability number")
    target = tool(root, "tool")
    declare(root, f"/usr/bin/tool {known}=ep", f"/usr/bin/tool2 {known - 1}=ep")
    tool(root, "tool2")
    assert statuses(root, "check") == {"/usr/bin/tool": "unknown-capability",
                                       "/usr/bin/tool2": "drifted"}
    assert statuses(root, "reapply")["/usr/bin/tool"] == "skipped"
    assert getxattr_or_none(target) is None


def test_a_dry_run_writes_no_capability_log_or_record(root: Path) -> None:
    target = tool(root, "tool")
    declare(root, f"/usr/bin/tool {NET_RAW} owner=foo")
    records = root / "var/lib/capsnap/packages"

    result = run_cli("--root", str(root), "reapply", "--dry-run", "--json")
    assert [(f["path"], f["status"]) for f in json.loads(result.out)["findings"]] == [
        ("/usr/bin/tool", "would-restore")]
    assert getxattr_or_none(target) is None
    assert log_lines(root) == []
    assert not records.exists() or list(records.iterdir()) == []

    assert statuses(root, "reapply") == {"/usr/bin/tool": "restored"}
    assert getxattr_or_none(target) is not None
    assert len(log_lines(root)) == 1
    assert [p.name for p in records.iterdir()] == ["foo"]


def test_a_run_with_nothing_to_do_logs_nothing(root: Path) -> None:
    tool(root, "tool")
    declare(root, f"/usr/bin/tool {NET_RAW}")
    assert statuses(root, "reapply") == {"/usr/bin/tool": "restored"}
    logged = log_lines(root)
    assert len(logged) == 1 and 'result="restored"' in logged[0]
    assert statuses(root, "reapply") == {"/usr/bin/tool": "ok"}
    assert log_lines(root) == logged


def test_missing_and_unreachable_paths_are_told_apart(root: Path) -> None:
    tool(root, "tool")
    declare(root, f"/usr/bin/gone {NET_RAW}", f"/usr/bin/tool/under-a-file {NET_RAW}")
    checked = findings(root, "check")
    assert {path: f["status"] for path, f in checked.items()} == {
        "/usr/bin/gone": "missing", "/usr/bin/tool/under-a-file": "error"}
    assert checked["/usr/bin/gone"]["detail"] == "no such file or directory"
    assert checked["/usr/bin/tool/under-a-file"]["detail"] == \
        "a component of the path is not a directory"
    assert statuses(root, "reapply") == {"/usr/bin/gone": "missing",
                                         "/usr/bin/tool/under-a-file": "failed"}


def test_records_of_any_owner_name_stay_in_the_records_directory(root: Path) -> None:
    tool(root, "tool")
    declare(root, f"/usr/bin/tool {NET_RAW} owner=a/../../escaped")
    assert statuses(root, "reapply") == {"/usr/bin/tool": "restored"}
    state = root / "var/lib/capsnap"
    assert [p.name for p in (state / "packages").iterdir()] == ["a_.._.._escaped"]
    everything = {str(p.relative_to(root)) for p in root.rglob("*")}
    assert not any(name.endswith("escaped") for name in everything
                   if not name.startswith("var/lib/capsnap/packages/"))
