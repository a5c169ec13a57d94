# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
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

import os
import stat
import zlib
from collections.abc import Iterable, Iterator

from capsnap import cache, captext, confine
from capsnap.declarations import Declaration, Problem, canonical_in
from capsnap.declarations.entries import BadLine, Entry, Fallback, escape_path, parse_lines
from capsnap.errors import CapsnapError
from capsnap.paths import SystemPaths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FIELD = "File-Capabilities"
_FIELD_START = FIELD.lower().encode("ascii") + b":"  # field names ignore case
# Package states whose files are on disk (dpkg(1) "Package states").
_ON_DISK = {"installed", "half-configured", "unpacked", "triggers-awaited",
            "triggers-pending"}

# One package's field as read from the status file.
PackageField = dict[str, str]


def _journal(paths: SystemPaths) -> list[str]:
    """dpkg's pending status updates, oldest first (updates/0000, 0001, ...)."""
    directory = os.path.join(paths.dpkg_admindir, "updates")
    try:
        names = sorted((n for n in confine.listdir(paths, directory)
                        if n.isascii() and n.isdigit()), key=int)
    except (OSError, CapsnapError):
        return []
    return [os.path.join(directory, n) for n in names]


def _database_key(paths: SystemPaths) -> list[int]:
    return cache.file_key(paths, [paths.dpkg_status, *_journal(paths)])


def database_paragraphs(paths: SystemPaths) -> list[str]:
    """Every package paragraph, the journal's records replacing the status file's."""
    import re  # not at the top: a hook's usual path has no need of it

    by_package: dict[tuple[str, str], str] = {}
    for path in [paths.dpkg_status, *_journal(paths)]:
        try:
            text = _read_status(paths, path)
        except FileNotFoundError:
            continue
        for para in re.split(r"\n[ \t]*\n", text):
            package = _field(para, "Package")
            if package:
                by_package[(package, _field(para, "Architecture"))] = para
    return list(by_package.values())


# What python-debian's deb822 imports but never uses to parse UTF-8 text
# with its own parser: chardet (guessing the encoding of text that is not
# UTF-8; such a paragraph is refused before it gets there), email.utils
# (dates in .changes files), debian.changelog (a source package's
# changelog) and subprocess (gpg).  Their imports are over half of deb822's,
# which is most of a first run's time; they happen on first use instead.
_DEFERRED = ("chardet", "email.utils", "debian.changelog", "subprocess")


def _deferred(name: str) -> Any:
    """A stand-in for module `name` that imports it on first use of one of
    its attributes (importlib's LazyLoader does not help: the import
    statement itself looks at the module's __spec__, which loads it)."""
    import sys
    import types

    class Deferred(types.ModuleType):
        def __getattr__(self, attribute: str) -> object:
            if sys.modules.get(name) is self:
                del sys.modules[name]
            __import__(name)
            return getattr(sys.modules[name], attribute)

    return Deferred(name)


def _deb822() -> Any:
    """python-debian's deb822, imported without what parsing status
    paragraphs does not need."""
    import sys

    loaded = sys.modules.get("debian.deb822")
    if loaded is not None:
        return loaded
    standing_in = {}
    for name in _DEFERRED:
        if name not in sys.modules:
            standing_in[name] = sys.modules[name] = _deferred(name)
            parent, _, child = name.rpartition(".")
            if parent:
                # What `import email.utils` leaves for `email.utils.X` to work.
                __import__(parent)
                setattr(sys.modules[parent], child, standing_in[name])
    # apt_pkg (python3-apt) serves deb822's use_apt_pkg=True and
    # debian_support's version comparison, neither used here, and its
    # import reads apt's whole configuration (apt_pkg.init): hidden while
    # deb822 is imported, both take their documented paths without it.
    hide_apt = "apt_pkg" not in sys.modules
    if hide_apt:
        sys.modules["apt_pkg"] = None  # type: ignore[assignment]
    try:
        from debian import deb822
    finally:
        if hide_apt and sys.modules.get("apt_pkg", 0) is None:
            del sys.modules["apt_pkg"]
        # deb822 keeps its stand-ins; anyone else importing them later
        # gets the real modules.
        for name, module in standing_in.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return deb822


def _parse_paragraphs(paragraphs: list[str]) -> list[PackageField]:
    deb822 = _deb822()

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


_read: dict[str, tuple[list[int], bytes]] = {}


