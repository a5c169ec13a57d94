"""Fast filesystem walks that find files carrying security.capability.

Directories are read by a few threads at once: os.scandir, os.stat and the
xattr calls release the GIL, so the kernel works on several directories
while Python handles the entries of another.  Per regular file the walk does
one listxattr and nothing else: the entry's type comes from readdir's d_type
(no stat), and getxattr is only called for the few files whose attribute
list names security.capability.  (A getxattr on every file would raise an
OSError per file without the attribute, which is most of the cost of a naive
walk.)  Results are streamed to the caller through a bounded queue; what is
held in memory is the list of directories still to read, never the files.
"""

from __future__ import annotations

import collections
import errno
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

from capsnap.fileops import birth_time_ns
from capsnap.xattr import XATTR_NAME

# Never walked, whatever the roots say: kernel and runtime pseudo filesystems.
PSEUDO = ("/proc", "/sys", "/dev", "/run")
DEFAULT_ROOTS = ("/usr", "/bin", "/sbin", "/lib*", "/opt", "/usr/local", "/srv")
WORKERS = 2  # more threads only fight over the GIL (measured on 2 cores)


class Found(NamedTuple):
    path: bytes  # relative to the selected root, absolute ("/usr/bin/ping")
    raw: bytes
    inode: int
    size: int
    mtime_ns: int
    btime_ns: int | None


class WalkStats:
    """Counts of one walk; each worker keeps its own, summed on demand."""

    def __init__(self, workers: int = 0) -> None:
        self.parts = [[0, 0] for _ in range(workers)]  # [files, directories]
        self.found = 0
        self.unreadable: list[tuple[str, str]] = []

    @property
    def files(self) -> int:
        return sum(p[0] for p in self.parts)

    @property
    def directories(self) -> int:
        return sum(p[1] for p in self.parts)


def mount_points(root: str) -> set[bytes]:
    """Mount points at or under `root`: where a one-filesystem walk stops."""
    out: set[bytes] = set()
    base = os.fsencode(root.rstrip("/"))
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split(b" ")
                if len(fields) > 4:
                    # mountinfo escapes space, tab, newline and backslash in octal.
                    point = re.sub(rb"\\([0-7]{3})",
                                   lambda m: bytes([int(m.group(1), 8)]), fields[4])
                    if not base or point == base or point.startswith(base + b"/"):
                        out.add(point)
    except OSError:
        pass
    return out


def expand_roots(root: str, patterns: tuple[str, ...] = DEFAULT_ROOTS) -> list[str]:
    """Existing real directories for the root patterns, each once.

    On merged-/usr systems /bin is a symlink to usr/bin: following it would
    only walk /usr/bin twice, so symlinked roots are skipped.
    """
    import glob

    base = root.rstrip("/")
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    for pattern in patterns:
        for host in sorted(glob.glob(base + pattern)) if "*" in pattern else [base + pattern]:
            if os.path.islink(host) or not os.path.isdir(host):
                continue
            st = os.stat(host)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            out.append(host)
    # A root inside another one (/usr/local in /usr) is walked with its parent.
    return [r for r in out if not any(r != o and r.startswith(o + "/") for o in out)]


def is_pseudo(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PSEUDO)


def walk(hosts: list[str], root: str, stats: WalkStats,
         progress: Callable[[WalkStats], None] | None = None,
         workers: int = WORKERS) -> Iterator[Found]:
    """Files with capabilities under the host directories, streamed.

    Each host directory is walked on its own filesystem only: the walk does
    not descend into mount points.  Directories that cannot be read are
    counted in `stats`, never fatal.
    """
    prefix = len(root.rstrip("/").encode()) if root != "/" else 0
    stops = mount_points(root) - {os.fsencode(h) for h in hosts}
    # Shared LIFO of directories still to read: deque.append/pop are atomic,
    # so workers need no lock for it.  `busy` counts workers mid-directory.
    todo: collections.deque[bytes] = collections.deque(os.fsencode(h) for h in hosts)
    found: collections.deque[Found] = collections.deque()
    busy = [0]
    busy_lock = threading.Lock()
    stats.parts = [[0, 0] for _ in range(workers)]

    def unreadable(path: bytes, exc: OSError) -> None:
        stats.unreadable.append((os.fsdecode(path[prefix:] or b"/"), exc.strerror or str(exc)))

    def read_directory(path: bytes, counts: list[int]) -> None:
        try:
            entries = os.scandir(path)
        except OSError as exc:
            unreadable(path, exc)
            return
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.path not in stops:
                        todo.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    counts[0] += 1
                    try:
                        names = os.listxattr(entry.path, follow_symlinks=False)
                    except OSError:
                        continue  # vanished, or a filesystem without xattrs
                    if XATTR_NAME in names:
                        try:
                            raw = os.getxattr(entry.path, XATTR_NAME, follow_symlinks=False)
                            st = entry.stat(follow_symlinks=False)
                        except OSError as exc:
                            if exc.errno not in (errno.ENODATA, errno.ENOENT):
                                unreadable(entry.path, exc)
                            continue
                        if stat.S_ISREG(st.st_mode):
                            found.append(Found(entry.path[prefix:], raw, st.st_ino,
                                               st.st_size, st.st_mtime_ns,
                                               birth_time_ns(entry.path)))
        counts[1] += 1

    def worker(counts: list[int]) -> None:
        idle = 0.0
        while True:
            with busy_lock:
                try:
                    path = todo.pop()
                    busy[0] += 1
                except IndexError:
                    if busy[0] == 0:
                        return
                    path = None
            if path is None:
                idle = min(idle * 2 or 0.0002, 0.01)
                time.sleep(idle)
                continue
            idle = 0.0
            try:
                read_directory(path, counts)
            finally:
                with busy_lock:
                    busy[0] -= 1

    threads = [threading.Thread(target=worker, args=(stats.parts[i],), daemon=True)
               for i in range(workers)]
    for t in threads:
        t.start()
    last = time.monotonic()
    while True:
        alive = any(t.is_alive() for t in threads)
        while found:
            stats.found += 1
            yield found.popleft()
        if not alive:
            break
        if progress is not None and time.monotonic() - last >= 0.25:
            last = time.monotonic()
            progress(stats)
        threads[0].join(0.02)
    for t in threads:
        t.join()


def terminal_progress(started: float) -> Callable[[WalkStats], None] | None:
    """A progress line on stderr, shown once a walk has run for a second."""
    if not sys.stderr.isatty():
        return None

    def show(stats: WalkStats) -> None:
        if time.monotonic() - started >= 1.0:
            sys.stderr.write(f"\rscanning: {stats.directories} directories, {stats.files} "
                             f"files, {stats.found} with capabilities\x1b[K")
            sys.stderr.flush()

    return show


def clear_progress() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
