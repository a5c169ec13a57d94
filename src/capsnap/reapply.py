# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Check declared capabilities against the files, and put back what drifted.

Each path is examined and repaired through one pinned descriptor (fileops),
so what was checked is what gets written and verified.  Nothing here raises
for one bad path: every declaration gets a finding, and the run goes on.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterable

from capsnap import captext, confine, fileops, xattr
from capsnap.declarations import SCRIPT, Catalogue, Declaration, Resolved
from capsnap.errors import AttrFormatError, CapsnapError, OperationFailed, UnsafeTarget
from capsnap.paths import SystemPaths
from capsnap.records import NamedTuple

# Statuses of `check`; `reapply` adds restored, would-restore, failed and skipped.
OK = "ok"
DRIFTED = "drifted"
MISSING = "missing"
UNSAFE = "unsafe"
UNKNOWN_CAP = "unknown-capability"
CONFLICT = "conflict"
ERROR = "error"
RESTORED = "restored"
WOULD_RESTORE = "would-restore"
FAILED = "failed"
SKIPPED = "skipped"
FALLBACK = "fallback"  # the filesystem cannot hold capabilities: the declared setuid mode
# A local declaration of a file that is gone with the package it belonged to
# (its recorded owner is not installed): in force again when it comes back.
DORMANT = "dormant"
# What becomes of a capability capsnap applied for a package that no longer
# declares it: removed, or left alone because it is no longer what capsnap put.
REMOVED = "removed"
LEFT_ALONE = "left-alone"
WOULD_REMOVE = "would-remove"

IN_PLACE = {OK, RESTORED, FALLBACK, REMOVED, LEFT_ALONE, DORMANT}
# Nothing done and nothing to say: not logged, not recorded.
QUIET = {OK, DORMANT}


class Finding(NamedTuple):
    path: str
    status: str
    declaration: Declaration | None
    expected: str | None  # canonical text declared
    actual: str | None  # canonical text on disk; None: no capabilities
    detail: str = ""
    resolved: Resolved | None = None
    warnings: tuple[str, ...] = ()  # said whatever the status: root-equivalent ones

    @property
    def source(self) -> str:
        if self.declaration is not None:
            return self.declaration.label()
        if self.resolved is not None and self.resolved.conflicting:
            return " vs ".join(d.label() for d in self.resolved.conflicting)
        return ""

    def as_json(self) -> dict[str, object]:
        decl = self.declaration
        return {
            "path": self.path,
            "status": self.status,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
            "source": decl.source if decl else None,
            "package": decl.package if decl else None,
            "version": decl.version if decl else None,
            "owner": decl.owner if decl else None,
            "warnings": list(self.warnings),
        }


def _on_disk_text(raw: bytes | None, known_bits: int) -> str | None:
    if raw is None:
        return None
    try:
        caps = xattr.decode(raw)
    except AttrFormatError:
        return f"<malformed {raw.hex()}>"
    text = captext.format_text(caps.capset(), known_bits)
    return f"{text} [rootid={caps.rootid}]" if caps.revision == 3 else text


def _matches(raw: bytes | None, decl: Declaration) -> bool:
    if raw is None:
        return decl.caps.is_empty()
    try:
        caps = xattr.decode(raw)
    except AttrFormatError:
        return False
    # A namespaced capability (revision 3) only works inside its namespace:
    # not what a package declared for the system.
    return caps.revision != 3 and caps.capset() == decl.stored


def package_warnings(decl: Declaration) -> tuple[str, ...]:
    """What to say about a package's declaration however it ends: a package
    that asks for a root-equivalent capability asks for root."""
    if decl.source == "local":
        return ()
    names = fileops.root_equivalent_names(decl.caps)
    if not names:
        return ()
    why = f": {fileops.ROOT_EQUIVALENT[names[0]]}" if len(names) == 1 else ""
    return (f"{decl.label()} declares root-equivalent {', '.join(names)}{why}",)


def examine(item: Resolved, paths: SystemPaths, known_bits: int, repair: bool = False,
            dry_run: bool = False) -> Finding:
    """One declared path: its status, and with `repair` the outcome of fixing it."""
    finding = _examine(item, paths, known_bits, repair, dry_run)
    if item.winner is None:
        return finding
    return finding._replace(warnings=package_warnings(item.winner))


