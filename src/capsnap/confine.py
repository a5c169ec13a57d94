# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Every path capsnap touches under a root, resolved inside that root.

capsnap runs as root on trees it does not trust: an image handed to
`--root`, a chroot that dpkg runs with `--root` (DPKG_ROOT), dnf's
`--installroot`.  A symlink in such a tree must never lead a root process
to the host's files: not for the capability targets, and not for capsnap's
own log, state, database, cache, configuration and declarations either.

So every path goes through the one walk below.  The root is opened once per
process (O_PATH|O_DIRECTORY) and pinned; a path under it is walked one
component at a time from that descriptor, each component opened with
O_NOFOLLOW, with chroot semantics: ".." stops at the root, and a symlink's
text is walked again from the root (absolute) or from its directory
(relative), so no symlink can lead outside, the kernel's magic links in a
procfs mounted inside included (their text is followed, never their
target).  This is what openat2(2) does with RESOLVE_IN_ROOT, done in user
space so that the walk also records every directory and symlink it went
through, which the safety policy needs (fileops.unsafe_reasons), and so that
it works on kernels without openat2.

Files capsnap writes are created under a fresh name with
O_CREAT|O_EXCL|O_NOFOLLOW in the pinned directory and renamed within it;
appends use O_NOFOLLOW and check that they hit a plain file; capsnap's own
state and cache directories must be owned by root (or the user running
capsnap) and writable by nobody else, or capsnap refuses to use them, since
whoever can write them could plant a link there for root to write through.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager

from capsnap.errors import OperationFailed
from capsnap.records import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from capsnap.paths import SystemPaths

_MAX_SYMLINKS = 40  # the kernel's MAXSYMLINKS
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class Link(NamedTuple):
    """A symlink met on the way, and the directory that holds it."""

    display: str
    st: os.stat_result
    directory: os.stat_result


class Walked(NamedTuple):
    """Where a walk ended: the last component, pinned, and what it went through."""

    fd: int  # O_PATH|O_NOFOLLOW descriptor of the last component
    st: os.stat_result
    name: str  # the last component ("." when the path ended on a directory)
    parent_fd: int  # O_PATH descriptor of the directory holding it
    # Every directory the walk went through, in order: those popped by ".."
    # and those before an absolute symlink included, for they could have
    # swapped what came next.
    traversed: tuple[tuple[str, os.stat_result], ...]
    links: tuple[Link, ...]  # every symlink followed
    link_target: str | None  # set when the last component is a symlink (never followed)


class Root(NamedTuple):
    """A root directory, opened once and pinned for the whole process."""

    path: str
    fd: int
    st: os.stat_result
    # The directories and symlinks the open went through to reach it: they
    # decide whether someone other than root could have chosen what it is.
    ancestry: tuple[tuple[str, os.stat_result], ...]
    links: tuple[Link, ...]


