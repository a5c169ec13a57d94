"""The one walk every path under a root goes through (capsnap.confine), and
the directory rule it feeds (fileops.unsafe_reasons): no symlink leads out
of a root, every directory traversed counts, symlinks of other users do not.

Everything happens in scratch directories; "outside" files are canaries
beside the scratch root, never the host's own files.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from capsnap import confine
from capsnap.errors import OperationFailed
from capsnap.paths import SystemPaths
from tests.conftest import getxattr_or_none, needs_root, run_capsnap

ATTACKER = 4242
AS_ATTACKER = ["setpriv", f"--reuid={ATTACKER}", f"--regid={ATTACKER}", "--clear-groups"]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A root-owned 0755 directory that an unprivileged user can traverse."""
    path = Path(f"/tmp/capsnap-confine-{os.getpid()}-{time.monotonic_ns()}")
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _canary(directory: Path, name: str = "victim") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    canary = directory / name
    canary.write_text("ORIGINAL\n")
    return canary


def _tree(root: Path) -> Path:
    for d in ("var/lib", "var/log", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


@pytest.mark.parametrize("link", ["ABSOLUTE", "../../../outside/victim",
                                  "../../../../../../../../outside/victim"])
def test_state_files_never_leave_the_root(scratch: Path, link: str) -> None:
    """A symlink in the tree is resolved inside it, as a chroot would."""
    outside = scratch / "outside"
    canary = _canary(outside)
    if link == "ABSOLUTE":
        link = str(canary)
    root = _tree(scratch / "img")
    (root / "outside").mkdir()
    (root / "var/log/capsnap.log").symlink_to(link)
    paths = SystemPaths(root=str(root))
    # Appending refuses the symlink itself: capsnap's log is a plain file.
    with pytest.raises(OperationFailed):
        confine.append(paths, paths.log_file, b"x\n")
    # Writing replaces the link, never writes through it.
    (root / "var/lib/capsnap").mkdir()
    (root / "var/lib/capsnap/marker").symlink_to(link)
    confine.write_atomically(paths, str(root / "var/lib/capsnap/marker"), b"mine\n")
    assert (root / "var/lib/capsnap/marker").read_bytes() == b"mine\n"
    assert not (root / "var/lib/capsnap/marker").is_symlink()
    assert canary.read_text() == "ORIGINAL\n"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]


def test_a_symlinked_directory_is_followed_inside_the_root_only(scratch: Path) -> None:
    outside = scratch / "outside"
    canary = _canary(outside, "capsnap.log")
    root = _tree(scratch / "img")
    shutil.rmtree(root / "var/log")
    (root / "var/log").symlink_to(str(outside))  # absolute: means IMG/<outside>
    paths = SystemPaths(root=str(root))
    with pytest.raises(OSError):  # IMG/<outside> does not exist: nothing is written
        confine.append(paths, paths.log_file, b"line\n")
    inside = root / str(outside).lstrip("/")
    inside.mkdir(parents=True)
    confine.append(paths, paths.log_file, b"line\n")
    assert canary.read_text() == "ORIGINAL\n"
    assert (inside / "capsnap.log").read_bytes() == b"line\n"


def test_reads_resolve_inside_the_root(scratch: Path) -> None:
    secret = _canary(scratch / "outside", "secret")
    secret.write_text("SECRET-CONTENT\n")
    root = _tree(scratch / "img")
    (root / "etc/capsnap").mkdir()
    (root / "etc/capsnap/capsnap.conf").symlink_to(str(secret))
    paths = SystemPaths(root=str(root))
    with pytest.raises(FileNotFoundError):
        confine.read_bytes(paths, paths.config_file)
    (root / str(secret.parent).lstrip("/")).mkdir(parents=True)
    (root / str(secret).lstrip("/")).write_text("inside\n")
    assert confine.read_bytes(paths, paths.config_file) == b"inside\n"


def test_fifos_and_devices_are_not_read(scratch: Path) -> None:
    root = _tree(scratch / "img")
    (root / "etc/capsnap").mkdir()
    os.mkfifo(root / "etc/capsnap/capsnap.conf")
    paths = SystemPaths(root=str(root))
    with pytest.raises(OSError):  # a reader would block forever on a FIFO
        confine.read_bytes(paths, paths.config_file)


def test_walk_records_every_directory_traversed(scratch: Path) -> None:
    root = scratch / "r"
    (root / "a/b").mkdir(parents=True)
    (root / "c").mkdir()
    (root / "c/link").symlink_to("/a/b")
    opened: list[int] = []
    try:
        pinned = confine.pin(str(root))
        walked = confine.walk("/c/../c/link/../b/.", pinned.fd, pinned.path, opened)
        names = [name for name, _ in walked.traversed]
        # c (popped by ".." and entered again), the root again before the
        # absolute link, a, b (popped), ...
        assert f"{root}/c" in names and f"{root}/a/b" in names and f"{root}/a" in names
        assert [link.display for link in walked.links] == [f"{root}/c/link"]
    finally:
        for fd in opened:
            os.close(fd)


