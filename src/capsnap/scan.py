# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Fast filesystem walks that find files carrying security.capability.

Per regular file the walk does one listxattr and nothing else: the entry's
type comes from readdir's d_type (no stat), and getxattr is only called for
the few files whose attribute list names security.capability.  (A getxattr
on every file would raise an OSError per file without the attribute, which
is most of the cost of a naive walk.)

Walks run on untrusted trees (an image under --root, a world-writable /srv)
as root, so they go by descriptor, never by path: the root is opened once,
each start directory and each directory below it is opened under a pinned
descriptor with no symlink followed and no mount point crossed, and the
files are named from inside their directory.  A directory swapped for a
symlink mid-walk is refused, not followed.  No descriptor is kept per
directory still to read (a tree can hold millions): each is opened again
from its start, which openat2 does in one call.

Directories are read in parallel by forked worker processes: threads would
not help, as the per-entry work holds the GIL (measured: 2 threads were
slower than 1 on these machines, 2 processes 15-20 % faster).  The top of
the tree is cut into shares that each process, the parent included, takes
from a pipe one after the other: how much a subtree holds is known only
once it is read.  Workers send back only what they find, through a pipe;
the parent streams it to the caller.  What is held in memory is the list of
directories still to read, never the files.
"""

from __future__ import annotations

import collections
import errno
import functools
import marshal
import os
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterator

from capsnap import confine
from capsnap.errors import OperationFailed, UnsafeTarget
from capsnap.fileops import Target, birth_time_ns, describe_oserror
from capsnap.records import NamedTuple
from capsnap.xattr import XATTR_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Never walked, whatever the roots say: kernel and runtime pseudo filesystems.
PSEUDO = ("/proc", "/sys", "/dev", "/run")
DEFAULT_ROOTS = ("/usr", "/bin", "/sbin", "/lib*", "/opt", "/usr/local", "/srv")
WORKERS = min(os.cpu_count() or 1, 4)


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


def open_root(root: str) -> int:
    """A descriptor of the selected root, which every walk starts from: a
    duplicate of the one pinned for the process (the same directory that
    open_target resolves in), for the caller to close."""
    return os.dup(confine.pin(root).fd)


# openat2(2), Linux 5.6: one call opens a relative path with no symlink
# followed on the way (RESOLVE_NO_SYMLINKS), nothing above the directory it
# starts from (RESOLVE_BENEATH) and, inside a walk, no mount point crossed
# (RESOLVE_NO_XDEV, which stops at bind mounts of the same filesystem too).
_SYS_OPENAT2 = 437  # the same on every architecture (the unified syscall table)
_RESOLVE_NO_XDEV = 0x01
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@functools.cache
def _openat2() -> Callable[[int, bytes, bytes], int] | None:
    """openat2 through ctypes, or None where the kernel (or a seccomp
    filter, which answers EPERM) does not offer it."""
    import ctypes

    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long

    def call(dir_fd: int, path: bytes, how: bytes) -> int:
        # Plain ints and bytes (passed as C int and char *, an int widened to
        # its register by libffi): wrapping each argument in a ctypes object
        # would cost more than the system call.
        fd: int = syscall(_SYS_OPENAT2, dir_fd, path, how, len(how))
        if fd < 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number), os.fsdecode(path))
        return fd

    try:
        os.close(call(-100, b"/", struct.pack("=QQQ", os.O_PATH | os.O_DIRECTORY |
                                              os.O_CLOEXEC, 0, _RESOLVE_NO_SYMLINKS)))
    except OSError:
        return None  # ENOSYS before 5.6; EPERM or ENOSYS from container filters
    return call


class _Opener:
    """Opens a directory by a path relative to a pinned one (b"" for itself),
    following no symlink and never leaving it; with `same_mount`, crossing no
    mount point either."""

    def __init__(self, same_mount: bool) -> None:
        self.openat2 = _openat2()
        resolve = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
        self.how = struct.pack("=QQQ", _DIRECTORY, 0,
                               resolve | (_RESOLVE_NO_XDEV if same_mount else 0))

    def __call__(self, base_fd: int, relative: bytes) -> int:
        if self.openat2 is not None:
            attempts = 3
            while True:
                try:
                    return self.openat2(base_fd, relative or b".", self.how)
                except OSError as exc:
                    # EAGAIN: a rename or mount elsewhere raced the lookup.
                    attempts -= 1
                    if exc.errno != errno.EAGAIN or not attempts:
                        raise
        # Without openat2, one component at a time with O_NOFOLLOW; mount
        # points are then the walk's business (mountinfo and st_dev).
        fd = base_fd
        try:
            for name in relative.split(b"/"):
                if name == b"..":
                    raise OSError(errno.EXDEV, "'..' in a walked path", os.fsdecode(relative))
                if name in (b"", b"."):
                    continue
                below = os.open(name, _DIRECTORY, dir_fd=fd)
                if fd != base_fd:
                    os.close(fd)
                fd = below
            if fd == base_fd:
                fd = os.open(".", _DIRECTORY, dir_fd=base_fd)
        except BaseException:
            if fd != base_fd:
                os.close(fd)
            raise
        return fd


def _why(exc: OSError) -> str:
    # O_NOFOLLOW|O_DIRECTORY on a symlink: ELOOP or ENOTDIR, by kernel path.
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return "not a directory, or a symbolic link (never followed)"
    return exc.strerror or str(exc)


def _mount_points() -> list[bytes]:
    """Every mount point of this process's namespace."""
    import re  # only walks need it; hooks import this module too

    out: list[bytes] = []
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split(b" ")
                if len(fields) > 4:
                    # mountinfo escapes space, tab, newline and backslash in octal.
                    out.append(re.sub(rb"\\([0-7]{3})",
                                      lambda m: bytes([int(m.group(1), 8)]), fields[4]))
    except OSError:
        pass
    return out