def _split(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def walk(path: str, root_fd: int, root_name: str, opened: list[int],
         start: tuple[int, str, os.stat_result] | None = None,
         follow_last: bool = False, chroot: bool = True) -> Walked:
    """Walk `path` from `start` (default: the root) without leaving the root.

    Every descriptor opened goes into `opened`, for the caller to close.
    With `chroot` false (opening a root itself) ".." and absolute symlinks
    behave as for the kernel: the walk starts at `root_fd`, which is "/".
    A symlink in the last component is returned, not followed, unless
    `follow_last`.  OSError as the kernel would raise it.
    """
    root_st = os.fstat(root_fd)
    start = start or (root_fd, root_name, root_st)
    stack: list[tuple[int, str, os.stat_result]] = [start]
    traversed: list[tuple[str, os.stat_result]] = [(start[1], start[2])]
    links: list[Link] = []
    pending = _split(path)
    links_followed = 0
    while True:
        cur_fd, cur_name, cur_st = stack[-1]
        if not pending:
            # The path ended on a directory ("/", "x/.", "x/..").
            fd = os.open(".", os.O_PATH | os.O_CLOEXEC, dir_fd=cur_fd)
            opened.append(fd)
            parent = stack[-2][0] if len(stack) > 1 else cur_fd
            return Walked(fd, os.fstat(fd), ".", parent, tuple(traversed[:-1]),
                          tuple(links), None)
        comp = pending.pop(0)
        if comp == "..":
            if len(stack) > 1:
                stack.pop()
            elif not chroot or start[0] != root_fd:
                # A relative path's ".." above its start directory, or the
                # kernel's ".." while opening a root: really go up.
                parent_fd = os.open("..", _DIR_FLAGS, dir_fd=cur_fd)
                opened.append(parent_fd)
                stack[0] = (parent_fd, os.path.dirname(cur_name), os.fstat(parent_fd))
                traversed.append((stack[0][1], stack[0][2]))
            continue
        fd = os.open(comp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur_fd)
        opened.append(fd)
        st = os.fstat(fd)
        display = os.path.join(cur_name, comp)
        if stat.S_ISLNK(st.st_mode):
            text = os.readlink(comp, dir_fd=cur_fd)
            if not pending and not follow_last:
                return Walked(fd, st, comp, cur_fd, tuple(traversed), tuple(links), text)
            links_followed += 1
            if links_followed > _MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
            links.append(Link(display, st, cur_st))
            if text.startswith("/"):
                del stack[1:]
                stack[0] = (root_fd, root_name, root_st)
                traversed.append((root_name, root_st))
            pending[:0] = _split(text)
            if not pending:  # the link named the root itself, or its directory
                continue
            continue
        if not pending:
            return Walked(fd, st, comp, cur_fd, tuple(traversed), tuple(links), None)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        stack.append((fd, display, st))
        traversed.append((display, st))


_pinned: dict[str, Root] = {}


def pin(path: str) -> Root:
    """The root at `path`, opened on first use and then kept for the process.

    It is opened by a walk from "/" that records every directory and symlink
    on the way, in the same call that opens it; from then on everything is
    resolved from the descriptor, so swapping the tree for another one later
    changes nothing for this process.
    """
    absolute = os.path.abspath(path)
    found = _pinned.get(absolute)
    if found is not None:
        return found
    opened: list[int] = []
    try:
        top = os.open("/", _DIR_FLAGS)
        opened.append(top)
        walked = walk(absolute, top, "/", opened, follow_last=True, chroot=False)
        if not stat.S_ISDIR(walked.st.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        fd = os.open(".", _DIR_FLAGS, dir_fd=walked.fd)
    except OSError as exc:
        raise OperationFailed(f"{path}: cannot open the root: "
                              f"{exc.strerror or exc}", exc.errno) from None
    finally:
        for opened_fd in opened:
            os.close(opened_fd)
    root = Root(absolute, fd, os.fstat(fd), walked.traversed, walked.links)
    _pinned[absolute] = root
    return root


def release() -> None:
    """Close every pinned root: the end of one command (a test runs many in
    one process, and a pinned root keeps its filesystem busy)."""
    for root in _pinned.values():
        os.close(root.fd)
    _pinned.clear()


def split_host_path(paths: SystemPaths, host_path: str) -> tuple[Root, str]:
    """The pinned root a path of capsnap's lives in, and the path inside it.

    SystemPaths spells paths under the root as ROOT + PATH (its messages show
    them so); an explicit location outside the root (--db, --admindir) is
    the administrator's own choice and is resolved from "/".
    """
    host_path = os.path.abspath(host_path)  # a relative --db is the working directory's
    base = os.path.abspath(paths.root).rstrip("/")
    if base and host_path.startswith(base + "/"):
        return pin(paths.root), host_path[len(base):]
    return pin("/"), host_path


@functools.cache
def _uid_map() -> tuple[tuple[int, int, int], ...]:
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            return tuple((int(a), int(b), int(c)) for a, b, c in
                         (line.split() for line in f if line.strip()))
    except (OSError, ValueError):
        return ((0, 0, 4294967295),)


@functools.cache
def _overflow_uid() -> int:
    try:
        with open("/proc/sys/kernel/overflowuid", encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65534


def root_owner(uid: int) -> bool:
    """Root of this user namespace, or an owner the namespace does not map.

    Inside a user namespace the files of unmapped owners (the real root
    among them) show as the overflow uid; they are outside the namespace's
    reach.  A mapped uid that happens to equal it (a real `nobody` mapped
    in, as container runtimes do) is an ordinary user.
    """
    if uid == 0:
        return True
    if uid != _overflow_uid():
        return False
    return not any(inside <= uid < inside + count for inside, _, count in _uid_map())


def trusted_owner(uid: int) -> bool:
    """Root, or the user running capsnap (who can only harm themselves)."""
    return uid == os.geteuid() or root_owner(uid)


def _private_problem(display: str, st: os.stat_result) -> str | None:
    if not trusted_owner(st.st_uid):
        return f"{display}: owned by uid {st.st_uid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{display}: writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _refuse_private(display: str, st: os.stat_result) -> None:
    problem = _private_problem(display, st)
    if problem:
        raise OperationFailed(f"{problem}; capsnap keeps its state only where nobody but "
                              "root can write (chown root and chmod go-w it)", errno.EPERM)


@contextmanager
def directory(paths: SystemPaths, host_dir: str, create: bool = False,
              private: bool = False, mode: int = 0o755) -> Iterator[int]:
    """A real descriptor (O_RDONLY|O_DIRECTORY) of a directory under the root.

    `create` makes missing components with `mode` (whatever the umask);
    `private` refuses a directory that someone other than root could write.
    OSError (ENOENT, ...) when it cannot be reached.
    """
    root, inside = split_host_path(paths, host_dir)
    opened: list[int] = []
    try:
        parts = _split(inside)
        current = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root.fd)
        opened.append(current)
        done = ""
        for part in parts:
            if private and done:
                # Every directory below the root on the way to capsnap's own:
                # whoever could write one could swap what comes after it.
                _refuse_private(os.path.join(root.path, done.lstrip("/")), os.fstat(current))
            done += "/" + part
            try:
                walked = walk(done, root.fd, root.path, opened, follow_last=True)
                if not stat.S_ISDIR(walked.st.st_mode):
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                current = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                                  dir_fd=walked.fd)
            except FileNotFoundError:
                if not create:
                    raise
                parent = current
                with contextlib.suppress(FileExistsError):  # made meanwhile: use it
                    os.mkdir(part, mode, dir_fd=parent)
                current = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=parent)
                st = os.fstat(current)
                if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != mode:
                    os.fchmod(current, mode)  # the umask must not decide
            opened.append(current)
        if private:
            _refuse_private(host_dir, os.fstat(current))
        yield current
    finally:
        for fd in opened:
            os.close(fd)


