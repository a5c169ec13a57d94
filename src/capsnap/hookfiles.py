# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Put the package-manager hook files in place for installs that are not a .deb.

The same files the Debian package ships (hooks/ in the source), each where
its package manager looks, under the selected root; only for package
managers the root has.  The path of the capsnap to run is written in.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys

from capsnap import confine
from capsnap.errors import OperationFailed
from capsnap.paths import SystemPaths, data_dir

# (file in hooks/, where it goes, mode, the directory whose presence means
# the package manager is there)
HOOK_FILES = (
    ("apt/05capsnap", "/etc/apt/apt.conf.d/05capsnap", 0o644, "/etc/apt"),
    ("apt/apt-pre-install-pkgs", "/etc/capsnap/apt-pre-install-pkgs", 0o755, "/etc/apt"),
    ("dpkg/capsnap.cfg", "/etc/dpkg/dpkg.cfg.d/capsnap", 0o644, "/etc/dpkg"),
    ("dnf/capsnap.actions", "/etc/dnf/libdnf5-plugins/actions.d/capsnap.actions", 0o644,
     "/etc/dnf/libdnf5-plugins/actions.d"),
    ("dnf/capsnap_dnf.conf", "/etc/dnf/plugins/capsnap_dnf.conf", 0o644, "/etc/dnf/plugins"),
    # dnf 4 looks for plugins in its own python's dnf-plugins directory.
    ("dnf/capsnap_dnf.py", "/usr/lib/python3/dist-packages/dnf-plugins/capsnap_dnf.py", 0o644,
     "/usr/lib/python3/dist-packages/dnf-plugins"),
)
DEFAULT_EXECUTABLE = "/usr/bin/capsnap"


def hooks_dir() -> str:
    return data_dir("hooks", "apt/05capsnap")


# What a hook file can hold unquoted: the path goes into an apt
# configuration string, a dpkg.cfg line run by sh, a dnf5 actions line (no
# shell at all) and a Python string literal, which all quote differently.
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./+-")
_MAX_SYMLINKS = 40  # the kernel's MAXSYMLINKS
_MAX_INTERPRETERS = 5  # the kernel's binfmt recursion limit, plus the program itself


def _executable(given: str | None, force: bool = False) -> str:
    found = given or shutil.which("capsnap") or os.path.abspath(sys.argv[0])
    if not _PLAIN.issuperset(found):
        raise OperationFailed(f"{found!r}: refused: a hook file cannot hold this path "
                              "unquoted (letters, digits and _./+- only); install capsnap "
                              "under a plain path (--force does not override this)")
    if not os.path.isabs(found) or not os.access(found, os.X_OK) or os.path.isdir(found):
        raise OperationFailed(f"{found}: not an executable capsnap; give --executable with "
                              "the absolute path of the capsnap command the hooks should run")
    problem = None if force else _untrusted(found)
    if problem:
        raise OperationFailed(f"{found}: refused: {problem}; the hooks run it as root in "
                              "every package transaction (use --force to override)")
    return found


def _untrusted(executable: str) -> str | None:
    """Why someone other than root could change what running `executable`
    runs (None: nobody can): the file, its #! interpreters, and for Python the
    prefix and the capsnap package it would import.  Best effort: a wrapper
    script that starts capsnap some other way is checked as a script only."""
    program, interpreted = executable, False
    for _ in range(_MAX_INTERPRETERS):
        problem = _path_problem(program)
        if problem:
            return f"its interpreter {program} ({problem})" if interpreted else problem
        if interpreted and os.path.basename(program).startswith("python"):
            return _python_problem(program)
        words = _shebang(program)
        if not words:
            return None
        if not all(w.isprintable() for w in words):
            return f"{program} has control characters in its #! line"
        interpreter = words[0]
        if os.path.basename(interpreter) == "env":
            problem = _path_problem(interpreter)
            if problem:
                return f"its interpreter {interpreter} ({problem})"
            # The first word env runs (after options and NAME=VALUE).
            name = next((w for w in words[1:] if not w.startswith("-") and "=" not in w), "")
            found = shutil.which(name) if name else None
            if not found:
                return f"{program} starts {' '.join(words)}, and which program env finds " \
                    "cannot be told here"
            interpreter = os.path.abspath(found)
        elif not os.path.isabs(interpreter):
            return f"{program} names a relative interpreter {interpreter}"
        program, interpreted = interpreter, True
    return f"{executable} has too many levels of #! interpreters"


def _shebang(path: str) -> list[str] | None:
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None  # exec would fail too, or it is not a script: nothing more to check
    if not head.startswith(b"#!"):
        return None
    return head[2:].split(b"\n", 1)[0].decode("utf-8", "surrogateescape").split() or None


def _path_problem(path: str) -> str | None:
    """Why a user other than root could change what `path` opens, or None.

    Resolves the path as the kernel does, one component at a time: every
    directory traversed counts (those before a symlink and those a '..'
    leaves too), every symlink met must be root's, and so must the file.  A
    sticky directory is fine: others can add entries but not replace root's.
    """
    pending = path.split("/")[::-1]
    current = "/"
    st = os.lstat("/")
    problem = _entry_problem("/", st)
    links = 0
    while pending and not problem:
        name = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        entry = os.path.join(current, name)
        try:
            st = os.lstat(entry)
        except OSError as exc:
            return f"{entry} cannot be examined ({exc.strerror})"
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid != 0:
                return f"symlink {entry} is owned by uid {st.st_uid}"
            links += 1
            if links > _MAX_SYMLINKS:
                return f"{path} goes through too many symlinks"
            target = os.readlink(entry)
            if target.startswith("/"):
                current = "/"
            pending.extend(target.split("/")[::-1])
            continue
        problem = _entry_problem(entry, st)
        current = entry
    return problem


def _entry_problem(path: str, st: os.stat_result) -> str | None:
    is_dir = stat.S_ISDIR(st.st_mode)
    kind = "directory " if is_dir else ""
    if st.st_uid != 0:
        return f"{kind}{path} is owned by uid {st.st_uid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (is_dir and st.st_mode & stat.S_ISVTX):
        return (f"{kind}{path} is writable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o})")
    return None


def _python_problem(interpreter: str) -> str | None:
    """The interpreter's prefix (a virtual environment's directory, say), the
    site directories searched before capsnap is found, and the capsnap
    package itself.  Worked out from the files, as Python's getpath and site
    do, without running anything."""
    import glob

    bindir = os.path.dirname(interpreter)
    venv = next((d for d in (bindir, os.path.dirname(bindir))
                 if os.path.isfile(os.path.join(d, "pyvenv.cfg"))), None)
    sites: list[str] = []
    base: str | None = os.path.dirname(os.path.dirname(os.path.realpath(interpreter)))
    if venv is not None:
        config = os.path.join(venv, "pyvenv.cfg")
        problem = _path_problem(venv) or _path_problem(config)
        if problem:
            return f"its interpreter {interpreter} is in a virtual environment where {problem}"
        settings = {}
        with open(config, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep:
                    settings[key.strip().lower()] = value.strip()
        sites += sorted(glob.glob(os.path.join(glob.escape(venv), "lib", "python3*",
                                               "site-packages")))
        base = None
        if settings.get("include-system-site-packages", "").lower() == "true":
            base = os.path.dirname(settings.get("home", "").rstrip("/")) or None
    if base is not None:
        problem = _path_problem(base)
        if problem:
            return f"its interpreter {interpreter} has its prefix where {problem}"
        # Root's user site comes first; Debian's /usr/local and
        # dist-packages, then upstream's site-packages.
        home = os.path.expanduser("~root")
        patterns = [(home, ".local/lib/python3*/site-packages"),
                    (base, "local/lib/python3*/dist-packages"),
                    (base, "lib/python3/dist-packages"), (base, "lib/python3*/dist-packages"),
                    (base, "lib/python3*/site-packages")]
        for top, pattern in patterns:
            sites += [site for site in sorted(glob.glob(os.path.join(glob.escape(top), pattern)))
                      if site not in sites]
    for site in _with_pth_paths(sites):
        problem = _path_problem(site)
        if problem:
            return f"its interpreter {interpreter} searches {site}, where {problem}"
        for name in sorted(os.listdir(site)):
            if name.endswith(".pth"):  # site runs their import lines at start-up
                problem = _path_problem(os.path.join(site, name))
                if problem:
                    return f"its interpreter {interpreter} runs the .pth files of {site}, " \
                        f"where {problem}"
        package = os.path.join(site, "capsnap")
        if os.path.isdir(package):
            problem = _tree_problem(package)
            if problem:
                return f"in the capsnap package its interpreter {interpreter} imports, {problem}"
            return None
    return (f"cannot tell which capsnap package its interpreter {interpreter} imports (none in "
            f"{', '.join(sites) or 'its site directories'})")


def _with_pth_paths(sites: list[str]) -> list[str]:
    """The site directories, each followed by the directories its .pth files add."""
    out: list[str] = []
    for site in sites:
        out.append(site)
        try:
            names = sorted(n for n in os.listdir(site) if n.endswith(".pth"))
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(site, name), encoding="utf-8", errors="replace") as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            for line in lines:
                if line and not line.startswith(("#", "import ", "import\t")):
                    added = os.path.join(site, line.rstrip())
                    if os.path.isdir(added) and added not in out:
                        out.append(added)
    return out


