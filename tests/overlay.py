"""A copy-on-write view of this machine to run real package managers in.

An overlay mount of / with /dev, /proc and /sys bound in: dpkg, apt and rpm
run inside it with chroot, read the system's real configuration (so the hook
files a package installs are the ones that fire), run maintainer scripts and
scriptlets, and write only to the overlay's upper directory.  Unmounting
undoes everything; the host's packages are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIND = ("dev", "proc", "sys")


def overlay_supported() -> bool:
    return os.geteuid() == 0 and "overlay" in Path("/proc/filesystems").read_text()


@contextmanager
def overlay_system(top: Path) -> Iterator[Path]:
    upper, work, merged = top / "upper", top / "work", top / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir=/,upperdir={upper},workdir={work}", str(merged)], check=True)
    mounted = [merged]
    try:
        for name in BIND:
            # rbind: /dev/pts too (apt wants a pty for its log); rslave, so
            # unmounting here never reaches back into the host's mounts.
            subprocess.run(["mount", "--rbind", f"/{name}", str(merged / name)], check=True)
            subprocess.run(["mount", "--make-rslave", str(merged / name)], check=True)
            mounted.append(merged / name)
        # A private /tmp inside, so the host's temporary files stay out of it.
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(merged / "tmp")], check=True)
        mounted.append(merged / "tmp")
        yield merged
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", "-l", str(point)], check=False)
        shutil.rmtree(top, ignore_errors=True)


def inside(merged: Path, *cmd: str, stdin: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command chrooted into the overlay, with a plain root environment."""
    environ = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root", "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    environ.update(env or {})
    return subprocess.run(["chroot", str(merged), *cmd], capture_output=True, text=True,
                          input=stdin, env=environ)


def run_inside(merged: Path, *cmd: str,
               ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """`inside`, asserting an exit status in `ok` (the output said if not)."""
    done = inside(merged, *cmd)
    assert done.returncode in ok, f"{cmd}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def getcap_inside(merged: Path, path: str) -> str:
    """What libcap's getcap says of `path` in the overlay: its capability
    text, or "" for none."""
    out = run_inside(merged, "getcap", path).stdout.strip()
    return out.split(" ", 1)[1] if " " in out else ""


def put(merged: Path, source: Path, name: str | None = None) -> str:
    """Copy a file into the overlay's /tmp; its path as seen inside."""
    target = merged / "tmp" / (name or source.name)
    shutil.copy(source, target)
    return f"/tmp/{target.name}"


def install_debs(merged: Path, debs: list[Path]) -> subprocess.CompletedProcess[str]:
    """dpkg -i of several .debs together (capsnap's three) inside the overlay."""
    return inside(merged, "dpkg", "-i", *(put(merged, deb) for deb in debs))