def _status_bytes(paths: SystemPaths, path: str) -> bytes:
    """A status file's content, read once per process while it is unchanged
    (a hook looks at it for versions, declarations and owners)."""
    with os.fdopen(confine.open_file(paths, path), "rb") as f:
        key = cache.identity(os.fstat(f.fileno()))
        known = _read.get(path)
        if known is not None and known[0] == key:
            return known[1]
        data = f.read()
    _read[path] = (key, data)
    return data


_decoded: dict[str, tuple[bytes, str]] = {}


def _read_status(paths: SystemPaths, path: str) -> str:
    """The same as text, decoded once while it is unchanged (a hook asks for
    the version of each of a hundred packages)."""
    data = _status_bytes(paths, path)
    known = _decoded.get(path)
    if known is not None and known[0] is data:
        return known[1]
    text = data.decode("utf-8", "surrogateescape")
    _decoded[path] = (data, text)
    return text


def _has_field(paragraph: str) -> bool:
    lowered = paragraph.lower().encode("utf-8", "surrogateescape")
    return lowered.startswith(_FIELD_START) or b"\n" + _FIELD_START in lowered


def _paragraphs_with_field(paths: SystemPaths) -> list[str]:
    """The paragraphs that carry the field, in database order.

    Without a journal (dpkg folds it in when a run ends) only the paragraphs
    around each match are cut out of the status file; a hook need not split
    a thousand paragraphs to find the few that declare something.
    """
    if _journal(paths):
        return [p for p in database_paragraphs(paths) if _has_field(p)]
    data = _status_bytes(paths, paths.dpkg_status)
    out = []
    end = 0
    for at in _field_lines(data):
        if at < end:
            continue  # the field twice in one paragraph: cut out once
        previous = data.rfind(b"\n\n", 0, at + 1) if at else -1
        start = previous + 2 if previous >= 0 else 0
        end = data.find(b"\n\n", at)
        end = len(data) if end < 0 else end
        out.append(data[start:end].strip(b"\n").decode("utf-8", "surrogateescape"))
    return out


def _field_lines(data: bytes) -> list[int]:
    """Where the lines that name the field begin (the newline before each;
    0 for the first line), ascending.  Its name in any case: found by the
    lines that begin with its first letter, which in a status file are few,
    rather than by lowering a megabyte first."""
    size = len(_FIELD_START)
    out = [0] if data[:size].lower() == _FIELD_START else []
    for needle in (b"\n" + _FIELD_START[:1].upper(), b"\n" + _FIELD_START[:1]):
        at = data.find(needle)
        while at >= 0:
            if data[at + 1:at + 1 + size].lower() == _FIELD_START:
                out.append(at)
            at = data.find(needle, at + 1)
    return sorted(out)


def packages_with_field(paths: SystemPaths) -> tuple[list[PackageField], list[Problem]]:
    """The packages whose paragraph carries the field, parsed by python-debian.

    Every dpkg run rewrites the status file, but rarely the paragraphs that
    declare capabilities: those are cached by the digest of their text, so
    a hook after an unrelated upgrade does not import python-debian at all.
    """
    if not confine.exists(paths, paths.dpkg_status):
        return [], []
    key = _database_key(paths)
    cached = cache.load(paths, "dpkg-declarations")
    parsed = cached.get("paragraphs")
    known: dict[str, PackageField] = parsed if isinstance(parsed, dict) else {}
    selection = cached.get("selected")
    if cached.get("key") == key and isinstance(selection, list) \
            and all(d in known for d in selection):
        return [known[d] for d in selection], []  # the database did not change
    try:
        selected = _paragraphs_with_field(paths)
    except OSError as exc:
        return [], [Problem("dpkg", paths.dpkg_status,
                            f"cannot read the dpkg status database: {exc.strerror}")]
    digests = [_digest(p) for p in selected]
    problems: list[Problem] = []
    unreadable: set[str] = set()
    for paragraph, digest in zip(selected, digests, strict=True):
        if digest in known or digest in unreadable:
            continue
        # One package's bad paragraph must cost only its own declarations.
        why = _unparsable(paragraph)
        if why is None:
            try:
                (known[digest],) = _parse_paragraphs([paragraph])
                continue
            except Exception as exc:  # python-debian's own errors are not one family
                why = f"python-debian cannot parse it ({type(exc).__name__})"
        unreadable.add(digest)
        # Not "package ...": what the package declares is unknown, not
        # withdrawn, so nothing is taken back for it (Catalogue.unread).
        problems.append(Problem("dpkg", f"dpkg status, package "
                                f"{_field(paragraph, 'Package') or '?'}",
                                f"its {FIELD} field is skipped: {why}"))
    readable = [d for d in digests if d not in unreadable]
    if not unreadable:
        cache.save(paths, "dpkg-declarations",
                   {"key": key, "selected": digests, "paragraphs": {d: known[d] for d in digests}})
    return [known[d] for d in readable], problems


