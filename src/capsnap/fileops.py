"""The only module that opens target files and touches security.capability.

Every operation works on one inode pinned by an O_PATH|O_NOFOLLOW file
descriptor: the safety checks (fstat), the write and the verification all see
the same file even if someone renames another one into its place meanwhile.
The xattr calls go through /proc/self/fd/N because O_PATH descriptors do not
support f{get,set,remove}xattr; the kernel resolves that magic link to the
pinned file itself, never by walking the path again.

Paths are resolved inside a selected root with chroot semantics: ".." stops
at the root and an absolute symlink target restarts at the root, so a
symlink can never lead outside it.  A symlink in the last component is
refused, never followed.
"""

from __future__ import annotations

import errno
import functools
import mmap
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from capsnap.captext import CAP_NUMBERS, CapSet
from capsnap.errors import OperationFailed, UnsafeTarget
from capsnap.records import NamedTuple
from capsnap.xattr import SIZE_3, XATTR_NAME

_MAX_SYMLINKS = 40  # the kernel's MAXSYMLINKS

# Remedies for the errors a user can meet, keyed by errno.
_ERRNO_TEXT = {
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "a component of the path is not a directory",
    errno.EACCES: "permission denied (run as root)",
    errno.EPERM: "operation not permitted: setting file capabilities needs root "
                 "or CAP_SETFCAP, and the file must be owned by the namespace's root",
    errno.EOPNOTSUPP: "the filesystem does not support file capabilities (NFS, "
                      "some overlays, ramfs): keep the binary on a local filesystem "
                      "such as ext4 or xfs, or fall back to a setuid helper",
    errno.EROFS: "the filesystem is read-only: remount it read-write first",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EINVAL: "the kernel rejected the capability value",
}


def describe_oserror(exc: OSError) -> str:
    if exc.errno is not None and exc.errno in _ERRNO_TEXT:
        return _ERRNO_TEXT[exc.errno]
    return exc.strerror or str(exc)


def _failed(display: str, exc: OSError) -> OperationFailed:
    return OperationFailed(f"{display}: {describe_oserror(exc)}", exc.errno)


