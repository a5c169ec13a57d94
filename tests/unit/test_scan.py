"""The descriptor walker of capsnap.scan on synthetic trees.

Every test runs twice: with openat2(2), and with the per-component
O_NOFOLLOW fallback that kernels before 5.6 (or seccomp filters) get.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from capsnap import scan
from tests.conftest import SRC, SYSTEM_PYTHON, copy_binary, needs_root

pytestmark = needs_root

MODES = ["openat2", "per component"]
SYMLINK = "not a directory, or a symbolic link (never followed)"


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "per component":
        monkeypatch.setattr(scan, "_openat2", lambda: None)
    elif scan._openat2() is None:
        pytest.skip("this kernel has no openat2")
    return str(request.param)


def with_cap(path: Path, caps: str = "cap_net_raw=ep") -> Path:
    copy_binary("/bin/true", path)
    subprocess.run(["setcap", caps, str(path)], check=True)
    return path


def make_tree(top: Path) -> Path:
    """top/root: the tree walked; top/outside: what its symlinks lead to."""
    outside = top / "outside"
    (outside / "sub").mkdir(parents=True)
    with_cap(outside / "leak")
    with_cap(outside / "sub" / "leak")
    root = top / "root"
    srv = root / "srv"
    (srv / "a" / "b" / "c").mkdir(parents=True)
    with_cap(srv / "a" / "b" / "c" / "deep", "cap_net_bind_service=ep")
    with_cap(srv / "top")
    (srv / "a" / "plain").write_bytes(b"no capability")
    (srv / "escape").symlink_to(outside)
    (srv / "escape-rel").symlink_to("../../outside")
    (srv / "a" / "up").symlink_to("..")
    (srv / "link-to-top").symlink_to("top")
    for i in range(300):  # enough to be shared out to a forked worker
        (srv / "many" / f"d{i:03}").mkdir(parents=True)
    with_cap(srv / "many" / "d123" / "in-many")
    return root


def walk(root: Path, starts: list[str], workers: int = 1) -> tuple[list[scan.Found],
                                                                  scan.WalkStats]:
    stats = scan.WalkStats()
    fd = scan.open_root(str(root))
    try:
        found = sorted(scan.walk(starts, fd, stats, workers=workers))
    finally:
        os.close(fd)
    return found, stats


@pytest.mark.parametrize("workers", [1, 2])
def test_files_with_capabilities_are_found_by_their_path_from_the_root(
        tmp_path: Path, mode: str, workers: int) -> None:
    root = make_tree(tmp_path)
    cwd = os.getcwd()
    found, stats = walk(root, ["/srv"], workers)
    assert os.getcwd() == cwd
    assert [f.path for f in found] == [b"/srv/a/b/c/deep", b"/srv/many/d123/in-many",
                                       b"/srv/top"]
    deep = (root / "srv" / "a" / "b" / "c" / "deep").stat()
    assert (found[0].inode, found[0].size, found[0].mtime_ns) == \
        (deep.st_ino, deep.st_size, deep.st_mtime_ns)
    assert found[0].raw == os.getxattr(root / "srv/a/b/c/deep", "security.capability")
    # Symlinks to directories, in or out of the tree, are never walked.
    assert (stats.files, stats.directories, stats.unreadable) == (4, 305, [])


def test_a_start_is_named_from_the_root(tmp_path: Path, mode: str) -> None:
    root = make_tree(tmp_path)
    found, _ = walk(root, ["/srv/a/b"])
    assert [f.path for f in found] == [b"/srv/a/b/c/deep"]
    found, _ = walk(root, ["/"])
    assert [f.path for f in found] == [b"/srv/a/b/c/deep", b"/srv/many/d123/in-many",
                                       b"/srv/top"]


def test_a_start_with_a_symlink_in_it_is_not_opened(tmp_path: Path, mode: str) -> None:
    root = make_tree(tmp_path)
    for start in ("/srv/escape", "/srv/escape/sub", "/srv/a/up/a", "/../outside"):
        found, stats = walk(root, [start])
        assert found == [], start
        assert len(stats.unreadable) == 1, start


@pytest.mark.parametrize("by_cwd", [True, False])
@pytest.mark.parametrize("depth", [0, 1])
def test_a_directory_swapped_for_a_symlink_after_it_was_listed(
        tmp_path: Path, mode: str, by_cwd: bool, depth: int) -> None:
    """Read the parent, swap, read the child (or its child): never followed."""
    outside = tmp_path / "outside"
    (outside / "e").mkdir(parents=True)
    with_cap(outside / "leak")
    with_cap(outside / "e" / "leak")
    swapped = tmp_path / "root" / "srv" / "d"
    (swapped / "e").mkdir(parents=True)
    fd = scan.open_root(str(tmp_path / "root"))
    home = os.open(".", os.O_PATH | os.O_DIRECTORY) if by_cwd else None
    unreadable: list[tuple[bytes, str]] = []
    starts = scan._open_starts(["/srv"], fd, unreadable)
    try:
        walker = scan._Walker(starts, scan._Opener(same_mount=True), home, by_cwd)
        todo: list[tuple[int, bytes]] = []
        walker.read_directory((0, b""), todo)
        for _ in range(depth):
            walker.read_directory(todo.pop(), todo)
        assert todo == [(0, b"d/e" if depth else b"d")]
        swapped.rename(swapped.with_name("d.away"))
        swapped.symlink_to(outside)
        assert walker.read_directory(todo.pop(), todo) == []
        walker.come_back()
        assert todo == []
        assert walker.unreadable == [(b"/srv/d/e" if depth else b"/srv/d", SYMLINK)]
    finally:
        if home is not None:
            os.fchdir(home)
            os.close(home)
        for start in starts:
            os.close(start.fd)
        os.close(fd)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory under /tmp that the unprivileged user can traverse."""
    path = Path(tempfile.mkdtemp(prefix="capsnap-scan-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


WALK_SCRIPT = """
import json, os, sys
from capsnap import scan
if sys.argv[2] == "per component":
    scan._openat2 = lambda: None
fd = scan.open_root(sys.argv[1])
stats = scan.WalkStats()
found = sorted(f.path.decode() for f in scan.walk(sys.argv[3:], fd, stats, workers=2))
print(json.dumps({"found": found, "unreadable": stats.unreadable, "files": stats.files,
                  "directories": stats.directories}))
"""


def run_walk(prefix: list[str], root: Path, mode: str, *starts: str) -> dict[str, object]:
    proc = subprocess.run([*prefix, SYSTEM_PYTHON, "-c", WALK_SCRIPT, str(root), mode, *starts],
                          capture_output=True, text=True, check=True,
                          env=dict(os.environ, PYTHONPATH=str(SRC)))
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_an_unreadable_directory_is_counted(open_dir: Path, mode: str) -> None:
    root = open_dir / "root"
    (root / "open").mkdir(parents=True)
    (root / "closed").mkdir()
    with_cap(root / "open" / "tool")
    with_cap(root / "closed" / "hidden")
    (root / "closed").chmod(0)
    user = ["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups"]
    result = run_walk(user, root, mode, "/")
    assert result == {"found": ["/open/tool"], "unreadable": [["/closed", "Permission denied"]],
                      "files": 1, "directories": 2}


def test_mount_points_are_not_crossed(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "root"
    for name in ("real", "bind", "tmpfs"):
        (root / "srv" / name).mkdir(parents=True)
    with_cap(root / "srv" / "real" / "tool")
    script = (f"mount --bind {root}/srv/real {root}/srv/bind && "
              f"mount -t tmpfs tmpfs {root}/srv/tmpfs && "
              f"cp /bin/true {root}/srv/tmpfs/t && setcap cap_kill=ep {root}/srv/tmpfs/t && "
              'exec "$@"')
    # A private mount namespace: the mounts vanish with the process.
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    result = run_walk(prefix, root, mode, "/srv")
    assert result["found"] == ["/srv/real/tool"]
    assert result["unreadable"] == []
    # A mount point named as a start is walked, on its own filesystem.
    result = run_walk(prefix, root, mode, "/srv/tmpfs", "/srv/bind")
    assert result["found"] == ["/srv/bind/tool", "/srv/tmpfs/t"]


def test_expand_roots_takes_no_symlink_and_no_dot_dot(tmp_path: Path, mode: str) -> None:
    root = make_tree(tmp_path)
    (root / "usr" / "local").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "lib64").symlink_to("lib")
    (root / "libexec").mkdir()
    (root / ".libhidden").mkdir()
    (root / "opt").symlink_to(tmp_path / "outside")
    (root / "proc").mkdir()
    fd = scan.open_root(str(root))
    try:
        assert scan.expand_roots(fd) == ["/usr", "/lib", "/libexec", "/srv"]
        assert scan.expand_roots(fd, ("/srv/escape/sub", "/srv/a/up", "/*/escape",
                                      "/srv/../../outside", "/proc", "/missing")) == []
        assert scan.expand_roots(fd, ("/s*/a/b", "/srv/*/b", "/srv/a")) == ["/srv/a"]
        # As glob: a wildcard matches no leading dot.
        assert scan.expand_roots(fd, ("/*",)) == ["/lib", "/libexec", "/srv", "/usr"]
        assert scan.expand_roots(fd, ("/.lib*",)) == ["/.libhidden"]
        assert scan.expand_roots(fd, ("/.lib*", "/", "/usr")) == ["/"]
    finally:
        os.close(fd)


def test_every_share_of_a_walk_is_taken_once_whichever_process_takes_it() -> None:
    """Shares go to whichever process asks next (a fixed split left one
    process most of /usr): three processes taking from one queue get each
    share exactly once between them."""
    frontier: list[tuple[int, bytes]] = [(0, f"d{n}".encode()) for n in range(1000)]
    queue = scan._Queue(frontier, 3)
    try:
        readers = []
        for _ in range(2):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover (a child)
                taken = []
                while share := queue.take():
                    taken.extend(name.decode() for _, name in share)
                os.write(write_end, json.dumps(taken).encode())
                os._exit(0)
            os.close(write_end)
            readers.append((pid, read_end))
        taken = [name.decode() for share in iter(queue.take, []) for _, name in share]
        for pid, read_end in readers:
            with os.fdopen(read_end, "rb") as f:
                taken += json.loads(f.read())
            assert os.waitpid(pid, 0)[1] == 0
    finally:
        queue.close()
    assert sorted(taken) == sorted(name.decode() for _, name in frontier)


def test_work_given_between_processes_is_walked_once(tmp_path: Path, mode: str) -> None:
    """Most of the tree under one share: the process that takes it gives
    directories to those that run dry; every file is still counted once and
    every capability found once, however the work went round."""
    root = tmp_path / "root"
    big = root / "srv" / "big"
    for i in range(40):
        for j in range(20):
            leaf = big / f"b{i:02}" / f"c{j:02}"
            leaf.mkdir(parents=True)
            (leaf / "f").write_bytes(b"")
    for n in range(200):
        (root / "srv" / f"small{n:03}").mkdir(parents=True)
    for name in ("b07/c13/cap", "b39/c00/cap", "b00/c19/cap"):
        with_cap(big / name)
    expected = [b"/srv/big/b00/c19/cap", b"/srv/big/b07/c13/cap", b"/srv/big/b39/c00/cap"]
    least = []
    for workers in (1, 2, 3, 3, 4):
        found, stats = walk(root, ["/srv"], workers)
        assert [f.path for f in found] == expected, workers
        assert (stats.files, stats.directories, stats.unreadable) == \
            (803, 1 + 1 + 40 + 800 + 200, []), workers
        least.append(min(part[1] for part in stats.parts))
    # Without giving, the processes that did not take /srv/big read only empty
    # directories: 200 between them.
    assert max(least[1:]) > 200, least