def _below(directory: bytes, points: list[bytes]) -> frozenset[bytes]:
    """The mount points strictly under `directory`, relative to it."""
    base = directory.rstrip(b"/") + b"/"
    return frozenset(p[len(base):] for p in points if p.startswith(base) and len(p) > len(base))


def start_directory(target: Target, root_fd: int) -> str | None:
    """The directory an opened target is, named from the root as walk()
    takes it: no symlink is left in the name.  None when it is no directory,
    or a symlink (never walked, as with getcap -r)."""
    if target.link_target is not None or not stat.S_ISDIR(target.st.st_mode):
        return None
    try:
        real = os.readlink(os.fsencode(target.proc_path))
        base = os.readlink(f"/proc/self/fd/{root_fd}".encode())
    except OSError as exc:  # no /proc: nothing capsnap reads would work either
        raise OperationFailed(f"{target.display}: cannot name the directory: "
                              f"{describe_oserror(exc)}", exc.errno) from None
    if base == b"/":
        return os.fsdecode(real)
    if real == base or real.startswith(base + b"/"):
        return os.fsdecode(real[len(base):] or b"/")
    raise UnsafeTarget(f"{target.display}: is {os.fsdecode(real)} now, not under the root "
                       f"{os.fsdecode(base)} (was the root moved?)")


def _has_magic(part: bytes) -> bool:
    return any(m in part for m in (b"*", b"?", b"["))


def expand_roots(root_fd: int, patterns: tuple[str, ...] = DEFAULT_ROOTS) -> list[str]:
    """The existing directories the root patterns name, from the root, each once.

    Components are taken as they are in the root: a symlink on the way is
    not followed.  On merged-/usr systems /bin leads to usr/bin, which is
    walked anyway; in an image, a link could lead anywhere, the host
    included.  A pattern with '..' names nothing (config refuses them).
    """
    import fnmatch

    opener = _Opener(same_mount=False)
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    for pattern in patterns:
        parts = [p for p in os.fsencode(pattern).split(b"/") if p not in (b"", b".")]
        if b".." in parts:
            continue
        candidates = [b""]
        for part in parts:
            if not _has_magic(part):
                candidates = [c + b"/" + part if c else part for c in candidates]
                continue
            matched: list[bytes] = []
            for candidate in candidates:
                try:
                    fd = opener(root_fd, candidate)
                except OSError:
                    continue
                try:
                    names = sorted(os.fsencode(n) for n in os.listdir(fd))
                except OSError:
                    names = []
                finally:
                    os.close(fd)
                # As glob: a wildcard does not match a leading dot.
                matched.extend(candidate + b"/" + n if candidate else n for n in names
                               if fnmatch.fnmatchcase(n, part)
                               and (part.startswith(b".") or not n.startswith(b".")))
            candidates = matched
        for candidate in candidates:
            named = "/" + os.fsdecode(candidate)
            if is_pseudo(named):
                continue
            try:
                fd = opener(root_fd, candidate)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            out.append(named)
    # A root inside another one (/usr/local in /usr) is walked with its parent.
    return [r for r in out
            if not any(r != o and r.startswith(o.rstrip("/") + "/") for o in out)]


