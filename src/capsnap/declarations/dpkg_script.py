"""Declarations from what installed packages' maintainer scripts set (dpkg-script).

No Debian package declares `File-Capabilities` yet; many call setcap from
their postinst.  The installed postinst of each package (dpkg's
info/PKG.postinst, info/PKG:ARCH.postinst) is read with
declarations.scripts, and each call is matched against the package's own
file list: a script is credited only with its own package's files.

What a script says is what it may do, not what it did: a debconf answer
(wireshark-common's install-setuid) or a failing setcap skips the call.  So
such a declaration is enforced only once confirmed: seen on disk, exactly,
while the package is configured.  The confirmation names the file (device,
inode); a configured package whose file is another inode (dpkg replaced it,
then the package's configure ran) without the capability withdraws it, so
capsnap never grants more than the package itself did.  A file that merely
lost its capability (same inode, or the package not yet configured, as after
`dpkg --unpack`) has drifted, and is restored.

What a script sets where the reader cannot see it, the hooks learn from
the configure runs themselves (declarations.observed); those records are
read here too, under the same source name.

The parse is cached against the identity of the info directory, the scripts
and the lists, so a hook pays for a few stat calls.
"""

from __future__ import annotations

import os

from capsnap import cache, captext, confine, xattr
from capsnap.declarations import Declaration, Problem
from capsnap.errors import CapsnapError
from capsnap.paths import SystemPaths

SOURCE = "dpkg-script"
SCRIPTS = ("postinst",)  # preinst runs before the files exist; the rm scripts take away
_CONFIGURED = {"installed", "triggers-pending", "triggers-awaited"}
_STATE = "script-capabilities"
_FORMAT = 1


def _scan(paths: SystemPaths) -> dict[str, list[list[object]]]:
    """Per package (as dpkg names its info files): [caps, path, line] of each
    call its postinst makes on a file of its own list (cached)."""
    # Two caches: what a hook needs (the directory's identity, the scripts
    # that set something), and every script's identity, read only when
    # dpkg changed the directory.
    cached = cache.load(paths, SOURCE)
    try:
        with confine.directory(paths, paths.dpkg_info) as info:
            top = cache.identity(os.fstat(info))
            setting = cached.get("setting")
            if cached.get("info") == top and isinstance(cached.get("found"), dict) and \
                    isinstance(setting, dict) and _unchanged(info, setting):
                found: dict[str, list[list[object]]] = cached["found"]  # type: ignore[assignment]
                return found
            old = cache.load(paths, f"{SOURCE}-all").get("scripts")
            before: dict[str, object] = old if isinstance(old, dict) else {}
            scripts: dict[str, object] = {}
            found = {}
            suffixes = tuple(f".{kind}" for kind in SCRIPTS)
            # Thousands of names, a few hundred scripts: only these are sorted.
            for name in sorted(n for n in os.listdir(info) if n.endswith(suffixes)):
                stem = name[:name.rindex(".")]
                try:
                    st = os.stat(name, dir_fd=info, follow_symlinks=False)
                    list_st = os.stat(f"{stem}.list", dir_fd=info, follow_symlinks=False)
                except OSError:
                    continue
                key = [cache.identity(st), cache.identity(list_st)]
                hit = before.get(name)
                if isinstance(hit, list) and len(hit) == 2 and hit[0] == key:
                    calls = hit[1]
                else:
                    calls = _calls_of(info, name, stem)
                scripts[name] = [key, calls]
                if calls:
                    found.setdefault(stem, []).extend(calls)
    except (OSError, CapsnapError):
        return {}
    cache.save(paths, f"{SOURCE}-all", {"scripts": scripts})
    cache.save(paths, SOURCE, {"info": top, "found": found, "setting": {
        name: entry for name, entry in scripts.items()
        if isinstance(entry, list) and entry[1]}})
    return found


def _unchanged(info: int, scripts: dict[str, object]) -> bool:
    """Whether the scripts that set something, and their lists, are as cached.

    dpkg puts every script and list in place by rename, which changes the
    directory too; the few that matter are looked at anyway, for an edit in
    place.
    """
    for name, entry in scripts.items():
        if not (isinstance(entry, list) and len(entry) == 2):
            return False
        stem = name.rpartition(".")[0]
        try:
            key = [cache.identity(os.stat(n, dir_fd=info, follow_symlinks=False))
                   for n in (name, f"{stem}.list")]
        except OSError:
            return False
        if key != entry[0]:
            return False
    return True


def _calls_of(info: int, name: str, stem: str) -> list[list[object]]:
    from capsnap.declarations import scripts
    from capsnap.declarations.dpkg import path_aliases
    try:
        data = confine.read_in(info, name)
    except OSError:
        return []
    if b"setcap" not in data:
        return []
    try:
        listed = confine.read_in(info, f"{stem}.list").decode("utf-8", "surrogateescape")
    except OSError:
        return []
    files = [line for line in listed.split("\n") if line.startswith("/")]
    shipped = set(files)
    out: list[list[object]] = []
    for call in scripts.calls(data.decode("utf-8", "surrogateescape")):
        if call.exact:
            # /bin/ping in the script and /usr/bin/ping in the list (or the
            # other way round) are one file on merged /usr.
            hits = [p for p in path_aliases(call.path) if p in shipped][:1]
        else:
            hits = scripts.matching(call.path, files)
        for path in hits:
            entry: list[object] = [call.caps, path, call.line]
            if entry not in out:
                out.append(entry)
    return out


