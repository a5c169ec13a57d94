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

from capsnap import captext, confine, filecaps, fileops, xattr
from capsnap.declarations import Declaration, Resolved
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

IN_PLACE = {OK, RESTORED, FALLBACK}


class Finding(NamedTuple):
    path: str
    status: str
    declaration: Declaration | None
    expected: str | None  # canonical text declared
    actual: str | None  # canonical text on disk; None: no capabilities
    detail: str = ""
    resolved: Resolved | None = None

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
        return False
    try:
        caps = xattr.decode(raw)
    except AttrFormatError:
        return False
    # A namespaced capability (revision 3) only works inside its namespace:
    # not what a package declared for the system.
    return caps.revision != 3 and caps.capset() == decl.stored


def examine(item: Resolved, paths: SystemPaths, known_bits: int, repair: bool = False,
            dry_run: bool = False) -> Finding:
    """One declared path: its status, and with `repair` the outcome of fixing it."""
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
            if _matches(raw, decl):
                return found
            if raw is None and _fallback_in_place(target, decl):
                return found._replace(status=FALLBACK,
                                      detail=f"declared fallback mode {decl.fallback}")
            reasons = fileops.unsafe_reasons(target, paths.root)
            if reasons:
                return found._replace(status=not_fixed, detail=reasons[0])
            drifted = found._replace(
                status=DRIFTED,
                detail="no capabilities" if raw is None else f"has {found.actual}")
            if not repair:
                return drifted
            if dry_run:
                return drifted._replace(status=WOULD_RESTORE)
            try:
                filecaps.set_on_target(target, decl.caps, 0, paths.root, force=True)
            except OperationFailed as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP) and decl.fallback and \
                        decl.fallback.kind == "setuid":
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


def _fallback_in_place(target: fileops.Target, decl: Declaration) -> bool:
    fallback = decl.fallback
    return fallback is not None and fallback.kind == "setuid" and \
        target.st.st_uid == 0 and stat.S_IMODE(target.st.st_mode) == fallback.mode


def _has_statoverride(paths: SystemPaths, path: str) -> bool:
    try:
        text = confine.read_bytes(paths, os.path.join(paths.dpkg_admindir, "statoverride"))
        return any(line.split()[3:4] == [path] for line in
                   text.decode("utf-8", "surrogateescape").splitlines())
    except OSError:
        return False


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


def check(items: Iterable[Resolved], paths: SystemPaths, known_bits: int) -> list[Finding]:
    return [examine(item, paths, known_bits) for item in items]


def reapply(items: Iterable[Resolved], paths: SystemPaths, known_bits: int,
            dry_run: bool = False) -> tuple[list[Finding], str | None]:
    """Repair what drifted; the findings, and why the log could not be written."""
    findings = [examine(item, paths, known_bits, repair=True, dry_run=dry_run)
                for item in items]
    log_error = None
    if not dry_run:
        log_error = log_actions(paths, findings) or record_results(paths, findings)
    return findings, log_error


def _records_dir(paths: SystemPaths) -> str:
    return os.path.join(paths.state_dir, "packages")


def record_results(paths: SystemPaths, findings: Iterable[Finding]) -> str | None:
    """Keep, per package, the last result for each of its declarations.

    These are capsnap's records of a package, which its postrm asks capsnap
    to forget on purge.
    """
    by_package: dict[str, dict[str, dict[str, str]]] = {}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for f in findings:
        decl = f.declaration
        package = decl.package or decl.owner if decl is not None else None
        if package:
            by_package.setdefault(package, {})[f.path] = {"status": f.status, "time": stamp}
    try:
        for package, results in by_package.items():
            target = os.path.join(_records_dir(paths), package.replace("/", "_"))
            # ASCII, as json.dump writes it: a path that is not UTF-8 stays readable.
            content = "{\n" + ",\n".join(
                f' {json_string(path, True)}: {{"status": {json_string(r["status"])}, '
                f'"time": {json_string(r["time"])}}}'
                for path, r in sorted(results.items())) + "\n}\n"
            confine.write_atomically(paths, target, content.encode("ascii"))
    except CapsnapError as exc:
        return f"{_records_dir(paths)}: cannot record results: {exc}"
    except OSError as exc:
        return f"{_records_dir(paths)}: cannot record results: {exc.strerror}"
    return None


def forget(paths: SystemPaths, package: str) -> int:
    """Drop capsnap's records of a (purged) package; how many there were."""
    target = os.path.join(_records_dir(paths), package.replace("/", "_"))
    try:
        import json

        count = len(json.loads(confine.read_bytes(paths, target)))
        confine.unlink(paths, target)
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as exc:
        raise OperationFailed(f"{target}: cannot forget: {exc}") from None
    return count


def log_actions(paths: SystemPaths, findings: Iterable[Finding]) -> str | None:
    """Append one line per action to the log; the reason it failed, if it did."""
    lines = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for f in findings:
        if f.status == OK:
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
