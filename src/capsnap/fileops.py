# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
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

from capsnap import confine
from capsnap.captext import CAP_NUMBERS, CapSet
from capsnap.errors import OperationFailed, UnsafeTarget
from capsnap.records import NamedTuple
from capsnap.xattr import SIZE_3, XATTR_NAME

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
    """An opened file: the pinned inode and what the walk to it went through."""

    display: str  # the path as the user named it, for messages and output
    fd: int  # O_PATH|O_NOFOLLOW descriptor of the file itself
    st: os.stat_result
    name: str  # last component
    # Every directory above the file that could have decided what it is:
    # those above the root (or the working directory), and every one the
    # walk went through inside it, in order.
    directories: tuple[tuple[str, os.stat_result], ...] = ()
    link_target: str | None = None  # set when the last component is a symlink
    links: tuple[confine.Link, ...] = ()  # the symlinks the walk followed

    @property
    def proc_path(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    @property
    def is_regular(self) -> bool:
        return stat.S_ISREG(self.st.st_mode)


def _cwd_ancestry(cwd_fd: int) -> tuple[tuple[str, os.stat_result], ...]:
    """The directories above the working directory, found from its
    descriptor by "..", never by its name (which may have changed)."""
    out: list[tuple[str, os.stat_result]] = []
    name = os.getcwd()
    fd = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=cwd_fd)
    child = os.fstat(cwd_fd)
    try:
        while True:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (child.st_dev, child.st_ino):
                break  # "/": its own parent
            name = os.path.dirname(name)
            out.append((name, st))
            parent = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd, child = parent, st
    finally:
        os.close(fd)
    return tuple(reversed(out))