def _status(paths: SystemPaths, names: set[str]) -> dict[str, tuple[str, str]]:
    """(state, version) of the packages named as dpkg names their info files."""
    from capsnap.declarations import dpkg

    # Splitting the status file is most of the cost: kept against its identity.
    key = [dpkg._database_key(paths), sorted(names)]
    cached = cache.load(paths, f"{SOURCE}-status")
    hit = cached.get("status")
    if cached.get("key") == key and isinstance(hit, dict):
        return {k: (v[0], v[1]) for k, v in hit.items()}
    out: dict[str, tuple[str, str]] = {}
    try:
        paragraphs = _paragraphs_of(paths, {name.split(":", 1)[0] for name in names})
    except (OSError, CapsnapError):
        return out
    for para in paragraphs:
        name = dpkg._field(para, "Package")
        arch = dpkg._field(para, "Architecture")
        for wanted in (f"{name}:{arch}", name):
            if wanted in names:
                status = dpkg._field(para, "Status").split()
                out[wanted] = (status[-1] if status else "", dpkg._field(para, "Version"))
                break
    cache.save(paths, f"{SOURCE}-status", {"key": key, "status": {
        k: [v[0], v[1]] for k, v in out.items()}})
    return out


def _paragraphs_of(paths: SystemPaths, packages: set[str]) -> list[str]:
    """The status paragraphs of the packages named (every one when dpkg's
    journal holds updates): after every dpkg run the cache above misses,
    and a hook need not split a thousand paragraphs to find a few."""
    from capsnap.declarations import dpkg

    if dpkg._journal(paths):
        return dpkg.database_paragraphs(paths)
    data = dpkg._status_bytes(paths, paths.dpkg_status)
    out = []
    for package in sorted(packages):
        needle = f"Package: {package}\n".encode("utf-8", "surrogateescape")
        at = 0 if data.startswith(needle) else data.find(b"\n" + needle)
        while at >= 0:
            previous = data.rfind(b"\n\n", 0, at + 1) if at else -1
            start = previous + 2 if previous >= 0 else 0
            end = data.find(b"\n\n", at)
            end = len(data) if end < 0 else end
            out.append(data[start:end].strip(b"\n").decode("utf-8", "surrogateescape"))
            at = data.find(b"\n" + needle, end)
    return out


def _state_file(paths: SystemPaths) -> str:
    return os.path.join(paths.state_dir, f"{_STATE}.marshal")


def _load_state(paths: SystemPaths) -> dict[str, dict[str, list[object]]]:
    data = cache.read_marshal(paths, _state_file(paths))
    if data.get("format") != _FORMAT:
        return {}
    confirmed = data.get("confirmed")
    return confirmed if isinstance(confirmed, dict) else {}


def _save_state(paths: SystemPaths, confirmed: dict[str, dict[str, list[object]]]) -> None:
    import contextlib
    import marshal

    # An unprivileged or read-only run: confirmed on a later one.
    with contextlib.suppress(OSError, ValueError, CapsnapError):
        confine.write_atomically(paths, _state_file(paths),
                                 marshal.dumps({"format": _FORMAT, "confirmed": confirmed}))


def _on_disk(paths: SystemPaths, path: str) -> tuple[captext.CapSet | None, list[int]] | None:
    """The system capabilities a file has (None: none), and its identity."""
    from capsnap import fileops
    from capsnap.errors import AttrFormatError

    try:
        with fileops.open_target(path, paths.root) as target:
            raw = fileops.read_raw(target)
            ident = [target.st.st_dev, target.st.st_ino]
    except (OSError, CapsnapError):
        return None
    if raw is None:
        return None, ident
    try:
        caps = xattr.decode(raw)
    except AttrFormatError:
        return None, ident
    return (None if caps.revision == 3 else caps.capset()), ident


def read(paths: SystemPaths, known_bits: int) \
        -> tuple[list[Declaration], list[Problem], list[str]]:
    """Every setcap of an installed package's postinst on a file it ships,
    confirmed (enforced) or not."""
    from capsnap.declarations import dpkg, observed
    from capsnap.errors import CapTextError

    found = _scan(paths)
    watched = observed.packages(paths)
    if not found and not watched:
        return [], [], []
    status = _status(paths, set(found) | watched)
    diverted = dpkg.diversions(paths)
    before = _load_state(paths)
    confirmed: dict[str, dict[str, list[object]]] = {}
    decls: list[Declaration] = []
    problems: list[Problem] = []
    for stem in sorted(found):
        if stem not in status or status[stem][0] not in dpkg._ON_DISK:
            continue
        state, version = status[stem]
        package = stem.split(":", 1)[0] if stem.count(":") else stem
        for caps_text, listed, line in found[stem]:
            assert isinstance(caps_text, str) and isinstance(listed, str)
            try:
                caps = captext.parse_file_caps(caps_text, known_bits)
            except CapTextError as exc:
                problems.append(Problem(SOURCE, f"package {package} {version}",
                                        f"postinst line {line}: {exc}"))
                continue
            path = dpkg.true_name(listed, stem, diverted)
            decl = Declaration(path=path, text=caps_text, caps=caps, source=SOURCE,
                               package=package, version=version,
                               origin=f"postinst of {package}:{line}")
            want = captext.format_text(decl.stored, known_bits)
            record = before.get(stem, {}).get(path)
            if not (isinstance(record, list) and len(record) == 3 and record[0] == want):
                record = None
            if state in _CONFIGURED:
                disk = _on_disk(paths, path)
                if disk is not None and disk[0] == decl.stored:
                    record = [want, *disk[1]]
                elif disk is not None and record is not None and record[1:] != disk[1]:
                    # The package configured a new file and left it without.
                    record = None
            if record is not None:
                confirmed.setdefault(stem, {})[path] = record
            decls.append(decl._replace(confirmed=record is not None))
    if confirmed != before:
        _save_state(paths, confirmed)
    # What the package's configure was seen to set, where the reader saw nothing.
    return decls + observed.read(paths, known_bits, status, decls), problems, []