def _examine(item: Resolved, paths: SystemPaths, known_bits: int, repair: bool,
             dry_run: bool) -> Finding:
    decl = item.winner
    if decl is None:
        names = ", ".join(f"{d.package} {d.version} ({d.text})" for d in item.conflicting)
        return Finding(item.path, SKIPPED if repair else CONFLICT, None, None, None,
                       f"packages disagree: {names}; declare it locally to decide", item)
    expected = captext.format_text(decl.caps, known_bits)
    unknown = decl.caps.all_bits() >> known_bits
    if unknown:
        names = ",".join(captext.names_of(unknown << known_bits))
        return Finding(item.path, SKIPPED if repair else UNKNOWN_CAP, decl, expected, None,
                       f"{names} unknown to the running kernel (cap_last_cap="
                       f"{known_bits - 1})", item)
    not_fixed = SKIPPED if repair else UNSAFE
    try:
        with fileops.open_target(item.path, paths.root) as target:
            raw = fileops.read_raw(target)
            found = Finding(item.path, OK, decl, expected, _on_disk_text(raw, known_bits),
                            "", item)
            try:
                fileops.require_regular(target)
            except UnsafeTarget as exc:
                return found._replace(status=not_fixed, detail=str(exc))
            fallback_in_place = _fallback_allowed(decl) and _fallback_in_place(target, decl)
            if _matches(raw, decl):
                if fallback_in_place and repair and not dry_run:
                    # Both: what an old postinst left (setuid on any setcap error).
                    return _take_back_fallback(found, target, decl, paths, "")
                return found
            if decl.caps.is_empty():
                return _strip(found, target, repair, dry_run)
            if raw is None and fallback_in_place:
                in_place = found._replace(status=FALLBACK,
                                          detail=f"declared fallback mode {decl.fallback}")
                if not repair or dry_run:
                    return in_place
                # The filesystem may hold capabilities now (moved, remounted):
                # then the capability replaces the setuid bit, as after a
                # later configure of the package.
                from capsnap import filecaps  # what repairs need; check does not

                try:
                    filecaps.set_on_target(target, decl.caps, 0, paths.root, force=True)
                except CapsnapError:
                    return in_place
                return _take_back_fallback(found, target, decl, paths, "restored; ")
            reasons = fileops.unsafe_reasons(target, paths.root)
            if reasons and not decl.forced:
                return found._replace(status=not_fixed, detail=reasons[0])
            drifted = found._replace(
                status=DRIFTED,
                detail=("no capabilities" if raw is None else f"has {found.actual}")
                + (f" (set by {decl.package}'s postinst)" if decl.source == SCRIPT else "")
                + (f"; declared with forced=yes past: {reasons[0]}" if reasons else ""))
            if not repair:
                return drifted
            if dry_run:
                return drifted._replace(status=WOULD_RESTORE)
            from capsnap import filecaps

            try:
                filecaps.set_on_target(target, decl.caps, 0, paths.root, force=True)
            except OperationFailed as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP) and decl.fallback and \
                        decl.fallback.kind == "setuid":
                    if not _fallback_allowed(decl):
                        return drifted._replace(
                            status=FAILED, detail=f"{exc}; a package's root-equivalent "
                            "capability never gets the setuid fallback (declare it locally "
                            "to decide)")
                    return _apply_fallback(drifted, target, decl, paths, str(exc))
                return drifted._replace(status=FAILED, detail=str(exc))
            except CapsnapError as exc:
                return drifted._replace(status=FAILED, detail=str(exc))
            return drifted._replace(status=RESTORED)
    except OperationFailed as exc:
        detail = str(exc).removeprefix(f"{item.path}: ")
        status = MISSING if detail == fileops.describe_oserror(
            OSError(errno.ENOENT, "")) else ERROR
        return Finding(item.path, FAILED if repair and status == ERROR else status, decl,
                       expected, None, detail, item)