def is_pseudo(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PSEUDO)


def _send(fd: int, record: Any) -> None:
    data = marshal.dumps(record)
    payload = struct.pack("<I", len(data)) + data
    while payload:
        payload = payload[os.write(fd, payload):]


def _receive(fd: int) -> Iterator[Any]:
    buffer = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buffer += chunk
        while len(buffer) >= 4:
            (size,) = struct.unpack_from("<I", buffer)
            if len(buffer) < 4 + size:
                break
            yield marshal.loads(buffer[4:4 + size])
            buffer = buffer[4 + size:]


class _Start(NamedTuple):
    path: bytes  # from the root, without a trailing slash: b"/usr", b"" for the root
    fd: int
    dev: int
    stops: frozenset[bytes]  # mount points under it, relative to it
    # Whether a directory under it can be on another filesystem with no mount
    # point between (btrfs subvolumes): then each one's st_dev is compared.
    dev_may_change: bool = True


# Filesystems where a directory is on the filesystem of its parent unless a
# mount point is crossed (which openat2's RESOLVE_NO_XDEV refuses): ext2/3/4,
# XFS, tmpfs.  A walk there spares an fstat per directory.
_ONE_DEVICE_FILESYSTEMS = frozenset((0xEF53, 0x58465342, 0x01021994))


def _filesystem_type(fd: int) -> int | None:
    """f_type of fstatfs(2), or None when it cannot be had."""
    import ctypes

    buffer = ctypes.create_string_buffer(512)  # struct statfs is 120 bytes on 64-bit Linux
    try:
        fstatfs = ctypes.CDLL(None, use_errno=True).fstatfs
    except (OSError, AttributeError):
        return None
    if fstatfs(fd, buffer) != 0:
        return None
    # f_type comes first, a long (an unsigned int on s390x, whose value
    # read this way is no known type: the fstat per directory stays).
    return ctypes.c_long.from_buffer(buffer).value


# A directory still to read: its start's index, and its path from the start.
_Item = tuple[int, bytes]


