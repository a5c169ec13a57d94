# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Declarations from the rpm database: %caps in %files (the FILECAPS tag).

rpm records each file's capability text, normalised by cap_to_text at build
time, in RPMTAG_FILECAPS, parallel to the file names.  A machine without rpm
or its Python bindings simply has no rpm source.
"""

from __future__ import annotations

import os

from capsnap import cache, confine
from capsnap.declarations import Declaration, Problem
from capsnap.declarations.entries import escape_path, parse_entry
from capsnap.errors import CapsnapError, InvalidInput
from capsnap.paths import RPM_DB_CANDIDATES, SystemPaths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_STATE_NORMAL = 0  # RPMFILE_STATE_NORMAL: the file is on disk as packaged
_GHOST = 1 << 6  # RPMFILE_GHOST: listed, owned, but not in the payload
# Cached entries before %ghost files were refused must not be reused.
_CACHE_KIND = "shipped"


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _transaction_set(paths: SystemPaths, dbpath: str) -> Any:
    import rpm

    # Name the database explicitly: rpm's own default may follow $HOME.
    rpm.addMacro("_dbpath", dbpath)
    ts = rpm.TransactionSet(paths.root)
    ts.setVSFlags(-1)  # reading our own database: no signature checks needed
    return ts


def _version(hdr: Any) -> str:
    import rpm

    epoch = hdr[rpm.RPMTAG_EPOCH]
    evr = f"{_text(hdr[rpm.RPMTAG_VERSION])}-{_text(hdr[rpm.RPMTAG_RELEASE])}"
    return f"{epoch}:{evr}" if epoch else evr


def _database(paths: SystemPaths) -> tuple[str | None, str | None]:
    """The database to read, or why there is no rpm source here."""
    dbpath = paths.rpm_dbpath()
    if dbpath is None:
        wanted = paths.dbpath_override or " or ".join(RPM_DB_CANDIDATES)
        return None, f"rpm: no database at {wanted} in {paths.root}"
    try:
        import rpm  # noqa: F401
    except ImportError:
        return None, "rpm: the rpm Python bindings (python3-rpm) are not installed"
    return dbpath, None


def _database_key(paths: SystemPaths, dbpath: str) -> list[int] | None:
    """The identity of the database's files (not the shared-memory index or
    locks, which change on every read); None if the directory cannot be listed."""
    directory = paths.inside(dbpath)
    try:
        names = sorted(n for n in confine.listdir(paths, directory)
                       if not n.endswith(("-shm", ".lock")) and not n.startswith("__db."))
    except (OSError, CapsnapError):
        return None
    return cache.file_key(paths, [os.path.join(directory, n) for n in names])


def read(paths: SystemPaths, known_bits: int) \
        -> tuple[list[Declaration], list[Problem], list[str]]:
    """What the database declares; from the cache while its files are unchanged,
    which spares hooks the bindings' import (most of a dpkg hook's time on
    Debian, where rpm keeps a database too)."""
    dbpath = paths.rpm_dbpath()
    key = _database_key(paths, dbpath) if dbpath is not None else None
    cached = cache.load(paths, "rpm-declarations") if key is not None else {}
    if key is not None and cached.get("key") == [_CACHE_KIND, paths.root, dbpath, *key]:
        return _from_cache(cached, known_bits)
    dbpath, why_not = _database(paths)
    if dbpath is None:
        return [], [], [why_not or "rpm: no database"]
    found, refused, problems = _read_database(paths, dbpath)
    if problems:
        return [], problems, []
    if key is not None:
        cache.save(paths, "rpm-declarations", {"key": [_CACHE_KIND, paths.root, dbpath, *key],
                                               "entries": found, "refused": refused})
    return _from_cache({"entries": found, "refused": refused}, known_bits)


def _from_cache(cached: dict[str, object], known_bits: int) \
        -> tuple[list[Declaration], list[Problem], list[str]]:
    decls: list[Declaration] = []
    problems: list[Problem] = []
    refused = cached.get("refused")
    for path, text, name, version in refused if isinstance(refused, list) else []:
        problems.append(Problem("rpm", f"package {name} {version}",
                                f"%caps({text}) for {escape_path(path)} refused: a %ghost "
                                "file, which the package does not ship"))
    entries = cached.get("entries")
    for path, text, name, version in entries if isinstance(entries, list) else []:
        try:
            entry = parse_entry(f"{escape_path(path)} {text}", known_bits=known_bits)
        except InvalidInput as exc:
            problems.append(Problem("rpm", f"package {name} {version}",
                                    f"bad %caps for {path}: {exc}"))
            continue
        if entry is not None:
            decls.append(Declaration(path=entry.path, text=entry.text, caps=entry.caps,
                                     source="rpm", package=name, version=version,
                                     origin=f"%caps of {name}"))
    return decls, problems, []


def _read_database(paths: SystemPaths, dbpath: str) -> tuple[
        list[tuple[str, str, str, str]], list[tuple[str, str, str, str]], list[Problem]]:
    """(path, capability text, package, version) of every %caps file on disk,
    and of every %caps on a %ghost file.

    %caps is an attribute of a file in the package's own header, so a package
    declares only for its files, except a %ghost one: listed and owned (rpm
    lets a %ghost name another package's file), never installed, and never
    given its %caps by rpm itself.
    """
    import rpm

    found: list[tuple[str, str, str, str]] = []
    refused: list[tuple[str, str, str, str]] = []
    try:
        headers = list(_transaction_set(paths, dbpath).dbMatch())
    except rpm.error as exc:
        return [], [], [Problem("rpm", paths.inside(dbpath),
                                f"cannot read the rpm database: {exc}")]
    for hdr in headers:
        caps = hdr[rpm.RPMTAG_FILECAPS]
        if not caps or not any(caps):
            continue
        name = _text(hdr[rpm.RPMTAG_NAME])
        version = _version(hdr)
        files = hdr[rpm.RPMTAG_FILENAMES]
        states = hdr[rpm.RPMTAG_FILESTATES] or [_STATE_NORMAL] * len(files)
        flags = hdr[rpm.RPMTAG_FILEFLAGS] or [0] * len(files)
        for path, text, state, flag in zip(files, caps, states, flags, strict=False):
            text = _text(text)
            if not text:
                continue
            if flag & _GHOST:
                refused.append((_text(path), text, name, version))
            elif state == _STATE_NORMAL:
                found.append((_text(path), text, name, version))
    return found, refused, []


def owner_of(paths: SystemPaths, path: str) -> tuple[str, str] | None:
    """The installed rpm that owns `path` (like rpm -qf), and its version."""
    dbpath, _ = _database(paths)
    if dbpath is None:
        return None
    import rpm

    try:
        for hdr in _transaction_set(paths, dbpath).dbMatch("basenames", path):
            return _text(hdr[rpm.RPMTAG_NAME]), _version(hdr)
    except rpm.error:
        return None
    return None


def owners(paths: SystemPaths, wanted: set[str]) -> dict[str, tuple[str, str]]:
    """For each wanted path an installed rpm owns: (package, version)."""
    out: dict[str, tuple[str, str]] = {}
    for path in wanted:
        owner = owner_of(paths, path)
        if owner is not None:
            out[path] = owner
    return out


def package_files(paths: SystemPaths, package: str) -> list[str] | None:
    dbpath, _ = _database(paths)
    if dbpath is None:
        return None
    import rpm

    try:
        for hdr in _transaction_set(paths, dbpath).dbMatch("name", package):
            return [_text(f) for f in hdr[rpm.RPMTAG_FILENAMES]]
    except rpm.error:
        return None
    return None


def package_version(paths: SystemPaths, package: str) -> str | None:
    dbpath, _ = _database(paths)
    if dbpath is None:
        return None
    import rpm

    try:
        for hdr in _transaction_set(paths, dbpath).dbMatch("name", package):
            return _version(hdr)
    except rpm.error:
        return None
    return None


def installed_versions(paths: SystemPaths) -> dict[str, str]:
    """Version of every installed rpm, by name."""
    dbpath, _ = _database(paths)
    if dbpath is None:
        return {}
    import rpm

    try:
        return {_text(h[rpm.RPMTAG_NAME]): _version(h)
                for h in _transaction_set(paths, dbpath).dbMatch()}
    except rpm.error:
        return {}