def _strip(found: Finding, target: fileops.Target, repair: bool, dry_run: bool) -> Finding:
    """A file declared "none" that has capabilities: taking them away is
    always safe, whatever the file is."""
    drifted = found._replace(status=DRIFTED, detail=f"declared none, has {found.actual}")
    if not repair:
        return drifted
    if dry_run:
        return drifted._replace(status=WOULD_RESTORE)
    try:
        fileops.remove_raw(target)
    except OSError as exc:
        return drifted._replace(status=FAILED, detail=f"cannot remove: "
                                f"{fileops.describe_oserror(exc)}")
    except CapsnapError as exc:
        return drifted._replace(status=FAILED, detail=str(exc))
    return drifted._replace(status=RESTORED, detail="capabilities removed (declared none)")


def _fallback_allowed(decl: Declaration) -> bool:
    """setuid root is root: never where a package asked for a capability that
    is root-equivalent anyway (the administrator may, by declaring it)."""
    return decl.source == "local" or not fileops.root_equivalent_names(decl.caps)


def _fallback_in_place(target: fileops.Target, decl: Declaration) -> bool:
    fallback = decl.fallback
    return fallback is not None and fallback.kind == "setuid" and \
        target.st.st_uid == 0 and stat.S_IMODE(target.st.st_mode) == fallback.mode


def _has_statoverride(paths: SystemPaths, path: str) -> bool:
    """Whether an administrator's dpkg-statoverride owns the mode; when that
    cannot be read, assume it does: the mode is then never changed."""
    try:
        text = confine.read_bytes(paths, os.path.join(paths.dpkg_admindir, "statoverride"))
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return any(line.split()[3:4] == [path] for line in
               text.decode("utf-8", "surrogateescape").splitlines())


def _take_back_fallback(finding: Finding, target: fileops.Target, decl: Declaration,
                        paths: SystemPaths, done: str) -> Finding:
    """The capability is in place: the setuid bit of the declared fallback
    goes (as iputils-ping's postinst does after setcap), unless a
    dpkg-statoverride says what the mode must be."""
    assert decl.fallback is not None
    if _has_statoverride(paths, decl.path):
        return finding._replace(status=RESTORED if done else OK, detail=done + "the "
                                "fallback mode stays: a dpkg-statoverride sets the mode")
    mode = decl.fallback.mode & ~(stat.S_ISUID | stat.S_ISGID)
    try:
        os.chmod(target.proc_path, mode)
    except OSError as exc:
        return finding._replace(status=FAILED, detail=f"{done}taking back the fallback "
                                f"mode failed: {fileops.describe_oserror(exc)}")
    return finding._replace(status=RESTORED, detail=f"{done}took back the fallback mode "
                            f"{decl.fallback.mode:04o} (now {mode:04o})")


def _apply_fallback(finding: Finding, target: fileops.Target, decl: Declaration,
                    paths: SystemPaths, why: str) -> Finding:
    """Where capabilities cannot be stored, the packager's setuid fallback.

    As fping's and iputils-ping's postinst do; never over an administrator's
    dpkg-statoverride, which says what the mode must be.
    """
    assert decl.fallback is not None
    if _has_statoverride(paths, decl.path):
        return finding._replace(status=FAILED, detail=f"{why}; a dpkg-statoverride sets "
                                "its mode, so the setuid fallback was not applied")
    try:
        os.chmod(target.proc_path, decl.fallback.mode)
    except OSError as exc:
        return finding._replace(status=FAILED, detail=f"{why}; fallback chmod failed: "
                                f"{fileops.describe_oserror(exc)}")
    return finding._replace(status=FALLBACK, detail=f"{why}; applied the declared fallback "
                            f"mode {decl.fallback.mode:04o}")


def select(items: Iterable[Resolved], packages: Iterable[str] | None) -> list[Resolved]:
    """Declarations that concern the given packages (all when none given)."""
    wanted = set(packages or ())
    if not wanted:
        return list(items)
    return [item for item in items if item.packages() & _with_bare_names(wanted)
            or _bare(item.packages()) & wanted]


def _bare(names: set[str]) -> set[str]:
    return {n.split(":", 1)[0] for n in names}


def _with_bare_names(names: set[str]) -> set[str]:
    return names | _bare(names)


