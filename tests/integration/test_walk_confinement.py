"""Snapshot and `get -r` walks stay inside --root and on the walked filesystems.

Issue 11, item 1 (walks start from a resolved fd and walk by directory fd)
and item 9 (a directory swapped for a symlink mid-walk is never followed);
reproducer E of section 1 and the walk race of section 9 of the security
review.  The "host" is a scratch directory holding a copy of /bin/true with
a capability: a walk that escapes finds it, nothing on the real host is
touched.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import copy_binary, needs_root, run_cli

pytestmark = needs_root

ATTACKER = ["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups"]


@pytest.fixture
def host_caps(world_dir: Path) -> Path:
    """The scratch stand-in for a host directory: one file with a capability."""
    host = world_dir / "hostcaps"
    host.mkdir()
    tool = copy_binary("/bin/true", host / "secret-tool")
    subprocess.run(["setcap", "cap_net_raw=ep", str(tool)], check=True)
    return host


def snapshot_paths(root: Path, db: Path, *args: str) -> tuple[list[bytes], str]:
    """The paths with capabilities in a new snapshot of `root`, and stderr."""
    result = run_cli("--root", str(root), "--db", str(db), "snapshot", *args)
    assert result.status == 0, result.err
    snapshot_id = int(result.out.split()[1].rstrip(":"))
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT path FROM entries WHERE snapshot_id = ? AND "
                                  "raw IS NOT NULL", (snapshot_id,)).fetchall()
    return sorted(bytes(r[0]) for r in rows), result.err


def test_path_through_a_symlink_to_the_host_stays_inside(tmp_path: Path,
                                                         host_caps: Path) -> None:
    image = tmp_path / "img"
    (image / "usr").mkdir(parents=True)
    (image / "usr" / "h").symlink_to(host_caps)
    for spelled in ("/usr/h/.", "/usr/h/", "/usr/h"):
        found, _ = snapshot_paths(image, tmp_path / "c.db", "--path", spelled)
        assert found == [], spelled
    # A symlink on the way is followed inside the image, and the files are
    # recorded under the directory they are really in.
    inner = image / host_caps.relative_to("/") / "inner"
    inner.mkdir(parents=True)
    tool = copy_binary("/bin/true", inner / "inner-tool")
    subprocess.run(["setcap", "cap_net_bind_service=ep", str(tool)], check=True)
    found, _ = snapshot_paths(image, tmp_path / "c.db", "--path", "/usr/h/inner")
    assert found == [os.fsencode(f"{host_caps}/inner/inner-tool")]


def test_dot_dot_in_a_path_stays_at_the_root(tmp_path: Path, host_caps: Path) -> None:
    image = tmp_path / "img"
    (image / "usr").mkdir(parents=True)
    spelled = "/../../../../../../.." + str(host_caps)
    found, _ = snapshot_paths(image, tmp_path / "c.db", "--path", spelled)
    assert found == []


def test_dot_dot_in_configured_roots_is_refused(tmp_path: Path, host_caps: Path) -> None:
    image = tmp_path / "img"
    (image / "etc" / "capsnap").mkdir(parents=True)
    (image / "usr").mkdir()
    (image / "etc" / "capsnap" / "capsnap.conf").write_text(
        f"roots = /usr /../../../../../../..{host_caps}\n")
    found, err = snapshot_paths(image, tmp_path / "c.db", "--full")
    assert found == []
    assert err.count("\n") == 1 and "capsnap.conf:1" in err and "'..'" in err


def test_full_does_not_walk_roots_behind_symlinks(tmp_path: Path, host_caps: Path) -> None:
    # /usr/local (a default root) through an image's /usr that leads to the host.
    (host_caps / "local").mkdir()
    tool = copy_binary("/bin/true", host_caps / "local" / "local-tool")
    subprocess.run(["setcap", "cap_net_raw=ep", str(tool)], check=True)
    image = tmp_path / "img"
    (image / "opt" / "real").mkdir(parents=True)
    (image / "usr").symlink_to(host_caps)
    (image / "opt" / "via").symlink_to(host_caps)
    found, _ = snapshot_paths(image, tmp_path / "c.db", "--full")
    assert found == []
    # Nor a configured root with a symlink in the middle or a glob through one.
    (image / "etc" / "capsnap").mkdir(parents=True)
    (image / "etc" / "capsnap" / "capsnap.conf").write_text(
        "roots = /usr/local /opt/via/local /opt/*/local /o*/via\n")
    found, err = snapshot_paths(image, tmp_path / "c.db", "--full")
    assert found == [] and err == ""


def test_recursive_get_never_leaves_the_root(tmp_path: Path, host_caps: Path) -> None:
    image = tmp_path / "img"
    (image / "usr" / "bin").mkdir(parents=True)
    (image / "usr" / "bin" / "h").symlink_to(host_caps)
    (image / "usr" / "h").symlink_to(host_caps)
    inside = copy_binary("/bin/true", image / "usr" / "bin" / "tool")
    subprocess.run(["setcap", "cap_kill=ep", str(inside)], check=True)
    for spelled in ("/usr", "/usr/h/.", "/../../../../../../.." + str(host_caps)):
        got = run_cli("--root", str(image), "get", "-r", spelled)
        assert "secret-tool" not in got.out, spelled
    got = run_cli("--root", str(image), "get", "-r", "/usr")
    assert got.out == "/usr/bin/tool cap_kill=ep\n"


FLIPPER = """
import os, sys, time
pub, host, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
for i in range(2000):
    os.mkdir(f"{pub}/a{i}")
names = [f"{pub}/d{i}" for i in range(8)]
for name in names:
    os.mkdir(name)
print("ready", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    for name in names:
        os.rename(name, name + ".away")
        os.symlink(host, name)
    time.sleep(0.002)
    for name in names:
        os.unlink(name)
        os.rename(name + ".away", name)
    time.sleep(0.002)
"""


@contextmanager
def flipping(pub: Path, host: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """The unprivileged flipper, running on `pub` until the block ends."""
    flipper = pub.parent / "flip.py"
    flipper.write_text(FLIPPER)
    flipper.chmod(0o644)
    proc = subprocess.Popen([*ATTACKER, sys.executable, str(flipper), str(pub), str(host),
                             str(seconds + 5)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n", \
            proc.stderr.read() if proc.stderr else ""
        yield proc
        assert proc.poll() is None, "the flipper stopped before the walks did"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("command", ["snapshot", "get -r"])
def test_directory_swapped_for_a_symlink_mid_walk_is_never_followed(
        tmp_path: Path, world_dir: Path, host_caps: Path, command: str) -> None:
    root = world_dir / "wroot"
    pub = root / "srv" / "pub"
    pub.mkdir(parents=True)
    pub.chmod(0o1777)
    seconds = 6.0
    runs = raced = 0
    with flipping(pub, host_caps, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if command == "snapshot":
                found, err = snapshot_paths(root, tmp_path / f"w{runs}.db", "--path",
                                            "/srv/pub")
            else:
                listed = run_cli("--root", str(root), "get", "-r", "/srv/pub")
                found, err = [line.encode() for line in listed.out.splitlines()], listed.err
            assert found == [], f"the walk followed a swapped directory after {runs} runs"
            runs += 1
            raced += "/srv/pub/d" in err  # met a swapped directory, and said so
    assert runs >= 5
    assert raced, f"no walk met a swapped directory in {runs} runs: nothing was tested"