class _Walker:
    """One process's share of a walk.

    Each directory is opened below its start's pinned descriptor with
    nothing followed (openat2, or O_NOFOLLOW per component), so a directory
    swapped for a symlink after its parent was read is not entered, and is
    counted unreadable.  Its files are then named from inside it: the walker
    changes into the directory (one component for the kernel to resolve,
    cheaper than a path from the start) or, where it could not come back to
    the working directory, goes through /proc/self/fd.
    """

    def __init__(self, starts: list[_Start], opener: _Opener, home: int | None,
                 by_cwd: bool) -> None:
        self.starts = starts
        self.opener = opener
        self.home = home  # the working directory to come back to; None: never
        self.by_cwd = by_cwd
        self.away = False
        self.files = 0
        self.directories = 0
        self.unreadable: list[tuple[bytes, str]] = []

    def come_back(self) -> None:
        """Back in the caller's working directory, before the caller runs again."""
        if self.away and self.home is not None:
            os.fchdir(self.home)
            self.away = False

    def read_directory(self, item: _Item, todo: list[_Item]) -> list[Found]:
        index, relative = item
        start = self.starts[index]
        where = start.path + b"/" + relative if relative else start.path
        found: list[Found] = []
        try:
            fd = self.opener(start.fd, relative)
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # a mount point: one filesystem per walk
                self.unreadable.append((where or b"/", _why(exc)))
            return found
        try:
            if start.dev_may_change and os.fstat(fd).st_dev != start.dev:
                return found  # another filesystem without a mount here (btrfs subvolume)
            if self.by_cwd:
                os.fchdir(fd)
                self.away = True
                prefix = ""
                # "." is the directory just entered.  Read by name, it is one
                # openat; scandir of a descriptor dups it and costs two fcntl
                # and an lseek besides (51,000 system calls fewer on /usr).
                entries = os.scandir(".")
            else:
                prefix = f"/proc/self/fd/{fd}/"
                entries = os.scandir(fd)
        except OSError as exc:
            os.close(fd)
            self.unreadable.append((where or b"/", _why(exc)))
            return found
        # The loop below runs once per file of the tree: what it needs is in
        # locals, files are tested first (most entries are), and the count
        # is added once per directory.
        listxattr = os.listxattr
        files = 0
        try:
            with entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        files += 1
                        local = prefix + entry.name if prefix else entry.name
                        try:
                            names = listxattr(local, follow_symlinks=False)
                        except OSError:
                            continue  # vanished, or a filesystem without xattrs
                        if not names or XATTR_NAME not in names:
                            continue
                        name = os.fsencode(entry.name)
                        try:
                            raw = os.getxattr(local, XATTR_NAME, follow_symlinks=False)
                            st = entry.stat(follow_symlinks=False)
                        except OSError as exc:
                            if exc.errno not in (errno.ENODATA, errno.ENOENT):
                                self.unreadable.append((where + b"/" + name, _why(exc)))
                            continue
                        if stat.S_ISREG(st.st_mode):
                            found.append(Found(where + b"/" + name, raw, st.st_ino,
                                               st.st_size, st.st_mtime_ns,
                                               birth_time_ns(name, fd=fd)))
                    elif entry.is_dir(follow_symlinks=False):
                        name = os.fsencode(entry.name)
                        below = relative + b"/" + name if relative else name
                        if not start.stops or below not in start.stops:
                            todo.append((index, below))
        finally:
            self.files += files
            os.close(fd)
        self.directories += 1
        return found


def _frontier(walker: _Walker, level: list[_Item], wanted: int,
              found: list[Found]) -> list[_Item]:
    """Read the top of the tree breadth first until there is work to share."""
    for _ in range(3):
        if len(level) >= wanted:
            break
        below: list[_Item] = []
        for directory in level:
            found.extend(walker.read_directory(directory, below))
        level = below
    return level


def _open_starts(starts: list[str], root_fd: int,
                 unreadable: list[tuple[bytes, str]]) -> list[_Start]:
    opener = _Opener(same_mount=False)
    points: list[bytes] | None = None
    out: list[_Start] = []
    for start in starts:
        path = os.fsencode(start).rstrip(b"/")
        try:
            fd = opener(root_fd, path.lstrip(b"/"))
        except OSError as exc:
            unreadable.append((path or b"/", _why(exc)))
            continue
        if points is None:
            points = _mount_points()
        try:
            real = os.readlink(f"/proc/self/fd/{fd}".encode())
        except OSError:
            real = b""  # no /proc: openat2 still stops at mounts, and st_dev at filesystems
        out.append(_Start(path, fd, os.fstat(fd).st_dev,
                          _below(real, points) if real else frozenset(),
                          dev_may_change=_openat2() is None or
                          _filesystem_type(fd) not in _ONE_DEVICE_FILESYSTEMS))
    return out


def walk(starts: list[str], root_fd: int, stats: WalkStats,
         progress: Callable[[WalkStats], None] | None = None,
         workers: int = WORKERS) -> Iterator[Found]:
    """Files with capabilities under the start directories, streamed.

    `starts` are directories named from the root ("/usr"), as expand_roots
    and start_directory give them.  They and every directory under them are
    opened below `root_fd` without following a symlink, so the walk never
    leaves the root, whatever is renamed or swapped meanwhile.  Each start is
    walked on its own filesystem only: the walk does not descend into mount
    points.  Directories that cannot be read are counted in `stats`, never
    fatal.
    """
    if not starts:
        return  # a hook's snapshot of packages and tracked paths walks nothing
    unreadable: list[tuple[bytes, str]] = []
    opened = _open_starts(starts, root_fd, unreadable)
    try:
        home: int | None = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        home = None
    try:
        yield from _walk_opened(opened, home, unreadable, stats, progress, workers)
    finally:
        if home is not None:
            os.fchdir(home)
            os.close(home)
        for start in opened:
            os.close(start.fd)