class Target(NamedTuple):
    """An opened file: the pinned inode and the directories above it."""

    display: str  # the path as the user named it, for messages and output
    fd: int  # O_PATH|O_NOFOLLOW descriptor of the file itself
    st: os.stat_result
    name: str  # last component
    directories: tuple[tuple[str, os.stat_result], ...] = ()
    link_target: str | None = None  # set when the last component is a symlink

    @property
    def proc_path(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    @property
    def is_regular(self) -> bool:
        return stat.S_ISREG(self.st.st_mode)


def _split(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


@contextmanager
def open_target(path: str, root: str = "/") -> Iterator[Target]:
    """Open `path` inside `root` without following a symlink out of it."""
    opened: list[int] = []
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        opened.append(root_fd)
        root_st = os.fstat(root_fd)
        if os.path.isabs(path) or root != "/":
            start_fd, start_st = root_fd, root_st
            start_name = root
        else:
            start_fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            opened.append(start_fd)
            start_st = os.fstat(start_fd)
            start_name = os.getcwd()
        # The directory stack from the root to the current directory; the
        # part above the start (for relative paths) is checked separately.
        stack: list[tuple[int, str, os.stat_result]] = [(start_fd, start_name, start_st)]
        if not path:
            raise OperationFailed("'': not a file path")
        pending = _split(path)
        # "dir/" names a directory, as it does for the kernel.
        wants_directory = path.endswith("/") or path.endswith("/.") or path == "."
        links = 0
        while True:
            cur_fd = stack[-1][0]
            if not pending:
                # The path ended on "." or "..": the target is a directory.
                fd = os.open(".", os.O_PATH | os.O_CLOEXEC, dir_fd=cur_fd)
                opened.append(fd)
                yield Target(display=path, fd=fd, st=os.fstat(fd), name=".",
                             directories=tuple((n, s) for _, n, s in stack[:-1]))
                return
            comp = pending.pop(0)
            if comp == "..":
                if len(stack) > 1:
                    stack.pop()
                else:
                    # ".." at the start of a relative path leaves the start
                    # directory; inside a chosen root it stays at the root.
                    if stack[0][0] != root_fd:
                        parent = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                                         dir_fd=cur_fd)
                        opened.append(parent)
                        stack[0] = (parent, os.path.dirname(stack[0][1]), os.fstat(parent))
                continue
            fd = os.open(comp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur_fd)
            opened.append(fd)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                link = os.readlink(comp, dir_fd=cur_fd)
                if not pending:
                    yield Target(display=path, fd=fd, st=st, name=comp,
                                 directories=tuple((n, s) for _, n, s in stack),
                                 link_target=link)
                    return
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                if link.startswith("/"):
                    del stack[1:]
                    stack[0] = (root_fd, root, root_st)
                pending[:0] = _split(link)
                continue
            if not pending:
                if wants_directory and not stat.S_ISDIR(st.st_mode):
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                yield Target(display=path, fd=fd, st=st, name=comp,
                             directories=tuple((n, s) for _, n, s in stack))
                return
            if not stat.S_ISDIR(st.st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            stack.append((fd, os.path.join(stack[-1][1], comp), st))
    except OSError as exc:
        raise _failed(path, exc) from None
    finally:
        for fd in opened:
            os.close(fd)


def read_raw(target: Target) -> bytes | None:
    """The raw security.capability value, or None when there is none."""
    # The magic link is followed: it leads to the pinned inode itself.
    return read_raw_path(target.proc_path, target.display, follow=True)


def read_raw_path(path: str, display: str, follow: bool = False) -> bytes | None:
    """The same for a path met by a read-only walk (never following a symlink
    at its end, as getcap does); `display` is how messages name it."""
    try:
        return os.getxattr(path, XATTR_NAME, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.EOPNOTSUPP):
            return None
        if exc.errno == errno.EINVAL:
            raise OperationFailed(
                f"{display}: security.capability is malformed (the kernel "
                "refuses to read it); remove it with 'capsnap remove'") from None
        raise _failed(display, exc) from None


def write_raw(target: Target, raw: bytes) -> None:
    try:
        os.setxattr(target.proc_path, XATTR_NAME, raw)
    except OSError as exc:
        if exc.errno == errno.EINVAL and len(raw) == SIZE_3:
            raise OperationFailed(
                f"{target.display}: the kernel refused the namespaced capability: its "
                "rootid is not a uid mapped in this user namespace") from None
        raise _failed(target.display, exc) from None


def remove_raw(target: Target) -> bool:
    """Remove the attribute; False when there was none to remove."""
    try:
        os.removexattr(target.proc_path, XATTR_NAME)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.EOPNOTSUPP):
            return False
        raise _failed(target.display, exc) from None
    return True


def require_regular(target: Target) -> None:
    if target.link_target is not None:
        raise UnsafeTarget(
            f"{target.display}: is a symbolic link to {target.link_target}; capsnap "
            "never follows it: name the file it points to")
    if not target.is_regular:
        kind = "a directory" if stat.S_ISDIR(target.st.st_mode) else "not a regular file"
        raise UnsafeTarget(f"{target.display}: is {kind}; file capabilities belong "
                           "on regular executable files")


# --- safety policy ---------------------------------------------------------

# Interpreters and shells by name (after stripping a version suffix such as
# "3.11" or "5.36.0"): a capability on one is a capability for every script.
_INTERPRETER_NAMES = frozenset("""
    python pypy perl ruby irb node nodejs deno bun php lua luajit tclsh wish
    expect guile sbcl ocaml erl escript java jshell pwsh awk gawk mawk nawk
    sh ash bash dash rbash zsh ksh mksh pdksh csh tcsh fish yash busybox toybox
    R Rscript julia
""".split())


def _strip_version(name: str) -> str:
    """"python3.11" -> "python", "perl5.36.0" -> "perl", "node-18" -> "node":
    an optional letter, digits and dots (starting with a digit), one optional
    separator, all at the end."""
    end = len(name)
    if end and "a" <= name[end - 1] <= "z":
        end -= 1
    start = end
    while start and ((name[start - 1].isascii() and name[start - 1].isdigit())
                     or name[start - 1] == "."):
        start -= 1
    while start < end and name[start] == ".":  # the version starts with a digit
        start += 1
    if start == end:
        return name
    if start and name[start - 1] in "-_.":
        start -= 1
    return name[:start]

# Byte markers that an interpreter or shell binary carries whatever it is
# called: the embedding entry points of each language runtime, and the
# version or default-prompt strings of the shells.  (Generic shell variable
# names are no good: shellcheck carries them all.)
_MARKER_LANGUAGE = {
    b"Py_InitializeEx": "the Python interpreter", b"Py_InitializeFromConfig":
    "the Python interpreter, or a program embedding it", b"perl_parse": "the Perl interpreter",
    b"ruby_options": "the Ruby interpreter", b"luaL_newstate": "the Lua interpreter",
    b"php_execute_script": "the PHP interpreter", b"Tcl_Main": "the Tcl interpreter",
    b"_ZN4node5Start": "the Node.js runtime", b"JLI_Launch": "the Java launcher",
    b"BusyBox v": "BusyBox (a shell among others)", b"GNU bash,": "a shell (bash)",
    b"PS4=+ ": "a shell", b"@(#)MIRBSD KSH": "a shell (mksh)",
}


def interpreter_by_name(name: str) -> str | None:
    stem = _strip_version(name)
    if name in _INTERPRETER_NAMES or stem in _INTERPRETER_NAMES:
        return name
    return None


def sniff_interpreter(target: Target) -> str | None:
    """What the content says: a script, or a language runtime/shell binary."""
    try:
        fd = os.open(target.proc_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None  # unreadable to us: the name check still applies
    try:
        head = os.pread(fd, 4, 0)
        if head.startswith(b"#!"):
            line = os.pread(fd, 128, 0).split(b"\n", 1)[0][2:].strip()
            return "a script run by " + line.decode("utf-8", "replace")
        if head != b"\x7fELF" or target.st.st_size == 0:
            return None
        with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as data:
            # The first marker in the file names it (as one pass of an
            # alternation would); a find each spares a hook importing re.
            found = [(at, marker) for marker in _MARKER_LANGUAGE
                     if (at := data.find(marker)) >= 0]
            if found:
                return _MARKER_LANGUAGE[min(found)[1]]
    finally:
        os.close(fd)
    return None


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


def _trusted_owner(uid: int) -> bool:
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


@functools.cache
def _ancestor_stats(path: str) -> tuple[tuple[str, os.stat_result], ...]:
    """The directories above `path` (not itself), top down, with their stat."""
    return tuple((p, os.stat(p)) for p in _ancestors(path)[:-1])


def _ancestors(path: str) -> list[str]:
    path = os.path.realpath(path)
    out = []
    while True:
        out.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return list(reversed(out))


def unsafe_reasons(target: Target, root: str = "/") -> list[str]:
    """Why giving this file capabilities would be unsafe (empty: safe)."""
    st = target.st
    reasons: list[str] = []
    if not _trusted_owner(st.st_uid):
        reasons.append(f"it is owned by uid {st.st_uid}, not root: its owner could "
                       "replace the program (chown root it first)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        reasons.append(f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): "
                       "anyone who can write it could replace the program (chmod go-w it)")
    if st.st_nlink > 1:
        reasons.append(f"it has {st.st_nlink} hard links: the capability would follow "
                       "every other name of it (copy the file instead)")
    directories = list(target.directories)
    # A root chosen with --root (or the working directory, for a relative
    # path) is only as safe as the directories above it.
    if root != "/":
        directories = [*_ancestor_stats(root), *directories]
    elif directories and directories[0][0] != "/":
        directories = [*_ancestor_stats(directories[0][0]), *directories]
    for dpath, dst in directories:
        mode = dst.st_mode
        if not _trusted_owner(dst.st_uid):
            reasons.append(f"directory {dpath} is owned by uid {dst.st_uid}, who could "
                           "swap the file (keep it in root-owned directories)")
            break
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            reasons.append(f"directory {dpath} is writable by group or others and not "
                           "sticky: anyone could swap the file")
            break
    by_name = interpreter_by_name(target.name)
    sniffed = sniff_interpreter(target)
    if by_name or sniffed:
        what = sniffed or f"an interpreter ({by_name}, by its name)"
        reasons.append(f"it is {what}: every account that can run it would gain the "
                       "capability for any code (give it to a dedicated helper binary)")
    return reasons


def check_safe(target: Target, root: str = "/") -> None:
    require_regular(target)
    reasons = unsafe_reasons(target, root)
    if reasons:
        raise UnsafeTarget(f"{target.display}: refused: {reasons[0]}; "
                           "use --force to override")


# Capabilities that hand over the whole machine, with the reason in a few
# words (after capabilities(7) and Brad Spengler's "False Boundaries"): a
# program that holds one can become root or do anything root can.  `all`
# (and "=ep") holds every one of them.
ROOT_EQUIVALENT = {
    "cap_sys_admin": "a catch-all that includes mount and namespace control",
    "cap_sys_module": "loads code into the kernel",
    "cap_sys_rawio": "raw access to memory, disks and I/O ports",
    "cap_sys_ptrace": "can inject code into any process",
    "cap_sys_boot": "can boot a kernel of its choosing (kexec_load)",
    "cap_sys_tty_config": "rebinds console keys, so root types its commands",
    "cap_dac_override": "writes any file, /etc/shadow included",
    "cap_dac_read_search": "reads any file, /etc/shadow included",
    "cap_setuid": "can become any user, root included",
    "cap_setgid": "can join any group, such as disk or shadow",
    "cap_setfcap": "can give any file any capability",
    "cap_setpcap": "can grant capabilities to its own children",
    "cap_chown": "can take ownership of any file",
    "cap_fowner": "can change the mode of any file",
    "cap_fsetid": "keeps setuid bits on files it modifies",
    "cap_bpf": "loads BPF programs that can read kernel memory",
    "cap_net_admin": "reconfigures the network and its firewall: can intercept "
                     "and redirect anyone's traffic, and load kernel modules on demand",
    "cap_ipc_owner": "reads and writes any process's shared memory, root's included",
    "cap_mknod": "creates device nodes such as /dev/mem",
    "cap_sys_chroot": "can chroot into a tree with a planted setuid binary",
    "cap_mac_admin": "reconfigures the mandatory access control policy",
    "cap_mac_override": "bypasses the mandatory access control policy",
}


def root_equivalent_names(caps: CapSet) -> list[str]:
    """The root-equivalent capabilities `caps` grants, in number order."""
    granted = caps.permitted | caps.inheritable | caps.effective
    return [name for name in sorted(ROOT_EQUIVALENT, key=CAP_NUMBERS.__getitem__)
            if granted >> CAP_NUMBERS[name] & 1]


def root_equivalent_warnings(caps: CapSet) -> list[str]:
    return [f"{name} is root-equivalent: {ROOT_EQUIVALENT[name]}"
            for name in root_equivalent_names(caps)]


def kernel_cap_bits() -> int:
    """Capabilities the running kernel knows: cap_last_cap + 1.

    This is what libcap's cap_max_bits() finds; ``all`` means these.
    """
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            return int(f.read()) + 1
    except (OSError, ValueError):
        from capsnap.captext import CAP_NAMES
        return len(CAP_NAMES)


_STATX_BTIME = 0x800
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_EMPTY_PATH = 0x1000


@functools.cache
def _statx() -> Callable[..., int] | None:
    import ctypes

    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).statx
    except (OSError, AttributeError):
        return None
    return function


def birth_time_ns(path: bytes = b"", fd: int = _AT_FDCWD) -> int | None:
    """When the file (this inode) was created, where the filesystem records it.

    A diff uses it to tell a new file from an old one that gained a
    capability; os.stat does not expose it, so statx(2) is called directly.
    """
    import ctypes
    import struct

    statx = _statx()
    if statx is None:
        return None
    buf = ctypes.create_string_buffer(256)  # sizeof(struct statx)
    flags = _AT_SYMLINK_NOFOLLOW | (_AT_EMPTY_PATH if not path else 0)
    if statx(fd, path, flags, _STATX_BTIME, buf) != 0:
        return None
    mask, = struct.unpack_from("<I", buf.raw, 0)
    if not mask & _STATX_BTIME:
        return None
    seconds, nanoseconds = struct.unpack_from("<qI", buf.raw, 80)
    return int(seconds * 1_000_000_000 + nanoseconds)