def dormant(findings: list[Finding], paths: SystemPaths) -> list[Finding]:
    """Missing files of local declarations whose recorded owner package is
    not installed, as dormant: removing a package is no failure, and the
    declaration is in force again when the package comes back."""
    owners = {f.declaration.owner for f in findings if f.status == MISSING and
              f.declaration is not None and f.declaration.source == "local"
              and f.declaration.owner}
    if not owners:
        return findings
    from capsnap.declarations import dpkg, rpm

    gone = {owner for owner in owners if dpkg.package_version(paths, owner) is None
            and rpm.package_version(paths, owner) is None}
    return [f._replace(status=DORMANT, detail=f"its package {f.declaration.owner} is not "
                       "installed; in force again when it is")
            if f.status == MISSING and f.declaration is not None
            and f.declaration.source == "local" and f.declaration.owner in gone else f
            for f in findings]


def check(items: Iterable[Resolved], paths: SystemPaths, known_bits: int) -> list[Finding]:
    return dormant([examine(item, paths, known_bits) for item in items], paths)


def reapply(items: Iterable[Resolved], paths: SystemPaths, known_bits: int,
            dry_run: bool = False, everything: Catalogue | None = None,
            packages: Iterable[str] | None = None) -> tuple[list[Finding], str | None]:
    """Repair what drifted; with `everything` (the whole catalogue), also take
    back what capsnap applied for `packages` (all when none given) that no
    declaration claims any more.  The findings, and why the log could not be
    written."""
    findings = dormant([examine(item, paths, known_bits, repair=True, dry_run=dry_run)
                        for item in items], paths)
    released: dict[str, dict[str, dict[str, str]]] = {}
    if everything is not None:
        taken_back, released = release(paths, everything, packages, known_bits, dry_run)
        findings += taken_back
    log_error = None
    if not dry_run:
        log_error = log_actions(paths, findings) or \
            record_results(paths, findings, released, known_bits)
        restored = [f.path for f in findings if f.status == RESTORED]
        if restored:
            # What capsnap put back must never be taken for what a package's
            # configure set (declarations.observed).
            from capsnap.declarations import observed

            observed.note_written(paths, restored)
    return findings, log_error


# --- capsnap's records of what it did for each package ----------------------------

# Where a finding about a recorded capability (not a declaration) comes from.
_RECORD = "capsnap's record"


def records_dir(paths: SystemPaths) -> str:
    return os.path.join(paths.state_dir, "packages")


def _record_file(paths: SystemPaths, package: str) -> str:
    return os.path.join(records_dir(paths), package.replace("/", "_"))


def _applied_records(paths: SystemPaths, package: str) -> dict[str, dict[str, str]]:
    """A package's record, if it holds a capability capsnap applied (json is
    imported only then: most runs of a hook meet none)."""
    try:
        data = confine.read_bytes(paths, _record_file(paths, package))
    except (OSError, CapsnapError):
        return {}
    if b'"applied"' not in data:
        return {}
    import json

    try:
        loaded = json.loads(data.decode("ascii"))
    except ValueError:
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {path: {k: v for k, v in entry.items() if isinstance(v, str)}
            for path, entry in loaded.items()
            if isinstance(path, str) and isinstance(entry, dict)}


def _applied_now(f: Finding, before: dict[str, str], known_bits: int) -> dict[str, str]:
    """What capsnap can say it put on the file for a package's declaration: the
    text now when it restored it, what it said before while that is still
    what is declared and found."""
    decl = f.declaration
    if decl is None or decl.source == "local" or f.status == FALLBACK:
        return {}
    applied = captext.format_text(decl.stored, known_bits)
    if f.status == RESTORED or (f.status == OK and before.get("applied") == applied):
        return {"applied": applied, "source": decl.source, "version": decl.version or ""}
    if f.status == OK:
        return {}  # in place, but not capsnap's doing
    return {k: before[k] for k in ("applied", "source", "version") if k in before}


