# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Every system path capsnap uses, relative to the selected root.

One place, so that the same code serves a live system, a chroot, an image
build and a scratch test root.  dpkg passes DPKG_ROOT and DPKG_ADMINDIR to
maintainer scripts; they are honoured when no option overrides them.
"""

from __future__ import annotations

import os

from capsnap.records import NamedTuple

# Where rpm keeps its database, relative to the root: Fedora and SUSE use
# /usr/lib/sysimage/rpm (older: /var/lib/rpm); Debian's rpm package sets
# %_dbpath to ~/.rpmdb, which for root is /root/.rpmdb.
RPM_DB_CANDIDATES = ("/usr/lib/sysimage/rpm", "/var/lib/rpm", "/root/.rpmdb")


def data_dir(name: str, probe: str) -> str:
    """capsnap's own data directory `name` (templates, hooks), wherever it was installed:
    $CAPSNAP_<NAME>; the package's own copy (package data, so any install scheme works:
    pip's --prefix, --user and --target, a wheel unpacked anywhere); a checkout, which
    keeps them at the top of the tree (src/capsnap/../../NAME); /usr/share/capsnap/NAME,
    where distribution packages may put them instead.  `probe` must exist inside it."""
    from importlib.resources import files

    from capsnap.errors import OperationFailed

    variable = f"CAPSNAP_{name.upper()}"
    # A plain path for an installed package; a package in a zip file has none
    # that FileSystemLoader or open() could use, and is not supported.
    packaged = files("capsnap").joinpath(name)
    # Only a source tree: an installed package's ../.. is some other
    # directory of the install (a prefix's lib/, the parent of --target).
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    checkout = os.path.join(top, name) \
        if os.path.isfile(os.path.join(top, "pyproject.toml")) else ""
    candidates = [os.environ.get(variable, ""), str(packaged), checkout,
                  os.path.join("/usr/share/capsnap", name)]
    for candidate in candidates:
        if candidate and os.path.exists(os.path.join(candidate, probe)):
            return os.path.normpath(candidate)
    raise OperationFailed(f"capsnap's {name} are missing (looked in "
                          f"{', '.join(c for c in candidates if c)}); set {variable}")


def _inside(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root != "/" else path


class SystemPaths(NamedTuple):
    root: str = "/"
    admindir_override: str | None = None
    dbpath_override: str | None = None

    @classmethod
    def select(cls, root: str | None = None, admindir: str | None = None,
               dbpath: str | None = None,
               environ: dict[str, str] | None = None) -> SystemPaths:
        env = os.environ if environ is None else environ
        if root is None:
            # DPKG_ROOT is "" for the live system, DIR under dpkg --root DIR.
            root = env.get("DPKG_ROOT") or "/"
        if admindir is None:
            admindir = env.get("DPKG_ADMINDIR") or None
        return cls(root=root, admindir_override=admindir, dbpath_override=dbpath)

    def inside(self, path: str) -> str:
        """A path of the installed system, as seen from here."""
        return _inside(self.root, path)

    @property
    def dpkg_admindir(self) -> str:
        return self.admindir_override or self.inside("/var/lib/dpkg")

    @property
    def dpkg_status(self) -> str:
        return os.path.join(self.dpkg_admindir, "status")

    @property
    def dpkg_info(self) -> str:
        return os.path.join(self.dpkg_admindir, "info")

    def rpm_dbpath(self) -> str | None:
        """The rpm database in use, relative to the root; None when there is none."""
        candidates = [self.dbpath_override] if self.dbpath_override else \
            RPM_DB_CANDIDATES
        for candidate in candidates:
            from capsnap import confine
            from capsnap.errors import CapsnapError

            try:
                if any(n.startswith(("rpmdb.sqlite", "Packages"))
                       for n in confine.listdir(self, self.inside(candidate))):
                    return candidate
            except (OSError, CapsnapError):
                continue
        return None

    @property
    def etc(self) -> str:
        return self.inside("/etc/capsnap")

    @property
    def local_declarations_dir(self) -> str:
        return os.path.join(self.etc, "capabilities.d")

    @property
    def local_declarations_file(self) -> str:
        """The file `capsnap declare` edits; admins may add others beside it."""
        return os.path.join(self.local_declarations_dir, "local.capabilities")

    @property
    def config_file(self) -> str:
        return os.path.join(self.etc, "capsnap.conf")

    @property
    def state_dir(self) -> str:
        return self.inside("/var/lib/capsnap")

    @property
    def snapshot_db(self) -> str:
        return os.path.join(self.state_dir, "capsnap.db")

    @property
    def cache_dir(self) -> str:
        return self.inside("/var/cache/capsnap")

    @property
    def log_file(self) -> str:
        return self.inside("/var/log/capsnap.log")