def _check_file(display: str, st: os.stat_result) -> None:
    """A file capsnap writes must be a plain file of root's, with one name."""
    if not stat.S_ISREG(st.st_mode):
        raise OperationFailed(f"{display}: not a regular file; capsnap leaves it alone",
                              errno.EPERM)
    if st.st_nlink > 1 or not trusted_owner(st.st_uid):
        raise OperationFailed(f"{display}: has other names or another owner (uid "
                              f"{st.st_uid}); capsnap leaves it alone", errno.EPERM)


def write_atomically(paths: SystemPaths, host_path: str, data: bytes, mode: int = 0o644,
                     private: bool = True, sync: bool = False) -> None:
    """Replace the file with `data`: a new file under a fresh name, renamed.

    Never through a symlink or into a file someone put there in advance.
    """
    parent, name = os.path.split(host_path)
    with directory(paths, parent, create=True, private=private) as dir_fd:
        try:
            found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            found = None
        if found is not None and stat.S_ISDIR(found.st_mode):
            raise OperationFailed(f"{host_path}: is a directory", errno.EISDIR)
        temporary = f".{name}.{os.getpid()}.{time.monotonic_ns()}.new"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        try:
            try:
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            # A symlink or anything else at the name is replaced, never followed.
            os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=dir_fd)
            raise
        if sync:
            os.fsync(dir_fd)