def _unparsable(paragraph: str) -> str | None:
    """Why a paragraph cannot be read as dpkg writes control data, if it cannot."""
    try:
        paragraph.encode("utf-8")
    except UnicodeEncodeError:
        return ("it is not UTF-8 text (write a byte of a path that is not UTF-8 as a "
                "three-digit octal escape)")
    return None


def diversions(paths: SystemPaths) -> dict[str, tuple[str, str]]:
    """dpkg-divert's table: diverted path -> (where it went, diverting package or ':')."""
    try:
        lines = confine.read_bytes(paths, os.path.join(paths.dpkg_admindir, "diversions")) \
            .decode("utf-8", "surrogateescape").splitlines()
    except (OSError, CapsnapError):
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


def _list_file(info: int, package: str, arch: str) -> tuple[str, list[int]] | None:
    """The file list dpkg keeps for an installed package (a name in the pinned
    info directory), and its identity: PKG:ARCH.list for a Multi-Arch: same
    package (even with one architecture installed), PKG.list for any other
    (dpkg's pkgbin_name with pnaw_same)."""
    for name in ([f"{package}:{arch}.list"] if arch else []) + [f"{package}.list"]:
        try:
            st = os.stat(name, dir_fd=info, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            return name, cache.identity(st)
    return None


def _listed_spellings(data: bytes, wanted: list[str]) -> dict[str, str]:
    """For each wanted path that a file list names, as itself or as a
    merged-/usr alias: the spelling listed (itself when both are)."""
    lookup: dict[bytes, list[str]] = {}
    for path in wanted:
        for alias in path_aliases(path):
            lookup.setdefault(alias.encode("utf-8", "surrogateescape"), []).append(path)
    found: dict[str, str] = {}
    for line in data.split(b"\n"):
        for path in lookup.get(line, ()):
            if found.get(path) != path:
                found[path] = line.decode("utf-8", "surrogateescape")
    return found


def shipped(paths: SystemPaths, wanted: dict[tuple[str, str], list[str]]) \
        -> dict[tuple[str, str], dict[str, str] | None]:
    """For each (package, architecture): which of its wanted paths its file
    list names, and how (see _listed_spellings); None when it has no list.

    Hooks run after every dpkg run: only the lists of declaring packages are
    read, and what they name is cached against each list's identity, so a
    package of thousands of files is read again only when dpkg rewrites it.
    """
    if not wanted:
        return {}
    cached = cache.load(paths, "dpkg-lists")
    known = cached.get("lists")
    before: dict[str, object] = known if isinstance(known, dict) else {}
    after: dict[str, object] = {}
    out: dict[tuple[str, str], dict[str, str] | None] = dict.fromkeys(wanted)
    try:
        with confine.directory(paths, paths.dpkg_info) as info:
            for (package, arch), paths_wanted in wanted.items():
                found_list = _list_file(info, package, arch)
                if found_list is None:
                    continue
                name, key = found_list
                asked = sorted(set(paths_wanted))
                hit = before.get(name)
                if isinstance(hit, list) and len(hit) == 3 and hit[0] == key \
                        and hit[1] == asked and isinstance(hit[2], dict):
                    found: dict[str, str] = hit[2]
                else:
                    try:
                        found = _listed_spellings(confine.read_in(info, name), asked)
                    except OSError:
                        continue
                after[name] = [key, asked, found]
                out[(package, arch)] = found
    except (OSError, CapsnapError):
        pass  # no info directory: no package has a list
    if after != before:
        cache.save(paths, "dpkg-lists", {"lists": after})
    return out


_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+-.")


def _valid_name(name: str) -> bool:
    """dpkg's rule for package (and architecture) names: lowercase letters,
    digits, '+', '-' and '.', starting with a letter or digit."""
    return bool(name) and name[0].isalnum() and set(name) <= _NAME_CHARACTERS


def _shown(path: str) -> str:
    """A path as the declaration syntax writes it: control characters and
    bytes that are not UTF-8 (a lone 0x9b is a terminal's CSI) as octal
    escapes, so a declaration's text never reaches a terminal or a log raw."""
    return escape_path(path)


def _parsed_fields(paths: SystemPaths, fields: list[str], known_bits: int) \
        -> dict[str, tuple[list[Entry], list[BadLine]]]:
    """The entries of each field's text, and its bad lines.

    Kept in the cache by text: parsing capability text is most of what a
    check does with declarations it has seen before.  Keyed on the kernel's
    capabilities too ("all" depends on them) and on capsnap's version (a
    new one may read the syntax differently).
    """
    from capsnap import __version__

    cached = cache.load(paths, "dpkg-entries")
    stored = cached.get("fields") if cached.get("of") == [known_bits, __version__] else None
    before: dict[str, object] = stored if isinstance(stored, dict) else {}
    after: dict[str, object] = {}
    out: dict[str, tuple[list[Entry], list[BadLine]]] = {}
    for field in fields:
        if field in out:
            continue
        frozen = before.get(field)
        try:
            out[field] = _thawed(frozen)
        except (TypeError, ValueError):  # absent or not what _frozen writes
            lines = [ln for ln in field.splitlines() if ln.strip() not in ("", ".")]
            out[field] = parse_lines(lines, known_bits)
            frozen = _frozen(*out[field])
        after[field] = frozen
    if after != before:
        cache.save(paths, "dpkg-entries", {"of": [known_bits, __version__], "fields": after})
    return out


def _frozen(entries: list[Entry], bad: list[BadLine]) -> list[object]:
    """Parsed entries as marshal stores them (plain tuples)."""
    return [[(e.path, e.text, tuple(e.caps), tuple(e.fallback) if e.fallback else None,
              e.owner, e.comment, e.line, e.forced) for e in entries],
            [tuple(b) for b in bad]]


def _thawed(frozen: object) -> tuple[list[Entry], list[BadLine]]:
    """What _frozen stored; TypeError or ValueError when it is not that."""
    if not isinstance(frozen, list) or len(frozen) != 2:
        raise TypeError("not a frozen field")
    entries = []
    for path, text, caps, fallback, owner, comment, number, forced in frozen[0]:
        if not all(isinstance(x, int) for x in caps) or not isinstance(path, str) or \
                not isinstance(text, str):
            raise TypeError("not a frozen entry")
        entries.append(Entry(path, text, captext.CapSet(*caps),
                             Fallback(*fallback) if fallback else None,
                             owner, comment, number, forced))
    return entries, [BadLine(*b) for b in frozen[1]]


def read(paths: SystemPaths, known_bits: int) \
        -> tuple[list[Declaration], list[Problem], list[str]]:
    """Every declaration of an installed package for a file it ships.

    A package may only declare capabilities for its own files, those in its
    file list (as a merged-/usr alias too, when both spellings are one
    file here): any other entry is reported and never applied, so a
    package cannot hand another package's program (or the dynamic loader)
    a capability.  A local declaration can.
    """
    packages, problems = packages_with_field(paths)
    diverted = diversions(paths)
    notes = []
    if not confine.exists(paths, paths.dpkg_status):
        notes.append(f"dpkg: no status database at {paths.dpkg_status}")
    decls: list[Declaration] = []
    names_seen = [p["package"] for p in packages]
    parsed: list[tuple[PackageField, str, list[Entry]]] = []
    named: list[tuple[PackageField, str]] = []
    for pkg in packages:
        state = pkg["status"].split()[-1] if pkg["status"].split() else ""
        if state not in _ON_DISK:
            continue
        if pkg.get("auto_built") == "debug-symbols":
            # dh_gencontrol gives a -dbgsym package its parent's fields; it does
            # not ship the parent's files.
            continue
        name = pkg["package"]
        if not _valid_name(name) or not _valid_name(pkg["architecture"] or "all"):
            # Not what dpkg writes: a damaged status file; its files' lists
            # cannot be named either.
            problems.append(Problem("dpkg", "dpkg status", f"a package named "
                                    f"{_shown(name)!s} is not a valid dpkg package; skipped"))
            continue
        if names_seen.count(name) > 1:
            # A Multi-Arch: same package, installed for several architectures.
            name = f"{name}:{pkg['architecture']}"
        named.append((pkg, name))
    fields = _parsed_fields(paths, [pkg["field"] for pkg, _ in named], known_bits)
    for pkg, name in named:
        entries, bad = fields[pkg["field"]]
        for line in bad:  # by number, never quoted: its text reaches logs and terminals
            problems.append(Problem("dpkg", f"package {name} {pkg['version']}",
                                    f"{FIELD} entry {line.number}: {line.reason}"))
        parsed.append((pkg, name, entries))
    lists = shipped(paths, {(pkg["package"], pkg["architecture"]): [e.path for e in entries]
                            for pkg, _, entries in parsed if entries})
    canonical = None
    for pkg, name, entries in parsed:
        listed = lists.get((pkg["package"], pkg["architecture"])) if entries else {}
        for entry in entries:
            spelling = listed.get(entry.path) if listed is not None else None
            if spelling is not None and spelling != entry.path:
                # /bin/x for /usr/bin/x counts only where both name one file.
                canonical = canonical or canonical_in(paths)
                if canonical(spelling) != canonical(entry.path):
                    spelling = None
            if spelling is None:
                why = "the package does not ship that file (only a local declaration " \
                    "can give another package's file capabilities)"
                if listed is None:
                    why = "its file list cannot be read"
                    # What it declares is unknown, not withdrawn (Catalogue.unread).
                    note = f"dpkg: the file list of {name} cannot be read"
                    if note not in notes:
                        notes.append(note)
                problems.append(Problem(
                    "dpkg", f"package {name} {pkg['version']}",
                    f"{FIELD} entry {_shown(entry.path)} refused: {why}"))
                continue
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
    try:
        return _versions_of(database_paragraphs(paths))
    except OSError:
        return {}


def _versions_of(paragraphs: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for para in paragraphs:
        status = _field(para, "Status").split()
        name = _field(para, "Package")
        if not name or not status or status[-1] not in _ON_DISK:
            continue
        out.setdefault(name, _field(para, "Version"))
        arch = _field(para, "Architecture")
        if arch:
            out[f"{name}:{arch}"] = _field(para, "Version")
    return out


def changed_versions(paths: SystemPaths, before_status: str) \
        -> tuple[dict[str, str], dict[str, str]]:
    """Versions that differ between a copy of an earlier status file and now:
    (before, after) by name and name:arch, absent where not installed.

    Only paragraphs whose text changed are looked at: a dpkg run rewrites the
    whole status file but changes a few packages in it.
    """
    old = {p.strip(b"\n") for p in _status_bytes(paths, before_status).split(b"\n\n")}
    if _journal(paths):
        new = {p.strip("\n").encode("utf-8", "surrogateescape")
               for p in database_paragraphs(paths)}
    else:
        new = {p.strip(b"\n") for p in _status_bytes(paths, paths.dpkg_status).split(b"\n\n")}

    # A package installed for several architectures is one name: the
    # paragraphs of its other architectures, unchanged, go on both sides.
    names = {_package_of(p) for p in old ^ new}
    same = {p for p in old & new if _package_of(p) in names}

    def decoded(paragraphs: set[bytes]) -> list[str]:
        return [p.decode("utf-8", "surrogateescape") for p in paragraphs]

    return _versions_of(decoded(old - new | same)), _versions_of(decoded(new - old | same))


def _package_of(paragraph: bytes) -> bytes:
    """The Package field (dpkg writes it first; elsewhere, looked for)."""
    start = 0 if paragraph.startswith(b"Package:") else paragraph.find(b"\nPackage:") + 1
    if start == 0 and not paragraph.startswith(b"Package:"):
        return b""
    end = paragraph.find(b"\n", start)
    return paragraph[start + 8:end if end >= 0 else None].strip()


def in_database(paths: SystemPaths, package: str) -> bool:
    """Whether dpkg still knows the package at all (removed with its
    configuration files left counts; purged does not)."""
    name = package.split(":", 1)[0]
    try:
        text = _read_status(paths, paths.dpkg_status) if not _journal(paths) else \
            "\n\n".join(database_paragraphs(paths))
    except (OSError, CapsnapError):
        return True  # unknown: keep what capsnap remembers of it
    needle = f"Package: {name}\n"
    return text.startswith(needle) or f"\n{needle}" in text


def package_version(paths: SystemPaths, package: str) -> str | None:
    """The installed version of one package (name or name:arch), found without
    splitting the whole status file."""
    name, _, arch = package.partition(":")
    try:
        text = _read_status(paths, paths.dpkg_status) if not _journal(paths) else \
            "\n\n".join(database_paragraphs(paths))
    except OSError:
        return None
    start = 0
    needle = f"Package: {name}\n"
    while True:
        at = text.find(needle, start)
        if at < 0:
            return None
        start = at + len(needle)
        if at and text[at - 1] != "\n":
            continue
        end = text.find("\n\n", at)
        paragraph = text[at:end if end >= 0 else None]
        versions = _versions_of([paragraph])
        if package in versions:
            return versions[package]
        if not arch and name in versions:
            return versions[name]


def _lines(data: bytes) -> list[str]:
    return [line for line in data.decode("utf-8", "surrogateescape").split("\n") if line.strip()]


_listed: dict[tuple[int, int, int], list[str]] = {}


def _list_names(info: int) -> list[str]:
    """The names in dpkg's info directory (thousands), listed once per
    process while it is unchanged: a hook looks for the list of each
    Multi-Arch: same package it snapshots."""
    st = os.fstat(info)
    key = (st.st_dev, st.st_ino, st.st_mtime_ns)
    names = _listed.get(key)
    if names is None:
        names = _listed[key] = os.listdir(info)
    return names


def package_files(paths: SystemPaths, package: str) -> list[str] | None:
    """The files dpkg lists for an installed package, or None if it has none."""
    bare = package.split(":", 1)[0]
    try:
        with confine.directory(paths, paths.dpkg_info) as info:
            for name in (f"{package}.list", f"{bare}.list"):
                try:
                    return _lines(confine.read_in(info, name))
                except FileNotFoundError:
                    continue
            multiarch = [n for n in _list_names(info)
                         if n.startswith(bare + ":") and n.endswith(".list")]
            files: list[str] = []
            for name in multiarch:
                files.extend(_lines(confine.read_in(info, name)))
    except (OSError, CapsnapError):
        return None
    return files or None


def _list_lines(data: bytes, chunk: int = 1 << 16) -> Iterator[str]:
    """The lines of a file list, newlines kept, decoded a slice at a time:
    a line object for each of a large package's files at once held 15 MiB."""
    start = 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + chunk) + 1 if start + chunk < len(data) \
            else len(data)
        if end <= start:  # one line longer than a chunk
            end = data.find(b"\n", start) + 1 or len(data)
        yield from data[start:end].decode("utf-8", "surrogateescape").splitlines(keepends=True)
        start = end


# Up to this many names (paths and their aliases), owners() searches each
# list's bytes for each; beyond, a dict of every line is cheaper.
_SEARCHED = 16


def owners(paths: SystemPaths, wanted: set[str]) -> dict[str, tuple[str, str]]:
    """For each wanted path that an installed package ships: (package, version)."""
    if not wanted:
        return {}
    lookup: dict[str, str] = {}
    for path in wanted:
        for alias in path_aliases(path):
            lookup.setdefault(alias + "\n", path)
    # A few paths (a walk's files with capabilities) are searched for in each
    # list's bytes: a line per object for every file of every package took a
    # walk's snapshot 50 ms and 15 MiB here (one package lists 50,000 files).
    needles = [(b"\n" + os.fsencode(line), path) for line, path in lookup.items()] \
        if len(lookup) <= _SEARCHED else None
    found: dict[str, str] = {}
    try:
        with confine.directory(paths, paths.dpkg_info) as info:
            lists = sorted(n for n in os.listdir(info) if n.endswith(".list"))
            for name in lists:
                try:
                    data = confine.read_in(info, name)
                except OSError:
                    continue
                if needles is not None:
                    for needle, owned in needles:
                        if owned not in found and (needle in data or
                                                   data.startswith(needle[1:])):
                            found[owned] = name[:-len(".list")]
                else:
                    for text in _list_lines(data):
                        hit = lookup.get(text)
                        if hit is not None and hit not in found:
                            found[hit] = name[:-len(".list")]
                if len(found) == len(wanted):
                    break
    except (OSError, CapsnapError):
        return {}
    if not found:
        return {}
    # dpkg names the list of a Multi-Arch: same package name:arch: the bare
    # name, as apt and the status file give it, unless two architectures
    # are installed (then the declarations name them name:arch too).
    architectures: dict[str, int] = {}
    for name in lists:
        bare = name[:-len(".list")].split(":", 1)[0]
        architectures[bare] = architectures.get(bare, 0) + 1
    found = {path: pkg.split(":", 1)[0] if architectures.get(pkg.split(":", 1)[0]) == 1
             else pkg for path, pkg in found.items()}
    if len(set(found.values())) == 1:  # the usual case: spare a split of the database
        pkg = next(iter(found.values()))
        return {path: (pkg, package_version(paths, pkg) or "") for path in found}
    versions = installed_versions(paths)
    return {path: (pkg, versions.get(pkg, versions.get(pkg.split(":")[0], "")))
            for path, pkg in found.items()}
