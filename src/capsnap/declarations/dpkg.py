"""Declarations from dpkg's status database: the File-Capabilities field.

dpkg keeps unknown control fields of installed packages in its status file,
so a binary package's `File-Capabilities` (one entry per continuation line)
is there after installation.  The database is the status file plus the
journal in updates/ that dpkg has not yet folded into it (while a
maintainer script runs, the package being configured is only in the
journal), read with python-debian.  Only paragraphs that carry the field are
handed to it, and what they say is cached against the identity of those
files, because hooks run after every transaction and a status file of
thousands of packages takes longer to parse than the whole check.
"""

from __future__ import annotations

import json
import os
import re
import zlib

from capsnap.declarations import Declaration, Problem
from capsnap.declarations.entries import parse_lines
from capsnap.paths import SystemPaths

FIELD = "File-Capabilities"
_FIELD_RE = re.compile(r"^file-capabilities:", re.IGNORECASE | re.MULTILINE)
_PARAGRAPH_SPLIT = re.compile(r"\n[ \t]*\n")
# Package states whose files are on disk (dpkg(1) "Package states").
_ON_DISK = {"installed", "half-configured", "unpacked", "triggers-awaited",
            "triggers-pending"}
_CACHE_VERSION = 4
_JOURNAL_NAME = re.compile(r"^[0-9]+$")

# One package's field as read from the status file.
PackageField = dict[str, str]


def _status_key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _journal(paths: SystemPaths) -> list[str]:
    """dpkg's pending status updates, oldest first (updates/0000, 0001, ...)."""
    directory = os.path.join(paths.dpkg_admindir, "updates")
    try:
        names = sorted((n for n in os.listdir(directory) if _JOURNAL_NAME.match(n)), key=int)
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names]


def _database_key(paths: SystemPaths) -> list[int]:
    key: list[int] = []
    for path in [paths.dpkg_status, *_journal(paths)]:
        try:
            key.extend(_status_key(os.stat(path)))
        except OSError:
            key.append(-1)
    return key


def database_paragraphs(paths: SystemPaths) -> list[str]:
    """Every package paragraph, the journal's records replacing the status file's."""
    by_package: dict[tuple[str, str], str] = {}
    for path in [paths.dpkg_status, *_journal(paths)]:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            continue
        for para in _PARAGRAPH_SPLIT.split(text):
            package = _field(para, "Package")
            if package:
                by_package[(package, _field(para, "Architecture"))] = para
    return list(by_package.values())


def _parse_paragraphs(paragraphs: list[str]) -> list[PackageField]:
    from debian import deb822

    out: list[PackageField] = []
    for para in deb822.Deb822.iter_paragraphs("\n\n".join(paragraphs).splitlines(True),
                                              use_apt_pkg=False):
        out.append({
            "package": para.get("Package", ""),
            "version": para.get("Version", ""),
            "architecture": para.get("Architecture", ""),
            "status": para.get("Status", ""),
            "field": para.get(FIELD, ""),
            "auto_built": para.get("Auto-Built-Package", ""),
        })
    return out


def _digest(paragraph: str) -> str:
    # crc32 with the length and the package's name and version: hashlib's
    # import alone (OpenSSL) costs a hook more than the whole lookup.
    data = paragraph.encode("utf-8", "surrogateescape")
    return (f"{zlib.crc32(data):08x}-{len(data)}-{_field(paragraph, 'Package')}-"
            f"{_field(paragraph, 'Version')}")


def _cache_path(paths: SystemPaths) -> str:
    return os.path.join(paths.cache_dir, "dpkg-declarations.json")


def _load_cache(paths: SystemPaths) -> tuple[dict[str, PackageField], list[int], list[str]]:
    """Parsed paragraphs by digest (only paragraphs never seen need python-debian),
    the database key they were last read with, and the digests selected then."""
    try:
        with open(_cache_path(paths), encoding="utf-8") as f:
            st = os.fstat(f.fileno())
            # Only a cache that we (or root) wrote and nobody else can change.
            if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
                return {}, [], []
            data = json.load(f)
    except (OSError, ValueError):
        return {}, [], []
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION \
            or not isinstance(data.get("paragraphs"), dict):
        return {}, [], []
    parsed = {k: v for k, v in data["paragraphs"].items() if isinstance(v, dict)}
    return parsed, list(data.get("key", [])), list(data.get("selected", []))