def _walk_opened(starts: list[_Start], home: int | None,
                 unreadable: list[tuple[bytes, str]], stats: WalkStats,
                 progress: Callable[[WalkStats], None] | None,
                 workers: int) -> Iterator[Found]:
    opener = _Opener(same_mount=True)
    walker = _Walker(starts, opener, home, by_cwd=home is not None)
    walker.unreadable.extend(unreadable)
    early: list[Found] = []
    level: list[_Item] = [(i, b"") for i in range(len(starts))]
    frontier = _frontier(walker, level, 64 * workers, early) if workers > 1 else level
    queue = _Queue(frontier, workers) if workers > 1 and len(frontier) > 1 else None
    try:
        yield from _walk_shared(walker, starts, opener, early, frontier, queue, stats,
                                progress, workers)
    finally:
        if queue is not None:
            queue.leave(0)  # a caller that stops early leaves no worker waiting for it
            queue.close()


class _Queue:
    """The work of a walk's processes, shared as they go.

    First the shares of the top of the tree, for each process to take the
    next one when it is done with the last: their numbers are written to a
    pipe before the workers are forked, and a pipe read of 4 bytes takes one
    whole number, whichever process reads.  Then, as one subtree can hold a
    third of /usr, a process that runs dry says so in a shared status byte,
    and one that still holds directories to read gives it half of them, as
    one 4096-byte record (a pipe write that size is whole, and so is the
    read) in a second pipe.  The walk ends when every process is waiting
    and no record is left.
    """

    GROUPS = 256  # 1 KiB of numbers: within the smallest pipe buffer (a page)
    RECORD = 4096  # PIPE_BUF: written and read whole
    BUSY, WAITING, GONE = 0, 1, 2

    def __init__(self, frontier: list[_Item], processes: int) -> None:
        import mmap

        groups = min(len(frontier), self.GROUPS)
        self.shares = [frontier[i::groups] for i in range(groups)]
        self.fd, write_end = os.pipe()
        try:
            os.write(write_end, struct.pack(f"<{groups}I", *range(groups)))
        finally:
            os.close(write_end)  # then a read past the last number is the end
        self.given, self.give = os.pipe()
        os.set_blocking(self.given, False)
        os.set_blocking(self.give, False)
        # One byte per process, shared by the fork (an anonymous map is MAP_SHARED).
        self.status = mmap.mmap(-1, processes)
        self.me = 0
        self.parent = os.getpid()
        self.since_given = 0

    def take(self) -> list[_Item]:
        data = os.read(self.fd, 4)
        if len(data) < 4:
            return []
        return list(self.shares[struct.unpack("<I", data)[0]])

    def offer(self, todo: list[_Item]) -> None:
        """Give half of `todo` to a process that waits for work, if one does."""
        self.since_given += 1
        if len(todo) < 2 or self.since_given < 8 or self.status.find(b"\x01") < 0:
            return
        self.since_given = 0
        half = len(todo) // 2
        # The oldest directories: the highest in the tree, the most below them.
        given, todo[:half] = todo[:half], []
        while given:
            count = len(given)
            while True:
                data = marshal.dumps(given[:count])
                if len(data) <= self.RECORD - 4 or count == 1:
                    break
                count //= 2
            if len(data) > self.RECORD - 4:
                todo.extend(given[:1])  # a path too long for a record: read it here
                given = given[1:]
                continue
            try:
                os.write(self.give, struct.pack("<I", len(data)) + data +
                         bytes(self.RECORD - 4 - len(data)))
            except BlockingIOError:
                todo.extend(given)  # the pipe is full: keep the rest
                return
            given = given[count:]

    def wait(self, todo: list[_Item]) -> bool | None:
        """One round of waiting for work: True when some was put in `todo`,
        False when the walk is done, None to be called again."""
        self.status[self.me] = self.WAITING
        # Whether everyone waits is read before the pipe is: a record given
        # before a process waited is then seen (one is given only by a busy one).
        everyone = self.status.find(bytes([self.BUSY])) < 0
        try:
            data = os.read(self.given, self.RECORD)
        except BlockingIOError:
            data = b""
        if data:
            self.status[self.me] = self.BUSY
            (size,) = struct.unpack_from("<I", data)
            todo.extend(marshal.loads(data[4:4 + size]))
            return True
        if everyone or (self.me and os.getppid() != self.parent):
            self.status[self.me] = self.GONE
            return False
        time.sleep(0.002)
        return None

    def leave(self, slot: int) -> None:
        """A process is gone (ended, or died): nobody waits for it."""
        self.status[slot] = self.GONE

    def close(self) -> None:
        for fd in (self.fd, self.given, self.give):
            os.close(fd)
        self.status.close()


