# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Desired state for configuration management (the Ansible collection's modules).

Idempotent by construction: what is compared is the canonical capability set
(so `cap_x=+ep` and `cap_x=ep` are the same), both for the local declaration
and for the file; nothing is written unless one of them differs, and a check
run reports the same `changed` without writing.
"""

from __future__ import annotations

from typing import Any

from capsnap import captext, declarations, filecaps, fileops, xattr
from capsnap.declarations import local
from capsnap.declarations.entries import escape_path, parse_entry
from capsnap.errors import CapsnapError, InvalidInput, OperationFailed
from capsnap.paths import SystemPaths
from capsnap.records import NamedTuple


class Declared(NamedTuple):
    """What `declare` did: the declaration written, then the file."""

    path: str
    file: str  # the declaration file written
    replaced: bool  # an earlier declaration of the file was replaced
    owner: tuple[str, str] | None  # (package, version) shipping the file
    forced_past: str | None  # the policy refusal --force overrode
    applied: bool | None  # written (True), already in place (False), not applied (None)
    failure: str | None  # why it could not be applied
    warnings: list[str]  # root-equivalent capabilities, said after the fact as set does


def is_mask(text: str) -> bool:
    """Whether the text ("none" or "=") masks the file's declarations, as
    dpkg-statoverride overrules a package."""
    return text.strip() in ("none", "=")


def declare_locally(paths: SystemPaths, path: str, text: str, reason: str | None,
                    known: int, force: bool = False, apply: bool = True) -> Declared:
    """Declare `path` (its one spelling) locally and apply it to the very inode
    checked, verified: `set`'s policy, refused (raised) unless `force`, which
    records the declaration as forced.  A mask takes capabilities away, safe
    on any file, so no policy refuses it."""
    import contextlib

    from capsnap.declarations import canonical_in, owner_of

    masking = is_mask(text)
    caps = captext.CapSet() if masking else captext.parse_file_caps(text, known)
    local.checked(path, text, known)  # what no file check can fix
    refused = None
    with contextlib.ExitStack() as stack:
        target = None
        try:
            target = stack.enter_context(fileops.open_target(path, paths.root))
            if not masking:
                fileops.check_safe(target, paths.root)
        except CapsnapError as exc:
            if not force and not masking:
                raise
            refused = str(exc).removesuffix("; use --force to override").removeprefix(
                f"{path}: ")
        owner = owner_of(paths, path)
        file, replaced = local.declare(paths, path, text, reason,
                                       owner[0] if owner else None, known,
                                       forced=refused is not None,
                                       canonical=canonical_in(paths))
        done = Declared(path, file, replaced, owner, refused, None, None,
                        fileops.root_equivalent_warnings(caps))
        if not apply:
            return done
        try:
            if target is None:
                raise CapsnapError(f"{path}: {refused}")
            if masking:
                fileops.require_regular(target)
                changed = fileops.remove_raw(target)
            else:
                changed = filecaps.set_on_target(target, caps, 0, paths.root, force=True).changed
        except CapsnapError as exc:
            return done._replace(failure=str(exc).removeprefix(path + ": "))
    return done._replace(applied=changed)


def _on_disk(path: str, paths: SystemPaths, known: int) -> tuple[captext.CapSet | None, str]:
    reading = filecaps.read(path, paths.root)
    if reading.caps is None:
        return None, "none"
    text = captext.format_text(reading.caps.capset(), known)
    if reading.caps.revision == 3:
        text += f" [rootid={reading.caps.rootid}]"
        return None, text  # a namespaced capability is not the system's
    return reading.caps.capset(), text


def _local_declaration(paths: SystemPaths, path: str,
                       known: int) -> declarations.Declaration | None:
    from capsnap.snapshot import canonical_paths

    canonical = canonical_paths(paths)
    decls, _, _ = local.read(paths, known)
    found = [d for d in decls if canonical(d.path) == path]
    return found[-1] if found else None


def _describe(declared: str | None, on_disk: str) -> str:
    return f"declared: {declared or 'nothing'}\non disk: {on_disk}\n"


def declare(paths: SystemPaths, path: str, text: str | None, state: str = "present",
            reason: str | None = None, check_mode: bool = False, force: bool = False,
            known: int | None = None) -> dict[str, Any]:
    """Make `path` declared (and carrying) `text`, or undeclared; what changed.

    The same declaration `capsnap declare` makes (one spelling of the file,
    set's policy, forced recorded, a "none" mask), made only when the
    declaration or the file differs from what is asked."""
    from capsnap.declarations import canonical_in
    from capsnap.snapshot import canonical_paths

    known = known if known is not None else fileops.kernel_cap_bits()
    if state not in ("present", "absent"):
        raise InvalidInput(f"state must be present or absent, not {state!r}")
    checked = parse_entry(f"{escape_path(path)} {text or '='}", known_bits=known)
    assert checked is not None
    path = canonical_paths(paths)(checked.path)
    old = _local_declaration(paths, path, known)
    old_text = captext.format_text(old.caps, known) if old else None
    try:
        current, current_text = _on_disk(path, paths, known)
    except OperationFailed:
        if state == "present":
            raise
        current, current_text = None, "no such file"

    if state == "absent":
        canonical = canonical_paths(paths)
        others = [d for d in declarations.load(paths, known, ("dpkg", "rpm")).declarations
                  if canonical(d.path) == path]
        strip = old is not None and not others and current == old.stored
        changed = old is not None or strip
        if changed and not check_mode:
            if old is not None:
                local.undeclare(paths, path, canonical_in(paths))
            if strip:
                filecaps.remove(path, paths.root)
        after_text = "none" if strip else current_text
        return {"changed": changed, "path": path, "state": "absent",
                "diff": {"before": _describe(old_text, current_text),
                         "after": _describe(None, after_text)}}

    assert text is not None
    masking = is_mask(text)
    caps = captext.CapSet() if masking else captext.parse_file_caps(text, known)
    wanted = "none" if masking else captext.format_text(caps, known)
    stored = xattr.decode(xattr.encode(caps)).capset()
    if not force and not masking:
        # Refused before anything, in check mode too, with set's message.
        with fileops.open_target(path, paths.root) as target:
            fileops.check_safe(target, paths.root)
    declaration_changed = old is None or old.caps != caps or (
        reason is not None and old.reason != reason)
    file_changed = current_text != "none" if masking else current != stored
    warnings: list[str] = fileops.root_equivalent_warnings(caps)
    if not check_mode and (declaration_changed or file_changed):
        done = declare_locally(paths, path, wanted, reason, known, force=force)
        if done.failure is not None:
            raise OperationFailed(f"{path}: declared in {done.file} but not applied: "
                                  f"{done.failure}")
        warnings = done.warnings
    return {
        "changed": declaration_changed or file_changed,
        "path": path,
        "state": "present",
        "capabilities": wanted,
        "declaration_changed": declaration_changed,
        "file_changed": file_changed,
        "warnings": warnings,
        "diff": {"before": _describe(old_text, current_text),
                 "after": _describe(wanted, "none" if masking else wanted)},
    }


def facts(paths: SystemPaths, known: int | None = None) -> dict[str, Any]:
    """Declarations by source, the drift `check` finds, and the last transaction."""
    from capsnap import diff, reapply
    from capsnap.store import Store

    known = known if known is not None else fileops.kernel_cap_bits()
    catalogue = declarations.load(paths, known)
    by_source: dict[str, list[dict[str, object]]] = {s: [] for s in declarations.SOURCES}
    for decl in catalogue.declarations:
        by_source[decl.source].append(decl.as_json(known))
    findings = reapply.check(catalogue.resolve(declarations.canonical_in(paths)), paths, known)
    drift = [f.as_json() for f in findings if f.status not in reapply.IN_PLACE]
    last: dict[str, Any] | None = None
    import os

    from capsnap import confine

    db = paths.snapshot_db
    if confine.exists(paths, db):
        try:
            with Store(db, create=False, paths=paths) as store:
                transaction = store.last_complete_transaction()
                if transaction is not None and transaction.before_id and transaction.after_id:
                    actions = store.actions(transaction.id)
                    changes = diff.grouped(diff.compare_pairs(
                        store.changed_pairs(transaction.before_id, transaction.after_id),
                        store.find(str(transaction.before_id)).created_ns))
                    last = {
                        "id": transaction.id, "manager": transaction.manager,
                        "started": transaction.started,
                        "packages": [{"package": p, "old": o, "new": n}
                                     for p, o, n in transaction.packages],
                        "changes": [{
                            "kind": c.kind, "path": os.fsdecode(c.path),
                            "before": c.before.text if c.before else None,
                            "after": c.after.text if c.after else None,
                            "package": diff.package_label(c.before, c.after),
                            "capsnap": actions.get(c.path, (None,))[0],
                        } for c in changes],
                    }
        except OperationFailed:
            last = None
    return {
        "declarations": by_source,
        "drift": drift,
        "drifted": bool(drift),
        "problems": [str(p) for p in catalogue.problems],
        "last_transaction": last,
    }