def append(paths: SystemPaths, host_path: str, data: bytes, mode: int = 0o640) -> None:
    """Append `data` in one write (O_APPEND: concurrent lines never interleave)."""
    parent, name = os.path.split(host_path)
    with directory(paths, parent, create=True) as dir_fd:
        try:
            fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise OperationFailed(f"{host_path}: is a symbolic link; capsnap appends only "
                                  "to a plain file", errno.ELOOP) from None
        try:
            _check_file(host_path, os.fstat(fd))
            os.write(fd, data)
        finally:
            os.close(fd)


@contextmanager
def _walked(paths: SystemPaths, host_path: str, follow_last: bool) -> Iterator[Walked]:
    """The walk to a path of capsnap's under its root, its descriptors
    closed when done."""
    root, inside = split_host_path(paths, host_path)
    opened: list[int] = []
    try:
        yield walk(inside, root.fd, root.path, opened, follow_last=follow_last)
    finally:
        for fd in opened:
            os.close(fd)


def open_file(paths: SystemPaths, host_path: str, flags: int = os.O_RDONLY) -> int:
    """A descriptor of a file under the root, symlinks resolved inside it.

    Only plain files: a FIFO or a device in an untrusted tree must not make
    capsnap hang or read a disk.  OSError as open(2) would raise it.
    """
    with _walked(paths, host_path, follow_last=True) as walked:
        if stat.S_ISDIR(walked.st.st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(walked.st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return os.open(f"/proc/self/fd/{walked.fd}", flags | os.O_CLOEXEC | os.O_NOCTTY)


def read_bytes(paths: SystemPaths, host_path: str) -> bytes:
    fd = open_file(paths, host_path)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def lstat(paths: SystemPaths, host_path: str) -> os.stat_result:
    """The file itself (a symlink as a symlink), its directories resolved inside."""
    with _walked(paths, host_path, follow_last=False) as walked:
        return walked.st


def stat_path(paths: SystemPaths, host_path: str) -> os.stat_result:
    """What the path names, symlinks resolved inside the root."""
    with _walked(paths, host_path, follow_last=True) as walked:
        return walked.st


def read_in(dir_fd: int, name: str) -> bytes:
    """A plain file of a pinned directory, by a name that listdir gave."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                 | os.O_CLOEXEC, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return f.read()


def exists(paths: SystemPaths, host_path: str) -> bool:
    try:
        lstat(paths, host_path)
    except OSError:
        return False
    return True


def listdir(paths: SystemPaths, host_dir: str) -> list[str]:
    with directory(paths, host_dir) as dir_fd:
        return os.listdir(dir_fd)


def unlink(paths: SystemPaths, host_path: str) -> bool:
    """Remove a file (never what a symlink points to); False when absent."""
    parent, name = os.path.split(host_path)
    try:
        with directory(paths, parent) as dir_fd:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def database_directory(paths: SystemPaths, host_db: str, private: bool, create: bool) -> int:
    """A descriptor of the database's directory, which the caller closes.

    SQLite opens its files by name (the database, -wal, -shm, -journal):
    it is given them through this pinned directory (/proc/self/fd/N/NAME),
    and each must be a plain file with one name, never a symlink.
    """
    parent, name = os.path.split(host_db)
    with directory(paths, parent or ".", create=create, private=private) as dir_fd:
        for sibling in (name, f"{name}-wal", f"{name}-shm", f"{name}-journal", f"{name}.lock"):
            try:
                st = os.stat(sibling, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            _check_file(os.path.join(parent, sibling), st)
        return os.dup(dir_fd)


def open_lock(dir_fd: int, name: str, display: str) -> int:
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)
    try:
        _check_file(display, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd
