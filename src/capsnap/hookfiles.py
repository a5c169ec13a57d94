"""Put the package-manager hook files in place for installs that are not a .deb.

The same files the Debian package ships (hooks/ in the source), each where
its package manager looks, under the selected root; only for package
managers the root has.  The path of the capsnap to run is written in.
"""

from __future__ import annotations

import os
import shlex
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


def _executable(given: str | None) -> str:
    found = given or shutil.which("capsnap") or os.path.abspath(sys.argv[0])
    if not os.path.isabs(found) or not os.access(found, os.X_OK) or os.path.isdir(found):
        raise OperationFailed(f"{found}: not an executable capsnap; give --executable with "
                              "the absolute path of the capsnap command the hooks should run")
    return shlex.quote(found)


def install(paths: SystemPaths, executable: str | None = None) -> list[tuple[str, str]]:
    """Write the hook files; (path, "installed"/"updated"/"unchanged") each."""
    source = hooks_dir()
    program = _executable(executable)
    try:
        # dpkg's pre-invoke hook (sh) marks a run's start here.
        with confine.directory(paths, paths.state_dir, create=True, private=True):
            pass
    except OSError as exc:
        raise OperationFailed(f"{paths.state_dir}: cannot create: {exc.strerror}") from None
    done = []
    for name, target, mode, needs in HOOK_FILES:
        try:
            if not stat.S_ISDIR(confine.stat_path(paths, paths.inside(needs)).st_mode):
                continue
        except OSError:
            continue
        with open(os.path.join(source, name), encoding="utf-8") as f:
            content = f.read().replace(DEFAULT_EXECUTABLE, program)
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