@needs_root
def test_private_directories_must_be_roots(scratch: Path) -> None:
    root = _tree(scratch / "img")
    state = root / "var/lib/capsnap"
    state.mkdir()
    paths = SystemPaths(root=str(root))
    for change in (lambda: state.chmod(0o777), lambda: os.chown(state, ATTACKER, ATTACKER)):
        change()
        with pytest.raises(OperationFailed, match="nobody but root"):
            confine.write_atomically(paths, str(state / "packages/foo"), b"{}\n")
        state.chmod(0o755)
        os.chown(state, 0, 0)
    confine.write_atomically(paths, str(state / "packages/foo"), b"{}\n")


@needs_root
def test_modes_do_not_depend_on_the_umask(scratch: Path) -> None:
    root = _tree(scratch / "img")
    paths = SystemPaths(root=str(root))
    old = os.umask(0)
    try:
        confine.write_atomically(paths, str(root / "var/lib/capsnap/packages/foo"), b"{}\n")
        confine.append(paths, paths.log_file, b"x\n")
    finally:
        os.umask(old)
    for made in (root / "var/lib/capsnap", root / "var/lib/capsnap/packages",
                 root / "var/lib/capsnap/packages/foo", root / "var/log/capsnap.log"):
        assert not made.stat().st_mode & 0o022, made


# --- the directory rule, through the CLI (section 3 of the security review) -------

@needs_root
def test_symlinks_through_an_attackers_directory_are_refused(scratch: Path) -> None:
    safe, attacker = scratch / "safe", scratch / "att"
    safe.mkdir()
    attacker.mkdir()
    helper = safe / "helper"
    shutil.copyfile("/usr/bin/true", helper)
    helper.chmod(0o755)
    os.chown(attacker, ATTACKER, ATTACKER)
    for command in (f"ln -s {safe} {attacker}/lnk", f"ln -s ../safe {attacker}/rel"):
        subprocess.run([*AS_ATTACKER, "sh", "-c", command], check=True)
    for through in ("lnk", "rel"):
        result = run_capsnap("set", "cap_net_raw=ep", f"{attacker}/{through}/helper")
        assert result.status == 3, result
        assert str(attacker) in result.err and "\n" not in result.err.strip()
        assert getxattr_or_none(helper) is None


@needs_root
def test_a_symlink_owned_by_another_user_is_refused(scratch: Path) -> None:
    sticky = scratch / "pub"
    sticky.mkdir()
    sticky.chmod(0o1777)
    safe = scratch / "safe"
    safe.mkdir()
    helper = safe / "helper"
    shutil.copyfile("/usr/bin/true", helper)
    helper.chmod(0o755)
    subprocess.run([*AS_ATTACKER, "ln", "-s", str(safe), str(sticky / "d")], check=True)
    result = run_capsnap("set", "cap_net_raw=ep", f"{sticky}/d/helper")
    assert result.status == 3, result
    assert "symbolic link" in result.err
    assert getxattr_or_none(helper) is None


_FLIP = """
import os, sys, time
d, host, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.symlink(host, d + "/link"); os.rename(d + "/img", d + "/real")
os.symlink("real", d + "/reallink")
end = time.time() + seconds
while time.time() < end:
    os.rename(d + "/link", d + "/img"); os.symlink(host, d + "/link")
    os.rename(d + "/reallink", d + "/img"); os.symlink("real", d + "/reallink")
"""


@needs_root
def test_the_root_cannot_be_swapped_under_reapply(scratch: Path) -> None:
    """The review's race: the user who owns the directory above an image
    swaps the image for a symlink to a trusted tree while capsnap runs."""
    attacker, hostlike = scratch / "att", scratch / "hostlike"
    (hostlike / "usr/bin").mkdir(parents=True)
    victim = hostlike / "usr/bin/helper"
    shutil.copyfile("/usr/bin/true", victim)
    victim.chmod(0o755)
    image = attacker / "img"
    (image / "etc/capsnap/capabilities.d").mkdir(parents=True)
    (image / "usr/bin").mkdir(parents=True)
    (image / "var/lib/dpkg").mkdir(parents=True)
    shutil.copyfile("/usr/bin/true", image / "usr/bin/helper")
    (image / "usr/bin/helper").chmod(0o755)
    (image / "etc/capsnap/capabilities.d/a.capabilities").write_text(
        "/usr/bin/helper cap_net_raw=ep\n")
    os.chown(attacker, ATTACKER, ATTACKER)
    flipper = subprocess.Popen([*AS_ATTACKER, sys.executable, "-c", _FLIP, str(attacker),
                                str(hostlike), "6"])
    try:
        deadline = time.monotonic() + 6
        runs = 0
        while time.monotonic() < deadline and flipper.poll() is None:
            run_capsnap("--root", str(image), "reapply")
            runs += 1
            assert getxattr_or_none(victim) is None, f"won after {runs} runs"
        assert runs > 3
    finally:
        flipper.kill()
        flipper.wait()
    assert getxattr_or_none(victim) is None


def test_the_root_is_pinned_once(scratch: Path) -> None:
    root = scratch / "r"
    root.mkdir()
    first = confine.pin(str(root))
    assert confine.pin(str(root)) is first
    assert stat.S_ISDIR(os.fstat(first.fd).st_mode)