def _walk_shared(walker: _Walker, starts: list[_Start], opener: _Opener, early: list[Found],
                 frontier: list[_Item], queue: _Queue | None, stats: WalkStats,
                 progress: Callable[[WalkStats], None] | None,
                 workers: int) -> Iterator[Found]:
    children: list[tuple[int, int]] = []  # (pid, read end)
    slots: list[int] = []  # each child's status byte in the queue
    for slot in range(1, workers):
        if queue is None:
            break  # nothing to share
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            for unused in range(slot, workers):
                queue.leave(unused)  # never started: nobody waits for them
            break  # the others, this process included, take their shares
        if pid == 0:  # the worker: walk, report, and leave without cleanup
            status = 1
            try:
                os.close(read_end)
                queue.me = slot
                # A worker never goes back: it can always read from inside.
                worker = _Walker(starts, opener, None, by_cwd=True)
                todo: list[_Item] = []
                while True:
                    if not todo and not (todo := queue.take()):
                        while (got := queue.wait(todo)) is None:
                            pass
                        if not got:
                            break
                    for item in worker.read_directory(todo.pop(), todo):
                        _send(write_end, ("found", tuple(item)))
                    if worker.directories % 64 == 0:
                        _send(write_end, ("count", worker.files, worker.directories))
                    queue.offer(todo)
                _send(write_end, ("done", worker.files, worker.directories,
                                  worker.unreadable))
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        children.append((pid, read_end))
        slots.append(slot)

    inbox: collections.deque[Any] = collections.deque()
    child_counts = [[0, 0] for _ in children]

    def drain(index: int, fd: int) -> None:
        for record in _receive(fd):
            inbox.append((index, record))

    readers = []
    if children:
        import threading  # a walk's, not a hook's

        readers = [threading.Thread(target=drain, args=(i, fd), daemon=True)
                   for i, (_, fd) in enumerate(children)]
    for reader in readers:
        reader.start()

    def collect() -> Iterator[Found]:
        while inbox:
            index, record = inbox.popleft()
            if record[0] == "found":
                walker.come_back()  # the caller runs at each yield
                yield Found(*record[1])
            elif record[0] == "count":
                child_counts[index] = [record[1], record[2]]
            else:
                child_counts[index] = [record[1], record[2]]
                walker.unreadable.extend(record[3])

    def publish() -> None:
        walker.come_back()  # the caller's progress runs next
        stats.parts = [[walker.files, walker.directories], *child_counts]
        stats.unreadable = [(os.fsdecode(p), why) for p, why in walker.unreadable]

    last = time.monotonic()
    pending: list[Found] = early
    todo = [] if queue is not None else list(frontier)
    while True:
        if pending:
            walker.come_back()  # the caller runs at each yield
        for item in pending:
            stats.found += 1
            yield item
        pending = []
        for item in collect():
            stats.found += 1
            yield item
        if not todo and queue is not None and not (todo := queue.take()):
            for slot, reader in zip(slots, readers, strict=True):
                if not reader.is_alive():
                    queue.leave(slot)  # its pipe is closed: it is gone, whatever it said
            got = queue.wait(todo)
            if got is None:
                continue  # what the workers found meanwhile, then wait again
            if not got:
                break
        if not todo:
            break
        pending = walker.read_directory(todo.pop(), todo)
        if queue is not None:
            queue.offer(todo)
        if progress is not None and time.monotonic() - last >= 0.25:
            last = time.monotonic()
            publish()
            progress(stats)
    walker.come_back()
    for reader in readers:
        while reader.is_alive():
            reader.join(0.25)
            for item in collect():
                stats.found += 1
                yield item
            if progress is not None:
                publish()
                progress(stats)
    for item in collect():
        stats.found += 1
        yield item
    for pid, fd in children:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            walker.unreadable.append((b"(a walk worker)", f"exited with status {status}"))
    publish()


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
