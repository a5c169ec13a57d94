"""Every file with capabilities on the machine, explained or flagged.

What a security team runs after an incident: a copy of python3 given
cap_setuid is root for whoever runs it.  Each file is explained by the
declaration it matches (local, dpkg, rpm, dpkg-script) or flagged
`undeclared` (or `differs` where a declaration says something else), and
flagged for risk: a root-equivalent capability, a target that is unsafe to
hold one (interpreter or code runner, writable by others or under a
directory they can write, another owner than root, hard links), not
shipped by any package, namespaced (revision 3, a user namespace's).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator

from capsnap import captext, declarations, fileops, xattr
from capsnap.errors import AttrFormatError, CapsnapError
from capsnap.paths import SystemPaths
from capsnap.records import NamedTuple
from capsnap.store import Row

EXPLAINED = "explained"
DIFFERS = "differs"
UNDECLARED = "undeclared"

ROOT_EQUIVALENT = "root-equivalent"
UNSAFE_TARGET = "unsafe-target"
INTERPRETER = "interpreter"
NOT_PACKAGED = "not-packaged"
NAMESPACED = "namespaced"


class Finding(NamedTuple):
    path: str
    capabilities: str
    rootid: int | None
    status: str  # EXPLAINED, DIFFERS or UNDECLARED
    source: str | None  # the source that explains (or would) it
    declared_by: str | None  # its label: "local (FILE:LINE)", "dpkg-script:ping 3:2022..."
    package: str | None
    version: str | None
    risks: tuple[str, ...]
    details: tuple[str, ...]

    @property
    def bad(self) -> bool:
        """What makes `capsnap audit` exit 1."""
        return self.status != EXPLAINED or UNSAFE_TARGET in self.risks

    def as_json(self) -> dict[str, object]:
        return {"path": self.path, "capabilities": self.capabilities, "rootid": self.rootid,
                "status": self.status, "source": self.source, "declared_by": self.declared_by,
                "package": self.package, "version": self.version, "risks": list(self.risks),
                "details": list(self.details)}


def live(paths: SystemPaths, known_bits: int, roots: tuple[str, ...],
         unreadable: list[tuple[str, str]] | None = None) -> Iterator[Row]:
    """The files with capabilities a full walk finds now, with their owners."""
    from capsnap import scan, snapshot

    stats = scan.WalkStats()
    for row in snapshot.live_rows(paths, snapshot.Scope("full"), known_bits, stats=stats,
                                  roots=roots):
        if row.raw is not None:
            yield row
    if unreadable is not None:
        unreadable.extend(stats.unreadable)


def _capset(row: Row) -> tuple[captext.CapSet | None, int | None]:
    assert row.raw is not None
    try:
        caps = xattr.decode(row.raw)
    except AttrFormatError:
        return None, None
    return caps.capset(), caps.rootid if caps.revision == 3 else None


def _target_risks(path: str, paths: SystemPaths,
                  recorded: Row | None) -> tuple[list[str], list[str]]:
    """Risk codes and reasons that depend on the file as it is now.

    A `recorded` row (audit --from) may name a file since replaced: the
    file now at its path is judged, and said not to be the one recorded.
    """
    from capsnap import snapshot

    try:
        with fileops.open_target(path, paths.root) as target:
            reasons = fileops.unsafe_reasons(target, paths.root)
            by_name = fileops.interpreter_by_name(target.name)
            sniffed = fileops.sniff_interpreter(target)
            st = target.st
            now = None if recorded is None else recorded._replace(
                present=True, inode=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns,
                btime_ns=fileops.birth_time_ns(fd=target.fd))
    except (OSError, CapsnapError) as exc:
        if getattr(exc, "errno", None) == errno.ENOENT:
            return [], ["the file is gone now: its target risks cannot be judged"]
        return [], [f"cannot examine the file now: {exc}"]
    codes = [UNSAFE_TARGET] if reasons else []
    if by_name or sniffed:
        codes.append(INTERPRETER)
    if recorded is not None and now is not None and recorded.inode is not None and \
            not snapshot.same_file(recorded, now):
        reasons = ["not the file the snapshot recorded (replaced since): "
                   "its target risks are those of the file at this path now", *reasons]
    return codes, reasons


def audit(rows: Iterable[Row], catalogue: declarations.Catalogue, paths: SystemPaths,
          known_bits: int, recorded: bool = False) -> list[Finding]:
    """`recorded`: the rows come from a snapshot, not a walk just made."""
    canonical = declarations.canonical_in(paths)
    winners = {item.path: item.winner for item in catalogue.resolve(canonical)
               if item.winner is not None}
    # What a script sets but was never seen on disk still explains the same
    # capability on its file (the package is, say, unpacked but not configured).
    candidates: dict[str, list[declarations.Declaration]] = {}
    for decl in catalogue.declarations:
        candidates.setdefault(canonical(decl.path), []).append(decl)
    out = []
    for row in rows:
        path = os.fsdecode(row.path)
        key = canonical(path)
        caps, rootid = _capset(row)
        text = row.text or (f"<malformed {row.raw.hex()}>" if row.raw else "")
        risks: list[str] = []
        details: list[str] = []
        if caps is not None:
            names = fileops.root_equivalent_names(caps)
            if names:
                risks.append(ROOT_EQUIVALENT)
                details.append(f"root-equivalent {', '.join(names)}: "
                               f"{fileops.ROOT_EQUIVALENT[names[0]]}")
        if rootid is not None:
            risks.append(NAMESPACED)
            details.append(f"namespaced: works only in the user namespace whose root is "
                           f"uid {rootid}")
        codes, reasons = _target_risks(path, paths, row if recorded else None)
        risks += codes
        details += reasons
        if not row.package:
            risks.append(NOT_PACKAGED)
            details.append("no installed package ships it")
        winner = winners.get(key)
        status, source, label = UNDECLARED, None, None
        matching = [winner] if winner is not None else \
            [d for d in candidates.get(key, ()) if d.source == declarations.SCRIPT]
        if caps is not None and rootid is None:
            for decl in matching:
                if decl.stored == caps:
                    status, source, label = EXPLAINED, decl.source, decl.label()
                    break
            else:
                if matching:
                    status, source, label = DIFFERS, matching[0].source, matching[0].label()
                    details.append(f"{label} declares "
                                   f"{captext.format_text(matching[0].caps, known_bits)}")
        out.append(Finding(path, text, rootid, status, source, label, row.package,
                           row.version, tuple(risks), tuple(details)))
    return out