def _tree_problem(top: str) -> str | None:
    problem = _path_problem(top)
    for directory, dirs, files in os.walk(top):
        if problem:
            break
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            st = os.lstat(path)
            problem = _path_problem(path) if stat.S_ISLNK(st.st_mode) else \
                _entry_problem(path, st)
            if problem:
                break
    return problem


def install(paths: SystemPaths, executable: str | None = None,
            force: bool = False) -> list[tuple[str, str]]:
    """Write the hook files; (path, "installed"/"updated"/"unchanged") each.
    `force` accepts an executable that others than root could change."""
    source = hooks_dir()
    program = _executable(executable, force)
    wanted = []
    for name, target, mode, needs in HOOK_FILES:
        try:
            if not stat.S_ISDIR(confine.stat_path(paths, paths.inside(needs)).st_mode):
                continue
        except OSError:
            continue
        with open(os.path.join(source, name), encoding="utf-8") as f:
            content = f.read().replace(DEFAULT_EXECUTABLE, program)
        if target.startswith("/etc/dpkg/"):
            _fits_dpkg(content, program)
        wanted.append((target, mode, content))
    try:
        # dpkg's pre-invoke hook (sh) marks a run's start here.
        with confine.directory(paths, paths.state_dir, create=True, private=True):
            pass
    except OSError as exc:
        raise OperationFailed(f"{paths.state_dir}: cannot create: {exc.strerror}") from None
    done = []
    for target, mode, content in wanted:
        host = paths.inside(target)
        try:
            old: str | None = confine.read_bytes(paths, host).decode("utf-8", "replace")
        except FileNotFoundError:
            old = None
        except OSError as exc:
            raise OperationFailed(f"{host}: cannot read: {exc.strerror}") from None
        if old == content:
            done.append((target, "unchanged"))
            continue
        try:
            # A link planted at the name is replaced, never written through.
            confine.write_atomically(paths, host, content.encode("utf-8"), mode=mode,
                                     private=False)
        except OSError as exc:
            raise OperationFailed(f"{host}: cannot write: {exc.strerror}") from None
        done.append((target, "installed" if old is None else "updated"))
    return done


# dpkg reads its configuration a line at a time into 1024 bytes: a longer line
# ("unbalanced quotes") makes every dpkg command fail until it is removed.
_DPKG_LINE_MAX = 1023


def _fits_dpkg(content: str, program: str) -> None:
    longest = max(len(line.encode("utf-8")) for line in content.splitlines())
    if longest > _DPKG_LINE_MAX:
        raise OperationFailed(
            f"{program}: refused: with this path a line of dpkg's hook file would be "
            f"{longest} bytes, over the {_DPKG_LINE_MAX} dpkg reads (every dpkg command would "
            f"fail); install capsnap under a path {longest - _DPKG_LINE_MAX} bytes shorter, "
            "or give --executable with a shorter link to it")


def uninstall(paths: SystemPaths) -> list[str]:
    removed = []
    for _, target, _, _ in HOOK_FILES:
        host = paths.inside(target)
        try:
            if not confine.unlink(paths, host):
                continue
        except OSError as exc:
            raise OperationFailed(f"{host}: cannot remove: {exc.strerror}") from None
        removed.append(target)
    return removed