@contextmanager
def open_target(path: str, root: str = "/") -> Iterator[Target]:
    """Open `path` inside `root` without following a symlink out of it."""
    opened: list[int] = []
    try:
        if not path:
            raise OperationFailed("'': not a file path")
        pinned = confine.pin(root)
        if os.path.isabs(path) or root != "/":
            walked = confine.walk(path, pinned.fd, pinned.path, opened)
            above = pinned.ancestry
        else:
            cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            opened.append(cwd)
            walked = confine.walk(path, pinned.fd, pinned.path, opened,
                                  start=(cwd, os.getcwd(), os.fstat(cwd)))
            above = _cwd_ancestry(cwd)
        # "dir/" names a directory, as it does for the kernel.
        wants_directory = path.endswith("/") or path.endswith("/.") or path == "."
        if wants_directory and walked.link_target is None and \
                not stat.S_ISDIR(walked.st.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        yield Target(display=path, fd=walked.fd, st=walked.st, name=walked.name,
                     directories=(*above, *walked.traversed), link_target=walked.link_target,
                     links=(*pinned.links, *walked.links))
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

# Interpreters, shells and other code runners by name (after stripping a
# version suffix such as "3.11" or "5.36.0"): a capability on one is a
# capability for every script, plugin or program it can be told to run.
_INTERPRETER_NAMES = frozenset("""
    python pypy perl ruby irb node nodejs deno bun php lua luajit tclsh wish
    expect guile sbcl ocaml erl escript java jshell pwsh awk gawk mawk nawk
    sh ash bash dash rbash zsh ksh mksh pdksh csh tcsh fish yash busybox toybox
    R Rscript julia gdb lldb lli setpriv capsh sqlite3 openssl
""".split())

# Dynamic loaders by name, whatever the architecture ("ld-linux-x86-64.so.2",
# "ld-linux-aarch64.so.1", "ld-musl-x86_64.so.1", "ld.so.1", "ld64.so.2").
_LOADER_PREFIXES = ("ld-linux", "ld-musl", "ld.so", "ld64.so")


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

_AMBIENT = "which passes capabilities on as ambient ones to any program it starts"
_GNU_PLUGINS = "a plugin loader (gawk's @load, make's load, gcc's -fplugin)"
_TOOL_PLUGINS = "a plugin loader (binutils' --plugin, LLVM's -load)"
_OPENSSL = "the OpenSSL command, which loads engines and providers from any path"

# Byte markers that a code runner carries whatever it is called: the
# embedding entry points of each language runtime, the version or
# default-prompt strings of the shells, and the option names or help texts
# of the tools that load a library or start a program named on their command
# line.  (Generic shell variable names are no good: shellcheck carries them
# all.  Library symbols are no good either: programs that embed or link
# SQLite or libcrypto carry sqlite3_load_extension or ENGINE_by_id without
# letting a user name what to load; the tools' help texts say a user can.)
_MARKER_LANGUAGE = {
    b"Py_InitializeEx": "the Python interpreter", b"Py_InitializeFromConfig":
    "the Python interpreter, or a program embedding it", b"perl_parse": "the Perl interpreter",
    b"ruby_options": "the Ruby interpreter", b"luaL_newstate": "the Lua interpreter",
    b"php_execute_script": "the PHP interpreter", b"Tcl_Main": "the Tcl interpreter",
    b"Tk_MainEx": "the Tcl/Tk interpreter",
    b"_ZN4node5Start": "the Node.js runtime", b"JLI_Launch": "the Java launcher",
    b"BusyBox v": "BusyBox (a shell among others)", b"GNU bash,": "a shell (bash)",
    b"PS4=+ ": "a shell", b"@(#)MIRBSD KSH": "a shell (mksh)",
    b"ZSH_VERSION": "a shell (zsh)", b"tcsh %d.%.2d.%.2d": "a shell (tcsh)",
    b"fish universal variable": "a shell (fish)", b"YASH_LOADPATH": "a shell (yash)",
    # qemu-user (qemu-aarch64, ...) runs a guest program in its own process.
    b"QEMU_LD_PREFIX": "a user-mode emulator (qemu), which runs any program named to it",
    # capsh's --addamb, util-linux setpriv's --ambient-caps (busybox's
    # applet has it too), and any other user of libcap's call for it.
    b"--addamb=": "capsh, " + _AMBIENT,
    b"ambient-caps": "setpriv (or a tool like it), " + _AMBIENT,
    b"cap_set_ambient": "a program using libcap's cap_set_ambient, " + _AMBIENT,
    # The sqlite3 shell's ".load FILE ?ENTRY?" (.help) and "?ENTRYPOINT?" (usage).
    b".load FILE ?ENTRY": "the SQLite shell, whose .load runs any library",
    b"Use engine, possibly a hardware device": _OPENSSL, b"Provider load path": _OPENSSL,
    # Loaders of plugins that must say they are GPL-compatible: gawk, make,
    # gcc's front ends (lto-dump); then binutils (ar, nm, ranlib, ld.bfd,
    # gold) and LLVM's tools (opt, llc, lli).
    b"plugin_is_GPL_compatible": _GNU_PLUGINS,
    # ("[Ll]oad the specified plugin": ar, nm, ranlib, opt, llc, lli.)
    b"oad the specified plugin": _TOOL_PLUGINS, b"Load named plugin": _TOOL_PLUGINS,
    b"could not load plugin library": _TOOL_PLUGINS,
}


def interpreter_by_name(name: str) -> str | None:
    stem = _strip_version(name)
    if (name in _INTERPRETER_NAMES or stem in _INTERPRETER_NAMES
            or name.startswith(_LOADER_PREFIXES)):
        return name
    return None


class ElfFacts(NamedTuple):
    """What the kernel looks at to start an ELF file, and two dynamic tags."""

    elf_type: int  # e_type: 2 ET_EXEC, 3 ET_DYN
    entry: int
    has_interp: bool  # a PT_INTERP program header names a loader for it
    has_needed: bool  # DT_NEEDED: it names libraries someone else must load
    flags_1: int  # DT_FLAGS_1, 0 when absent

    @property
    def is_loader(self) -> bool:
        """A shared object that the kernel starts by itself and that needs
        no one to load its libraries: a dynamic loader (ld.so, musl's libc.so).

        An entry point alone says little: glibc's libc.so.6 and libcap.so.2
        run under an interpreter to print their version, and many plain
        libraries (libXau, librtmp, Python extension modules here) carry the
        address of .text as e_entry, but they all name libraries in
        DT_NEEDED that nothing would load.  A static PIE executable is self-
        contained too and says so with DF_1_PIE (binutils since 2.33, lld;
        glibc's dlopen relies on the same flag to refuse executables).
        """
        return (self.elf_type == _ET_DYN and self.entry != 0 and not self.has_interp
                and not self.has_needed and not self.flags_1 & _DF_1_PIE)


_ET_DYN = 3
_PT_DYNAMIC = 2
_PT_INTERP = 3
_DT_NEEDED = 1
_DT_FLAGS_1 = 0x6ffffffb
_DF_1_PIE = 0x08000000
# binfmt_elf refuses program headers of another size or more than 64 KiB of
# them (load_elf_phdrs): such a file cannot be started, so it is not parsed.
_MAX_PHDRS_SIZE = 65536
_MAX_DYNAMIC = 4096


def elf_facts(data: bytes | mmap.mmap) -> ElfFacts | None:
    """Parse an ELF header and program headers, 32 or 64-bit, either byte
    order (a --root image may be of another architecture); None when `data`
    is not an ELF file the kernel could start, truncated ones included."""
    size = len(data)
    if size < 52 or data[:4] != b"\x7fELF":
        return None
    wide, order_byte = data[4], data[5]
    if wide not in (1, 2) or order_byte not in (1, 2):
        return None
    big = order_byte == 2
    word = 8 if wide == 2 else 4

    def num(at: int, width: int) -> int:
        return int.from_bytes(data[at:at + width], "big" if big else "little")

    if size < (64 if wide == 2 else 52):
        return None
    elf_type = num(16, 2)
    entry = num(24, word)
    phoff = num(24 + word, word)
    phentsize = num(42 + 3 * (word - 4), 2)
    phnum = num(44 + 3 * (word - 4), 2)
    if phentsize != (56 if wide == 2 else 32) or not 0 < phnum * phentsize <= _MAX_PHDRS_SIZE:
        return None
    if phoff + phnum * phentsize > size:
        return None
    has_interp = False
    dynamic: tuple[int, int] | None = None
    for at in range(phoff, phoff + phnum * phentsize, phentsize):
        p_type = num(at, 4)
        if p_type == _PT_INTERP:
            has_interp = True
        elif p_type == _PT_DYNAMIC and dynamic is None:
            # p_offset and p_filesz: after p_type (and, 64-bit, p_flags).
            if wide == 2:
                dynamic = num(at + 8, 8), num(at + 32, 8)
            else:
                dynamic = num(at + 4, 4), num(at + 16, 4)
    has_needed, flags_1 = False, 0
    if dynamic is not None:
        start, length = dynamic
        # Real tables hold a few dozen entries; a crafted endless one is cut
        # short, and what it hides past that errs on the side of refusing.
        end = min(start + length, size, start + _MAX_DYNAMIC * 2 * word)
        for at in range(start, end - 2 * word + 1, 2 * word):
            tag = num(at, word)
            if tag == 0:  # DT_NULL ends the table
                break
            if tag == _DT_NEEDED:
                has_needed = True
            elif tag == _DT_FLAGS_1:
                flags_1 = num(at + word, word)
    return ElfFacts(elf_type, entry, has_interp, has_needed, flags_1)


def sniff_interpreter(target: Target) -> str | None:
    """What the content says: a script, a dynamic loader, or a language
    runtime, shell, launcher or plugin loader binary."""
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
            facts = elf_facts(data)
            if facts is not None and facts.is_loader:
                return "a dynamic loader, which runs any program named to it"
            # A find each spares a hook importing re; stopping at the first
            # marker found (in the table's order) spares a large runtime
            # such as node most of the passes over it.
            for marker, what in _MARKER_LANGUAGE.items():
                if data.find(marker) >= 0:
                    return what
    finally:
        os.close(fd)
    return None


def unsafe_reasons(target: Target, root: str = "/") -> list[str]:
    """Why giving this file capabilities would be unsafe (empty: safe)."""
    st = target.st
    reasons: list[str] = []
    if not confine.root_owner(st.st_uid):
        reasons.append(f"it is owned by uid {st.st_uid}, not root: its owner could "
                       "replace the program (chown root it first)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        reasons.append(f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): "
                       "anyone who can write it could replace the program (chmod go-w it)")
    if st.st_nlink > 1:
        reasons.append(f"it has {st.st_nlink} hard links: the capability would follow "
                       "every other name of it (copy the file instead)")
    seen: set[tuple[int, int]] = set()
    for dpath, dst in target.directories:
        if (dst.st_dev, dst.st_ino) in seen:
            continue
        seen.add((dst.st_dev, dst.st_ino))
        mode = dst.st_mode
        if not confine.root_owner(dst.st_uid):
            reasons.append(f"directory {dpath} is owned by uid {dst.st_uid}, who could "
                           "swap the file (keep it in root-owned directories)")
            break
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            reasons.append(f"directory {dpath} is writable by group or others and not "
                           "sticky: anyone could swap the file")
            break
    for link in target.links:
        # As fs.protected_symlinks would have it: a symlink counts only if
        # root or the owner of its directory made it.
        if not confine.root_owner(link.st.st_uid) and link.st.st_uid != link.directory.st_uid:
            reasons.append(f"symbolic link {link.display} on the path is owned by uid "
                           f"{link.st.st_uid}, who could point it elsewhere")
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