def _store_cache(paths: SystemPaths, parsed: dict[str, PackageField], key: list[int],
                 selected: list[str]) -> None:
    # Best effort: an unprivileged run or a read-only root simply has no cache.
    try:
        os.makedirs(paths.cache_dir, exist_ok=True)
        import tempfile  # only when writing: it costs hooks start-up time

        fd, tmp = tempfile.mkstemp(dir=paths.cache_dir, prefix=".dpkg-declarations.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": _CACHE_VERSION, "key": key, "selected": selected,
                       "paragraphs": parsed}, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, _cache_path(paths))
    except OSError:
        pass


def packages_with_field(paths: SystemPaths) -> tuple[list[PackageField], list[Problem]]:
    """The packages whose paragraph carries the field, parsed by python-debian.

    Every dpkg run rewrites the status file, but rarely the paragraphs that
    declare capabilities: those are cached by the digest of their text, so
    a hook after an unrelated upgrade does not import python-debian at all.
    """
    if not os.path.exists(paths.dpkg_status):
        return [], []
    key = _database_key(paths)
    cache, cached_key, cached_selection = _load_cache(paths)
    if key == cached_key and all(d in cache for d in cached_selection):
        return [cache[d] for d in cached_selection], []  # the database did not change
    try:
        selected = [p for p in database_paragraphs(paths) if _FIELD_RE.search(p)]
    except OSError as exc:
        return [], [Problem("dpkg", paths.dpkg_status,
                            f"cannot read the dpkg status database: {exc.strerror}")]
    digests = [_digest(p) for p in selected]
    unseen = [p for p, d in zip(selected, digests, strict=True) if d not in cache]
    for paragraph, parsed in zip(unseen, _parse_paragraphs(unseen) if unseen else [],
                                 strict=True):
        cache[_digest(paragraph)] = parsed
    _store_cache(paths, {d: cache[d] for d in digests}, key, digests)
    return [cache[d] for d in digests], []