def record_results(paths: SystemPaths, findings: Iterable[Finding],
                   released: dict[str, dict[str, dict[str, str]]] | None = None,
                   known_bits: int | None = None) -> str | None:
    """Keep, per package, the last result for each of its declarations, and
    the capability capsnap applied for it (its canonical text): what capsnap
    may take back when the package no longer declares it.

    These are capsnap's records of a package, which its postrm asks capsnap
    to forget on purge.  `released` holds the records `release` went
    through, without the paths it dealt with.
    """
    known = known_bits if known_bits is not None else fileops.kernel_cap_bits()
    by_package: dict[str, dict[str, dict[str, str]]] = {
        package: dict(entries) for package, entries in (released or {}).items()}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for f in findings:
        decl = f.declaration
        package = decl.package or decl.owner if decl is not None else None
        if not package or decl is None or decl.origin == _RECORD or f.status == DORMANT:
            continue  # a dormant one's package is gone, and its records with it
        if package not in by_package:
            by_package[package] = _applied_records(paths, package)
        before = by_package[package].get(f.path, {})
        by_package[package][f.path] = {"status": f.status, "time": stamp,
                                       **_applied_now(f, before, known)}
    try:
        for package, results in by_package.items():
            _write_record(paths, package, results)
    except CapsnapError as exc:
        return f"{records_dir(paths)}: cannot record results: {exc}"
    except OSError as exc:
        return f"{records_dir(paths)}: cannot record results: {exc.strerror}"
    return None


def _write_record(paths: SystemPaths, package: str,
                  results: dict[str, dict[str, str]]) -> None:
    """The one place a record is written (or removed, once it holds nothing)."""
    target = _record_file(paths, package)
    if not results:
        confine.unlink(paths, target)
        return
    # ASCII, as json.dump writes it: a path that is not UTF-8 stays readable.
    content = "{\n" + ",\n".join(
        f" {json_string(path, True)}: {{" + ", ".join(
            f"{json_string(key)}: {json_string(value, True)}"
            for key, value in entry.items()) + "}"
        for path, entry in sorted(results.items())) + "\n}\n"
    confine.write_atomically(paths, target, content.encode("ascii"))


def release(paths: SystemPaths, everything: Catalogue, packages: Iterable[str] | None,
            known_bits: int, dry_run: bool = False) \
        -> tuple[list[Finding], dict[str, dict[str, dict[str, str]]]]:
    """Take back the capabilities capsnap applied for packages (all when none
    given) on paths that nothing declares any more: the package was removed,
    or its new version no longer declares the path (or may not: it does not
    ship the file).  Only a capability exactly as capsnap applied it is
    removed; one that differs is the administrator's and is left alone.

    The findings, and the records gone through, without the paths dealt with
    (a path whose removal failed stays, to be tried again).
    """
    from capsnap import declarations

    unread = everything.unread()
    if "local" in unread:
        return [], {}  # a local declaration may claim any path
    try:
        names = [n for n in confine.listdir(paths, records_dir(paths))
                 if not n.startswith(".") and not n.endswith(".new")]
    except (OSError, CapsnapError):
        return [], {}
    wanted = set(packages or ())
    if wanted:
        names = [n for n in names if n in wanted or n.split(":", 1)[0] in wanted]
    claimed: set[str] | None = None
    canonical = None
    findings: list[Finding] = []
    records: dict[str, dict[str, dict[str, str]]] = {}
    for name in sorted(names):
        entries = _applied_records(paths, name)
        if not entries:
            continue
        if claimed is None:
            canonical = declarations.canonical_in(paths)
            claimed = {item.path for item in everything.resolve(canonical)}
        kept = dict(entries)
        for path, entry in entries.items():
            assert canonical is not None
            if path in claimed or canonical(path) in claimed:
                continue
            if "applied" in entry and entry.get("source", "dpkg") in unread:
                continue
            finding = _take_back(paths, name, path, entry, known_bits, dry_run) \
                if "applied" in entry else None
            if finding is not None:
                findings.append(finding)
            if finding is None or finding.status != FAILED:
                del kept[path]
        if kept != entries:
            records[name] = kept
    return findings, records


