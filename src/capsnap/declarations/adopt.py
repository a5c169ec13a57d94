"""`capsnap adopt`: capabilities found on disk become local declarations.

An administrator who ran `setcap` by hand (tcpdump, node, coturn) loses the
capability at the package's next upgrade.  Adopting writes one local
declaration of exactly what the file carries, with the package that ships
it as owner, so capsnap restores it from then on.  What something already
declares is left alone; the safety policy applies as to `declare`; a
namespaced capability (revision 3) is a user namespace's, not the system's,
and is never adopted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from capsnap import captext, declarations, fileops, xattr
from capsnap.declarations import local
from capsnap.errors import AttrFormatError, CapsnapError
from capsnap.paths import SystemPaths
from capsnap.records import NamedTuple

ADOPTED = "adopted"
WOULD_ADOPT = "would-adopt"
DECLARED = "already-declared"
SKIPPED = "skipped"


class Outcome(NamedTuple):
    path: str
    status: str
    capabilities: str | None
    owner: str | None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == SKIPPED

    def as_json(self) -> dict[str, object]:
        return {"path": self.path, "status": self.status, "capabilities": self.capabilities,
                "owner": self.owner, "detail": self.detail}


def _examine(path: str, paths: SystemPaths, known_bits: int) -> Outcome:
    """What adopting `path` would declare, or why it cannot."""
    try:
        with fileops.open_target(path, paths.root) as target:
            fileops.require_regular(target)
            raw = fileops.read_raw(target)
            if raw is None:
                return Outcome(path, SKIPPED, None, None, "has no capabilities")
            try:
                caps = xattr.decode(raw)
            except AttrFormatError:
                return Outcome(path, SKIPPED, None, None,
                               f"malformed security.capability {raw.hex()}")
            text = captext.format_text(caps.capset(), known_bits)
            if caps.revision == 3:
                return Outcome(path, SKIPPED, text, None, f"namespaced (rootid "
                               f"{caps.rootid}): a user namespace's, not the system's")
            if caps.capset().all_bits() >> known_bits:
                return Outcome(path, SKIPPED, text, None,
                               "holds capabilities the running kernel does not know")
            fileops.check_safe(target, paths.root)
    except CapsnapError as exc:
        return Outcome(path, SKIPPED, None, None, str(exc).removeprefix(f"{path}: "))
    return Outcome(path, WOULD_ADOPT, text, None)


def adopt(paths: SystemPaths, wanted: Iterable[str] | None, known_bits: int,
          dry_run: bool = False, roots: tuple[str, ...] = ()) -> list[Outcome]:
    """Adopt the named paths, or (None) every undeclared capability on disk."""
    catalogue = declarations.load(paths, known_bits)
    canonical = declarations.canonical_in(paths)
    declared: dict[str, str] = {}
    for item in catalogue.resolve(canonical):
        decl = item.winner or (item.conflicting[0] if item.conflicting else None)
        if decl is not None:
            declared[item.path] = decl.label()
    owners: dict[str, str] = {}
    if wanted is None:
        from capsnap import audit, scan

        targets = []
        for row in audit.live(paths, known_bits, roots or scan.DEFAULT_ROOTS):
            path = os.fsdecode(row.path)
            targets.append(path)
            if row.package:
                owners[path] = row.package
    else:
        targets = list(wanted)
    out = []
    stamp = time.strftime("%Y-%m-%d")
    for given in targets:
        path = canonical(given)
        if path in declared:
            if wanted is not None:
                out.append(Outcome(path, DECLARED, None, None,
                                   f"already declared by {declared[path]}"))
            continue
        outcome = _examine(path, paths, known_bits)
        if wanted is None and outcome.status == SKIPPED and \
                outcome.detail == "has no capabilities":
            continue
        if outcome.status != WOULD_ADOPT:
            out.append(outcome)
            continue
        text = outcome.capabilities
        assert text is not None
        owner = owners.get(path)
        if owner is None:
            found = declarations.owner_of(paths, path)
            owner = found[0] if found else None
        outcome = outcome._replace(owner=owner)
        if not dry_run:
            local.declare(paths, path, text, f"adopted from disk {stamp}",
                          owner, known_bits)
            outcome = outcome._replace(status=ADOPTED)
        declared[path] = "local"
        out.append(outcome)
    return out