def diversions(paths: SystemPaths) -> dict[str, tuple[str, str]]:
    """dpkg-divert's table: diverted path -> (where it went, diverting package or ':')."""
    try:
        with open(os.path.join(paths.dpkg_admindir, "diversions"), encoding="utf-8",
                  errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    return {lines[i]: (lines[i + 1], lines[i + 2]) for i in range(0, len(lines) - 2, 3)}


def true_name(path: str, package: str, table: dict[str, tuple[str, str]]) -> str:
    """Where `package`'s file for `path` really is (dpkg-divert --truename for it).

    A diversion by another package (or a local one, ':') sends every other
    package's file to the diverted name; the diverting package keeps the path.
    """
    diverted = table.get(path)
    if diverted is None or diverted[1] == package.split(":", 1)[0]:
        return path
    return diverted[0]


def read(paths: SystemPaths, known_bits: int) \
        -> tuple[list[Declaration], list[Problem], list[str]]:
    packages, problems = packages_with_field(paths)
    diverted = diversions(paths)
    notes = []
    if not os.path.exists(paths.dpkg_status):
        notes.append(f"dpkg: no status database at {paths.dpkg_status}")
    decls: list[Declaration] = []
    names_seen = [p["package"] for p in packages]
    for pkg in packages:
        state = pkg["status"].split()[-1] if pkg["status"].split() else ""
        if state not in _ON_DISK:
            continue
        if pkg.get("auto_built") == "debug-symbols":
            # dh_gencontrol gives a -dbgsym package its parent's fields; it does
            # not ship the parent's files.
            continue
        name = pkg["package"]
        if names_seen.count(name) > 1:
            # A Multi-Arch: same package, installed for several architectures.
            name = f"{name}:{pkg['architecture']}"
        lines = [ln for ln in pkg["field"].splitlines() if ln.strip() not in ("", ".")]
        entries, bad = parse_lines(lines, known_bits)
        for _, text, reason in bad:
            problems.append(Problem("dpkg", f"package {name} {pkg['version']}",
                                    f"{FIELD} entry {text!r}: {reason}"))
        for entry in entries:
            decls.append(Declaration(
                path=true_name(entry.path, name, diverted), text=entry.text, caps=entry.caps,
                source="dpkg",
                package=name, version=pkg["version"], origin=f"{FIELD} of {name}",
                fallback=entry.fallback))
    return decls, problems, notes


def owner_of(paths: SystemPaths, path: str) -> tuple[str, str] | None:
    """The installed package that ships `path` (like dpkg -S), and its version."""
    return owners(paths, {path}).get(path)


# On merged-/usr systems a package may list /bin/x while the walk finds
# /usr/bin/x (and the other way round): dpkg matches paths as text.
_ALIASES = (("/bin/", "/usr/bin/"), ("/sbin/", "/usr/sbin/"), ("/lib/", "/usr/lib/"),
            ("/lib64/", "/usr/lib64/"), ("/lib32/", "/usr/lib32/"))


def path_aliases(path: str) -> list[str]:
    out = [path]
    for short, long in _ALIASES:
        if path.startswith(short):
            out.append(long + path[len(short):])
        elif path.startswith(long):
            out.append(short + path[len(long):])
    return out


def _field(paragraph: str, name: str) -> str:
    """One simple field of a paragraph (str.find: hooks read every paragraph)."""
    start = 0 if paragraph.startswith(name + ":") else paragraph.find("\n" + name + ":") + 1
    if start == 0 and not paragraph.startswith(name + ":"):
        return ""
    end = paragraph.find("\n", start)
    return paragraph[start + len(name) + 1:end if end >= 0 else None].strip()


def installed_versions(paths: SystemPaths) -> dict[str, str]:
    """Version of every package whose files are on disk, by name (and name:arch)."""
    out: dict[str, str] = {}
    try:
        paragraphs = database_paragraphs(paths)
    except OSError:
        return out
    for para in paragraphs:
        status = _field(para, "Status").split()
        if not status or status[-1] not in _ON_DISK:
            continue
        name, version = _field(para, "Package"), _field(para, "Version")
        if not name:
            continue
        out.setdefault(name, version)
        arch = _field(para, "Architecture")
        if arch:
            out[f"{name}:{arch}"] = version
    return out


def package_files(paths: SystemPaths, package: str) -> list[str] | None:
    """The files dpkg lists for an installed package, or None if it has none."""
    bare = package.split(":", 1)[0]
    for name in (f"{package}.list", f"{bare}.list"):
        try:
            with open(os.path.join(paths.dpkg_info, name), encoding="utf-8",
                      errors="surrogateescape") as f:
                return [line.rstrip("\n") for line in f if line.strip()]
        except FileNotFoundError:
            continue
        except OSError:
            return None
    try:
        multiarch = [n for n in os.listdir(paths.dpkg_info)
                     if n.startswith(bare + ":") and n.endswith(".list")]
    except OSError:
        return None
    files: list[str] = []
    for name in multiarch:
        with open(os.path.join(paths.dpkg_info, name), encoding="utf-8",
                  errors="surrogateescape") as f:
            files.extend(line.rstrip("\n") for line in f if line.strip())
    return files or None


def owners(paths: SystemPaths, wanted: set[str]) -> dict[str, tuple[str, str]]:
    """For each wanted path that an installed package ships: (package, version)."""
    if not wanted:
        return {}
    lookup: dict[str, str] = {}
    for path in wanted:
        for alias in path_aliases(path):
            lookup.setdefault(alias + "\n", path)
    try:
        names = sorted(n for n in os.listdir(paths.dpkg_info) if n.endswith(".list"))
    except OSError:
        return {}
    found: dict[str, str] = {}
    for name in names:
        try:
            with open(os.path.join(paths.dpkg_info, name), encoding="utf-8",
                      errors="surrogateescape") as f:
                for line in f:
                    hit = lookup.get(line)
                    if hit is not None and hit not in found:
                        found[hit] = name[:-len(".list")]
        except OSError:
            continue
        if len(found) == len(wanted):
            break
    if not found:
        return {}
    versions = installed_versions(paths)
    return {path: (pkg, versions.get(pkg, versions.get(pkg.split(":")[0], "")))
            for path, pkg in found.items()}