def _take_back(paths: SystemPaths, package: str, path: str, entry: dict[str, str],
               known_bits: int, dry_run: bool) -> Finding | None:
    """Remove the capability capsnap applied for `package` on `path` if it is
    still exactly that; None when the file has none (or is gone)."""
    applied = entry["applied"]
    try:
        caps = captext.parse_file_caps(applied, known_bits)
    except CapsnapError:
        caps = captext.CapSet()
    decl = Declaration(path=path, text=applied, caps=caps,
                       source=entry.get("source", "dpkg"), package=package,
                       version=entry.get("version") or None, origin=_RECORD)
    try:
        with fileops.open_target(path, paths.root) as target:
            raw = fileops.read_raw(target)
            actual = _on_disk_text(raw, known_bits)
            if actual is None:
                return None
            found = Finding(path, REMOVED, decl, None, actual,
                            f"capsnap applied {applied} for {decl.label()}, which no "
                            "longer declares it, and nothing else does")
            if target.link_target is not None or not target.is_regular or actual != applied:
                return found._replace(
                    status=LEFT_ALONE, detail=f"no longer declared by {decl.label()}, but "
                    f"it is not the {applied} capsnap applied: the administrator's to decide")
            if dry_run:
                return found._replace(status=WOULD_REMOVE)
            fileops.remove_raw(target)
            return found
    except OperationFailed as exc:
        detail = str(exc).removeprefix(f"{path}: ")
        if detail == fileops.describe_oserror(OSError(errno.ENOENT, "")):
            return None
        return Finding(path, FAILED, decl, None, None,
                       f"cannot take back the {applied} capsnap applied: {detail}")


def forget(paths: SystemPaths, package: str) -> int | None:
    """Drop capsnap's records of a (purged) package; how many there were
    (None: capsnap had no records of it)."""
    target = _record_file(paths, package)
    try:
        import json

        count = len(json.loads(confine.read_bytes(paths, target)))
        confine.unlink(paths, target)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise OperationFailed(f"{target}: cannot forget: {exc}") from None
    return count


def log_actions(paths: SystemPaths, findings: Iterable[Finding]) -> str | None:
    """Append one line per action to the log; the reason it failed, if it did."""
    lines = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for f in findings:
        if f.status in QUIET:
            continue
        fields = {
            "path": f.path,
            "old": f.actual or "none",
            "new": f.expected or "none",
            "source": f.source,
            "result": f.status,
        }
        if f.detail:
            fields["reason"] = f.detail
        lines.append(f"{stamp} reapply " + " ".join(
            f"{key}={json_string(value, printable_only=True)}" for key, value in fields.items()))
        if f.status == RESTORED:
            # Applied, but not without a word: a package asked for root.
            lines.extend(f"{stamp} warning " + " ".join(
                f"{key}={json_string(value, printable_only=True)}" for key, value in
                {"path": f.path, "source": f.source, "reason": warning}.items())
                for warning in f.warnings)
    return append_log(paths, lines)


_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                 "\b": "\\b", "\f": "\\f"}


def json_string(text: str, ascii_only: bool = False, printable_only: bool = False) -> str:
    """`text` as a JSON string, as json.dumps(text, ensure_ascii=ascii_only)
    writes it: json's import (which brings re) would cost a hook more than
    its log.  `printable_only` also escapes what is not printable (DEL, C1,
    bytes that are not UTF-8, line separators, bidirectional controls): a
    log line is read on a terminal."""
    limit = "~" if ascii_only else "\U0010ffff"
    return '"' + "".join(_JSON_ESCAPES.get(c) or (
        _json_escape(c) if c < " " or c > limit or (printable_only and not c.isprintable())
        else c) for c in text) + '"'


def _json_escape(c: str) -> str:
    code = ord(c)
    if code > 0xFFFF:  # a surrogate pair, as JSON spells characters beyond the BMP
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def append_log(paths: SystemPaths, lines: list[str]) -> str | None:
    """Append whole lines to /var/log/capsnap.log in one write (O_APPEND, so
    concurrent runs never interleave within a line); why it failed, if it did."""
    if not lines:
        return None
    try:
        confine.append(paths, paths.log_file,
                       ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
    except CapsnapError as exc:
        return f"cannot append to the log: {exc}"
    except OSError as exc:
        return f"{paths.log_file}: cannot append: {exc.strerror}"
    return None
