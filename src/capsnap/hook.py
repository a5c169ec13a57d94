# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Package-manager events: transactions, snapshots and reapply.

`capsnap hook NAME` is the one entry point every hook file calls.  A hook
never makes apt, dpkg or rpm fail: any error becomes one line on stderr and
in /var/log/capsnap.log, and the hook exits 0, unless the administrator set
`strict = yes` in /etc/capsnap/capsnap.conf.

A transaction is one run of the outermost package manager.  apt calls dpkg
several times (and dpkg's own pre/post-invoke hooks fire each time), so when
apt is an ancestor of the dpkg hook, dpkg's hooks only reapply and leave the
transaction to apt's.  The before snapshot covers what is about to change
(apt's package list, or the paths capsnap already tracks); the after
snapshot covers what changed, found by comparing installed versions with
those recorded when the transaction began.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable

from capsnap import config, confine, declarations, fileops, reapply, snapshot
from capsnap.display import escape
from capsnap.errors import CapsnapError, InvalidInput
from capsnap.paths import SystemPaths
from capsnap.records import NamedTuple
from capsnap.snapshot import Scope
from capsnap.store import Row, Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

_SHELLS = {"sh", "dash", "bash", "busybox"}


class Context(NamedTuple):
    paths: SystemPaths
    db: str
    known_bits: int
    stdin: TextIO
    report: Callable[[str], None]
    problems: list[int]  # [count] of declarations that could not be read
    roots: tuple[str, ...]  # what a full snapshot walks (capsnap.conf, read once)
    wait: float  # seconds to wait for capsnap's lock and the database
    retention: tuple[int | None, float | None]  # keep, keep-days (capsnap.conf)
    # What this run reapplied, once it has: a closing hook whose record
    # fails afterwards reports it, never reapplies twice or not at all.
    reapplied: list[list[reapply.Finding]]
    store_failed: list[bool]  # [True] once the store could not be used
    # The process the hook runs under: its parent, or for the background
    # process of dpkg's run (capsnap.background) that dpkg itself.
    parent: int


def _store(ctx: Context) -> Store:
    return Store(ctx.db, paths=ctx.paths, wait=ctx.wait)


def _versions(paths: SystemPaths) -> dict[str, str]:
    from capsnap.declarations import dpkg, rpm

    versions = dict(dpkg.installed_versions(paths))
    versions.update(rpm.installed_versions(paths))
    return versions


def _changed(before: dict[str, str], after: dict[str, str]) \
        -> list[tuple[str, str | None, str | None]]:
    names = sorted(set(before) | set(after))
    return [(n, before.get(n), after.get(n)) for n in names if before.get(n) != after.get(n)
            and ":" not in n]


def _proc_stat(pid: int) -> tuple[str, list[str]] | None:
    """A process's command name and the fields of /proc/PID/stat after it
    (state first: the start time is [19]); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) <= 19:
        return None
    return stat[stat.find("(") + 1:stat.rfind(")")], fields


def _ancestors(parent: int) -> list[tuple[int, str, str]]:
    """(pid, command name, start time) of `parent` and each process above it."""
    out: list[tuple[int, str, str]] = []
    pid = parent
    while pid > 1 and len(out) < 32:
        found = _proc_stat(pid)
        if found is None:
            break
        name, fields = found
        out.append((pid, name, fields[19]))
        pid = int(fields[1])
    return out


def process_start(pid: int) -> str | None:
    """A process's start time (clock ticks since boot): with the pid, who it is."""
    found = _proc_stat(pid)
    return found[1][19] if found is not None else None


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _front_end(parent: int) -> str:
    """The process that runs this hook through sh (apt, aptitude, nala, ...),
    as "pid starttime": the start time tells a reused pid apart.  apt runs
    hooks from a forked copy of itself, so the topmost of a run of same-named
    processes is the one dpkg will run under."""
    found = None
    for pid, name, started in _ancestors(parent):
        if found is None and name in _SHELLS:
            continue
        if found is not None and name != found[1]:
            break
        found = (pid, name, started)
    return f"{found[0]} {found[2]}" if found else ""


def _catalogue(ctx: Context) -> declarations.Catalogue:
    catalogue = _awaited(ctx, declarations.load(ctx.paths, ctx.known_bits))
    for problem in catalogue.problems:
        ctx.report(str(problem))
    ctx.problems[0] += len(catalogue.problems)
    return catalogue


def _awaited(ctx: Context, catalogue: declarations.Catalogue) -> declarations.Catalogue:
    """Without what a package's configure, still to come, will decide
    (declarations.observed.awaiting)."""
    from capsnap.declarations import observed

    left = observed.awaiting(ctx.paths, catalogue)
    if left:
        catalogue.declarations = [d for d in catalogue.declarations
                                  if not any(d is w for w in left)]
    return catalogue


def _snapshot(ctx: Context, store: Store, scope: Scope, tid: int, phase: str,
              catalogue: declarations.Catalogue | None = None) -> int:
    if catalogue is None:
        catalogue = declarations.load(ctx.paths, ctx.known_bits)
    snapshot_id, stats = snapshot.take(ctx.paths, store, scope, ctx.known_bits, catalogue,
                                       roots=ctx.roots, transaction_id=tid, phase=phase)
    for path, why in stats.unreadable:
        ctx.report(f"{path}: cannot read: {why}")
    return snapshot_id


def _reapply(ctx: Context, packages: Iterable[str] | None,
             touched: set[str] | frozenset[str] = frozenset(),
             catalogue: declarations.Catalogue | None = None,
             store: Store | None = None, record: bool = True) -> list[reapply.Finding]:
    """Reapply the declarations of `packages` (all when None) and of `touched`
    paths; unless `record` is false, what was done goes to the open
    transaction (in `store`, if given)."""
    if catalogue is None:
        catalogue = _catalogue(ctx)
    resolved = catalogue.resolve(declarations.canonical_in(ctx.paths))
    items = reapply.select(resolved, packages)
    if touched and packages is not None:
        chosen = {item.path for item in items}
        items += [item for item in resolved if item.path in touched and item.path not in chosen]
    findings, log_error = reapply.reapply(items, ctx.paths, ctx.known_bits,
                                          everything=catalogue, packages=packages)
    ctx.reapplied[:] = [findings]
    if log_error:
        ctx.report(log_error)
    # dpkg runs capsnap's trigger before its post-invoke hook: what the
    # trigger restored belongs to the transaction still open.
    actions = [(os.fsencode(f.path), f.status, f.detail) for f in findings
               if f.status not in reapply.QUIET]
    if record and actions and store is not None:
        tid = store.open_transaction()
        if tid is not None:
            store.record_actions(tid, actions)
    elif record and actions:
        try:
            if confine.exists(ctx.paths, ctx.db):
                with _store(ctx) as opened:
                    tid = opened.open_transaction()
                    if tid is not None:
                        opened.record_actions(tid, actions)
        except Exception as exc:  # recorded second: the reapply is done
            ctx.report(_not_recorded(ctx, exc))
            # A lost record is a problem strict mode reports, as in the
            # closing hooks (the capabilities are back either way).
            ctx.problems[0] += 1
    return findings


def _last_findings(ctx: Context) -> list[reapply.Finding]:
    return ctx.reapplied[0] if ctx.reapplied else []


def _not_recorded(ctx: Context, exc: BaseException) -> str:
    """The one wording for a record lost (so apt's next hook, which meets the
    same trouble, does not say it again): the capabilities are not lost."""
    return f"not recorded, capabilities put back all the same: {_explain(ctx, exc)}"


def _explain(ctx: Context, exc: BaseException) -> str:
    """One line for a problem met on the way, told apart by what it is:
    capsnap's own errors say it themselves, SQLite's are translated, and an
    environmental fault names the file and the cause, never "internal error"."""
    import sqlite3

    from capsnap.store import describe

    if isinstance(exc, CapsnapError):
        return str(exc)
    if isinstance(exc, sqlite3.Error):
        return str(describe(ctx.db, exc))
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{fileops.describe_oserror(exc)}"
    return f"internal error (please report it): {type(exc).__name__}: {exc}"


def _failures(findings: list[reapply.Finding], ctx: Context) -> int:
    """Report, one line each, what is not in place (and fallbacks); count the former.

    A dormant declaration (its package is not installed) is neither: removing
    a package is no failure, even in strict mode.
    """
    bad = 0
    for f in findings:
        if f.status == reapply.FALLBACK or f.status not in reapply.IN_PLACE:
            ctx.report(f"{f.path}: {f.status}: {f.detail}")
        if f.status not in reapply.IN_PLACE:
            bad += 1
    return bad


TRACKED = Scope("tracked")


def _marker(ctx: Context) -> str:
    return marker_path(ctx.paths)


def marker_path(paths: SystemPaths) -> str:
    """Exists while a transaction is open; capsnap's postinst reads it from sh
    to skip the trigger run that the post-invoke hook makes redundant."""
    return os.path.join(paths.state_dir, "transaction-open")


class Owner(NamedTuple):
    """Who left a marker: the package manager, its process, and the boot."""

    manager: str
    pid: int
    started: str
    boot: str

    def alive(self) -> bool:
        """Still running, this boot: a marker of a killed run is stale."""
        return self.boot == boot_id() and process_start(self.pid) == self.started

    def is_ancestor(self, parent: int) -> bool:
        """The very process a hook running under `parent` runs under."""
        return self.boot == boot_id() and any(
            pid == self.pid and started == self.started
            for pid, _, started in _ancestors(parent))


def _marker_owner(ctx: Context) -> Owner | None:
    return marker_owner(ctx.paths)


def marker_owner(paths: SystemPaths) -> Owner | None:
    """The marker's owner; None when there is no marker or it names nobody
    (an old or damaged one), which is never trusted."""
    try:
        text = confine.read_bytes(paths, marker_path(paths)).decode("ascii", "replace")
    except (OSError, CapsnapError):
        return None
    fields = text.split()
    if len(fields) != 4 or not fields[1].isdigit():
        return None
    return Owner(fields[0], int(fields[1]), fields[2], fields[3])


def _mark_open(ctx: Context, manager: str) -> None:
    """Leave the marker, naming the manager, the process that runs it and the boot."""
    front_end = _front_end(ctx.parent) or f"{ctx.parent} {process_start(ctx.parent)}"
    try:
        confine.write_atomically(ctx.paths, _marker(ctx),
                                 f"{manager} {front_end} {boot_id()}\n".encode("ascii"))
    except CapsnapError as exc:
        ctx.report(str(exc))
    except OSError as exc:
        ctx.report(f"{_marker(ctx)}: {exc.strerror}")


def _inside_apts_transaction(ctx: Context) -> bool:
    """Whether apt's hooks hold a transaction open and this process runs under
    the very front end that opened it (not a stale marker of a killed one)."""
    owner = _marker_owner(ctx)
    return owner is not None and owner.manager == "apt" and owner.is_ancestor(ctx.parent)


def _close_stale(ctx: Context, store: Store, owner_alive: bool) -> None:
    """Close a transaction its own run left open: rpm runs no trigger after
    a transaction that only erased (its %transfiletriggerpostun is not
    reliable), and a closing hook may have been killed.  The next run
    records what changed since it began, as things are now."""
    tid = store.open_transaction()
    if tid is None or owner_alive:
        return
    info = store.transaction_info(tid)
    if info.before_id is None:
        return
    baseline = store.baseline(tid)
    if baseline:
        store.add_transaction_packages(tid, _changed(baseline, _versions(ctx.paths)))
    _snapshot(ctx, store, TRACKED, tid, "after")


def begin(ctx: Context, manager: str, scope: Scope = TRACKED) -> int:
    _reset_reported(ctx)
    owner = _marker_owner(ctx)
    # The marker first: whether or not the store can record it, the
    # transaction is open for the hooks that follow (dpkg's under apt only
    # reapply, and each problem is said once).
    _mark_open(ctx, manager)
    with _store(ctx) as store:
        _close_stale(ctx, store, owner is not None and owner.alive())
        tid = store.begin_transaction(manager, [])
        store.set_baseline(tid, _versions(ctx.paths))
        _snapshot(ctx, store, scope, tid, "before")
    return tid


def _touched(ctx: Context, before: Iterable[Row]) -> set[str]:
    """Tracked paths whose file the transaction replaced, removed or created.

    A reinstall of the same version changes no version, yet dpkg writes
    every file anew, dropping its capabilities.
    """
    touched = set()
    for row in before:
        path = os.fsdecode(row.path)
        now = snapshot.probe(path, ctx.paths, ctx.known_bits)
        if not snapshot.same_file(row, now):
            touched.add(path)
    return touched


class Watch(NamedTuple):
    """What a closing hook needs to learn what packages' configure set
    (declarations.observed): when the run began, and the tracked paths then."""

    started_ns: int
    before: list[Row]


def _watch(ctx: Context, before: list[Row]) -> Watch | None:
    """apt's run began when its first hook left the marker."""
    try:
        return Watch(confine.lstat(ctx.paths, _marker(ctx)).st_mtime_ns, before)
    except (OSError, CapsnapError):
        return None


def finish(ctx: Context, tid: int, announced: Iterable[str] = (), watch: bool = False) -> int:
    """Reapply what the transaction touched, take the after snapshot, close it;
    with `watch` (apt's, whose runs dpkg configures in), learn what the
    packages' configure set."""
    catalogue = _catalogue(ctx)

    def record(store: Store) -> list[reapply.Finding]:
        changed = _changed(store.baseline(tid), _versions(ctx.paths))
        store.add_transaction_packages(tid, changed)
        names = sorted({name for name, _, _ in changed} | set(announced))
        before = store.transaction_info(tid).before_id
        rows = list(store.rows(before)) if before is not None else []
        return _reapply_and_take_after(ctx, store, tid, changed, names, _touched(ctx, rows),
                                       catalogue, also=announced,
                                       watch=_watch(ctx, rows) if watch else None)

    return _close(ctx, record, catalogue)


def _reapply_and_take_after(ctx: Context, store: Store, tid: int,
                            changed: list[tuple[str, str | None, str | None]],
                            names: list[str] | None, touched: set[str],
                            catalogue: declarations.Catalogue,
                            also: Iterable[str] = (),
                            watch: Watch | None = None) -> list[reapply.Finding]:
    """A closing hook's last steps: reapply what the transaction touched (the
    declarations of `names`, every one when None, and of the touched paths),
    then take the after snapshot of the packages it installed or upgraded,
    and of those it was told of (`also`) that are installed: apt-get -f
    install configures a package dpkg -i left unpacked, at the same
    version, and its postinst may set capabilities then.  With a `watch`,
    what the packages it configured set on their files is learned
    (declarations.observed): what they took away before the reapply, which
    must not put it back; what they gave from the after snapshot."""
    versions = _versions(ctx.paths) if also else {}
    installed = tuple(sorted({n for n, _, new in changed if new}
                             | {n for n in also if n in versions and ":" not in n}))
    if watch is not None and installed and \
            _observe(ctx, store, watch, installed, catalogue, None):
        catalogue = _awaited(ctx, declarations.load(ctx.paths, ctx.known_bits))
    findings = _reapply(ctx, names, touched, catalogue, store) \
        if names is None or names or touched else []
    _forget_purged(ctx, [n for n, _, new in changed if new is None])
    after = _snapshot(ctx, store, Scope("package", installed) if installed else TRACKED, tid,
                      "after", catalogue)
    if watch is not None and installed:
        _observe(ctx, store, watch, installed, catalogue, after)
    return findings


def _observe(ctx: Context, store: Store, watch: Watch, names: Iterable[str],
             catalogue: declarations.Catalogue,
             after: int | None) -> bool:
    """declarations.observed's step before the reapply (`after` None) or
    after the after snapshot; its trouble is reported, the run goes on."""
    from capsnap.declarations import observed

    try:
        return observed.observe(ctx.paths, ctx.known_bits, catalogue, names,
                                watch.started_ns, watch.before,
                                None if after is None else store.rows(after))
    except Exception as exc:
        ctx.report(f"what packages set during their configure not learned: "
                   f"{_explain(ctx, exc)}")
        return False


def _forget_purged(ctx: Context, gone: list[str]) -> None:
    """capsnap's records of packages purged in the transaction, whatever
    built them (a postrm made by dh_capsnap does this too)."""
    from capsnap.declarations import dpkg, rpm

    for name in gone:
        if dpkg.in_database(ctx.paths, name) or rpm.package_version(ctx.paths, name):
            continue
        try:
            reapply.forget(ctx.paths, name)
        except CapsnapError as exc:
            ctx.report(str(exc))


def _close(ctx: Context, record: Callable[[Store], list[reapply.Finding]],
           catalogue: declarations.Catalogue) -> int:
    """Run a closing hook's `record` with the store, then remove the marker
    (and dpkg's status link) whatever happened.

    When the store cannot be used (damaged, locked, a full disk), what is
    declared is put back all the same: the record is lost, not the
    capabilities, and no marker is left behind to silence the next trigger.
    """
    try:
        try:
            with _store(ctx) as store:
                findings = record(store)
                _retain(ctx, store)
        except Exception as exc:  # the store's trouble must not stop the reapply
            ctx.report(_not_recorded(ctx, exc))
            ctx.problems[0] += 1
            findings = _reapply(ctx, None, catalogue=catalogue, record=False) \
                if not ctx.reapplied else _last_findings(ctx)
    finally:
        _clear_markers(ctx)
    return _failures(findings, ctx)


def _retain(ctx: Context, store: Store) -> None:
    """Apply capsnap.conf's retention once the transaction is recorded; its
    trouble is reported, never taken for the record's."""
    keep, keep_days = ctx.retention
    try:
        if store.prune(keep, keep_days):
            store.reclaim(thorough=False)
    except Exception as exc:
        ctx.report(f"old snapshots not pruned: {_explain(ctx, exc)}")


def _clear_markers(ctx: Context) -> None:
    """Remove the marker, dpkg's status link and the transaction's reported
    problems; nothing to say about one that is not there."""
    from capsnap import background

    for leftover in (_status_before(ctx), _caps_before(ctx), _marker(ctx),
                     _reported_file(ctx), *background.files(ctx.paths)):
        try:
            confine.unlink(ctx.paths, leftover)
        except FileNotFoundError:
            pass
        except (OSError, CapsnapError) as exc:
            if exists_quietly(ctx, leftover):
                ctx.report(f"{leftover}: cannot remove: {_explain(ctx, exc)}")


def exists_quietly(ctx: Context, path: str) -> bool:
    try:
        return confine.exists(ctx.paths, path)
    except CapsnapError:
        return False


def _open_transaction(ctx: Context, manager: str) -> int | None:
    """The manager's open transaction; None when there is none or the store
    cannot say (a closing hook then reapplies without a record)."""
    try:
        if not confine.exists(ctx.paths, ctx.db):
            return None
        with _store(ctx) as store:
            tid = store.open_transaction()
            if tid is not None and store.transaction_manager(tid) == manager:
                return tid
    except Exception as exc:  # the store's trouble must not stop the reapply
        ctx.report(_not_recorded(ctx, exc))
        ctx.problems[0] += 1
        ctx.store_failed[:] = [True]
    return None


# --- the hooks -----------------------------------------------------------------

def apt_pre_invoke(ctx: Context) -> int:
    begin(ctx, "apt")
    return 0


def parse_apt_packages(lines: Iterable[str]) -> list[tuple[str, str | None, str | None]]:
    """(package, old, new) from apt's Pre-Install-Pkgs protocol version 2 or 3."""
    out = []
    body = False
    for line in lines:
        line = line.rstrip("\n")
        if not body:
            body = line == ""
            continue
        fields = line.split()
        if len(fields) == 9:  # v3: name old arch ma cmp new arch ma action
            name, old, new = fields[0], fields[1], fields[5]
        elif len(fields) == 5:  # v2: name old cmp new action
            name, old, new = fields[0], fields[1], fields[3]
        else:
            continue
        out.append((name, None if old == "-" else old, None if new == "-" else new))
    return out


def apt_pre_install_pkgs(ctx: Context) -> int:
    lines = ctx.stdin.read().splitlines()
    if not lines or not lines[0].startswith("VERSION "):
        raise InvalidInput("apt-pre-install-pkgs: expected apt's protocol version 2 or 3 "
                           "on stdin (DPkg::Tools::Options::...::Version \"3\")")
    packages = parse_apt_packages(lines)
    tid = _open_transaction(ctx, "apt")
    if ctx.store_failed:
        return 0  # said once; apt's transaction goes on without a record
    with _store(ctx) as store:
        if tid is None:
            tid = store.begin_transaction("apt", [])
            store.set_baseline(tid, _versions(ctx.paths))
            _mark_open(ctx, "apt")
        store.add_transaction_packages(tid, packages)
        installed = tuple(sorted(name for name, old, _ in packages if old))
        scope = Scope("package", installed) if installed else TRACKED
        before = store.transaction_info(tid).before_id
        if before is None:
            _snapshot(ctx, store, scope, tid, "before")
        elif installed:
            # apt-pre-invoke took the transaction's before snapshot (of the
            # tracked paths) a moment ago: the packages' files with
            # capabilities join it.
            store.extend_snapshot(before, scope.describe(),
                                  snapshot.live_rows(ctx.paths, scope, ctx.known_bits))
    return 0


def _end_without_record(ctx: Context, manager: str) -> int:
    """A closing hook with no transaction of its own to close (its begin
    could not record one): reapply, and end the transaction its begin
    marked, unless the marker is another live run's."""
    owner = _marker_owner(ctx)
    if owner is None or owner.manager == manager or not owner.alive():
        _clear_markers(ctx)
    return _failures(_reapply(ctx, None, record=False), ctx)


def apt_post_invoke(ctx: Context) -> int:
    tid = _open_transaction(ctx, "apt")
    if tid is None:
        return _end_without_record(ctx, "apt")
    try:
        with _store(ctx) as store:
            announced = [p for p, _, _ in store.transaction_info(tid).packages]
    except Exception as exc:  # the store's trouble must not stop the reapply
        ctx.report(_not_recorded(ctx, exc))
        ctx.problems[0] += 1
        _clear_markers(ctx)
        return _failures(_reapply(ctx, None, record=False), ctx)
    return finish(ctx, tid, announced, watch=True)


def dpkg_post_invoke(ctx: Context) -> int:
    from capsnap import background

    # Run here, not by the background process dpkg's pre-invoke line
    # started (capsnap.background): that one is stopped, hung or late, and
    # must not outlive the run or do the work twice.
    background.stop(ctx.paths)
    if _inside_apts_transaction(ctx):
        # Restore between apt's dpkg runs too; apt's post-invoke records it.
        return _failures(_reapply(ctx, None), ctx)
    return dpkg_finish(ctx)


def _status_before(ctx: Context) -> str:
    """Where dpkg's pre-invoke hook links the status file as the run began."""
    return os.path.join(ctx.paths.state_dir, "dpkg-status.before")


def _before_rows(ctx: Context, store: Store, wanted: list[bytes], started_ns: int,
                 owners: dict[bytes, tuple[str, str]],
                 versions: tuple[dict[str, str], dict[str, str]]) -> list[Row]:
    """The tracked paths as they were when dpkg began, without a snapshot then.

    dpkg's pre-invoke hook is sh, not a python start (which would cost more
    than the whole run of a small package): a file whose ctime is older than
    the marker it wrote is as it was; one the run touched was as the newest
    snapshot last saw it (a file the run rewrote on a filesystem that keeps
    whole seconds counts as touched: wrongly so only if the administrator
    changed it in the second before the run).  A path declared since the
    newest snapshot has no row there: its package's version before the run
    (`versions`: changed packages, before and after) says whose file it was.
    """
    known = store.newest_rows(wanted)
    rows = []
    for path in wanted:
        try:
            ctime: int | None = confine.lstat(ctx.paths,
                                              ctx.paths.inside(os.fsdecode(path))).st_ctime_ns
        except OSError:
            ctime = None
        last = known.get(path)
        if ctime is not None and ctime % 1_000_000_000 == 0:
            # A filesystem that keeps whole seconds: a change in the second
            # the run began may look older than the marker.
            ctime += 1_000_000_000
        if ctime is not None and ctime < started_ns:
            row = snapshot.probe(os.fsdecode(path), ctx.paths, ctx.known_bits)
            owner = (last.package, last.version) if last and last.inode == row.inode \
                else owners.get(path, (None, None))
            rows.append(row._replace(package=owner[0], version=owner[1]))
        elif last is not None:
            rows.append(last)
        else:
            rows.append(_unseen(ctx, path, versions))
    return rows


def _unseen(ctx: Context, path: bytes, versions: tuple[dict[str, str], dict[str, str]]) \
        -> Row:
    """A path the run touched and no snapshot recorded: its owner's file at
    the owner's version before the run, if the owner was installed then."""
    owned = snapshot.attribute(ctx.paths, [Row(path, None, None, None, None, None, True)])[0]
    before, after = versions
    package = owned.package
    if package is None or (package in after and package not in before):
        return Row(path, None, None, None, None, None, False)
    return owned._replace(version=before.get(package, owned.version))


def _caps_before(ctx: Context) -> str:
    """Where dpkg's pre-invoke hook notes (getcap) the capabilities of the
    files of the packages on dpkg's command line."""
    return os.path.join(ctx.paths.state_dir, "dpkg-caps.before")


def _noted_caps(ctx: Context) -> dict[bytes, bytes]:
    """The capabilities the pre-invoke hook saw, by the file's one name, as
    security.capability bytes; what is not getcap's form is left out."""
    from capsnap import captext, xattr

    try:
        text = confine.read_bytes(ctx.paths, _caps_before(ctx))
    except FileNotFoundError:
        return {}
    canonical = snapshot.canonical_paths(ctx.paths)
    noted: dict[bytes, bytes] = {}
    for line in text.split(b"\n"):
        # "PATH TEXT": a path may hold spaces, capability text too ("=ep cap_chown-ep").
        at = line.find(b" ")
        while at > 0:
            try:
                caps = captext.parse(line[at + 1:].decode("ascii"), ctx.known_bits)
                raw = xattr.encode(caps)
            except (CapsnapError, UnicodeDecodeError, ValueError):
                at = line.find(b" ", at + 1)
                continue
            noted[os.fsencode(canonical(os.fsdecode(line[:at])))] = raw
            break
    return noted


def _with_noted(ctx: Context, rows: list[Row], noted: dict[bytes, bytes],
                versions: dict[str, str]) -> list[Row]:
    """The before rows, with what the pre-invoke hook noted: a capability set
    by hand since the last snapshot, on a file this run replaced, is known
    only from there.  Its file's identity is not (no inode: diff then says
    lost, not replaced)."""
    if not noted:
        return rows
    from capsnap import captext, xattr

    by_path = {row.path: row for row in rows}
    for path, raw in noted.items():
        row = by_path.get(path)
        if row is not None and row.raw == raw:
            continue
        caps = xattr.decode(raw)
        text = captext.format_text(caps.capset(), ctx.known_bits)
        if row is not None and row.present:
            by_path[path] = row._replace(raw=raw, text=text, rootid=None)
        else:
            by_path[path] = Row(path, raw, text, None, None, None, True)
    fresh = [r for p, r in by_path.items() if p in noted and r.package is None]
    owned = {r.path: r for r in snapshot.attribute(ctx.paths, fresh)}
    out = []
    for path in sorted(by_path):
        row = owned.get(path, by_path[path])
        if path in owned and row.package is not None:
            # The version the package had when the run began.
            row = row._replace(version=versions.get(row.package, row.version))
        out.append(row)
    return out


def dpkg_finish(ctx: Context) -> int:
    """Record dpkg's run as a transaction: what changed since its pre-invoke
    hook linked the status file, the tracked paths before and after, and
    what was reapplied in between."""
    from capsnap.declarations import dpkg

    owner = _marker_owner(ctx)
    try:
        # Only this very dpkg's marker and link say when and from what it
        # began: one a killed run left behind is stale, never trusted.
        if owner is None or owner.manager != "dpkg" or not owner.is_ancestor(ctx.parent):
            raise FileNotFoundError
        started_ns = confine.lstat(ctx.paths, _marker(ctx)).st_mtime_ns
        before, after = dpkg.changed_versions(ctx.paths, _status_before(ctx))
        everything = False
        noted = _noted_caps(ctx)
    except (OSError, CapsnapError):
        # No pre-invoke of this run: what changed is unknown, every tracked
        # path is suspect and every declaration is reapplied.
        started_ns = time.time_ns()
        before, after, everything = {}, {}, True
        noted = {}
    # A paragraph that changed at the same version: dpkg unpacked,
    # reinstalled or configured the package (its files may be new).
    changed = sorted(_changed(before, after) + [
        (n, v, v) for n, v in before.items() if after.get(n) == v and ":" not in n])
    catalogue = _catalogue(ctx)

    def record(store: Store) -> list[reapply.Finding]:
        # Not under apt (or this would be apt's): whatever is open is stale.
        _close_stale(ctx, store, owner_alive=False)
        tid = store.begin_transaction("dpkg", changed)
        wanted, owners = snapshot.tracked(store, catalogue, ctx.paths)
        rows = _with_noted(ctx, _before_rows(ctx, store, wanted, started_ns, owners,
                                             (before, after)), noted, before)
        store.add_snapshot(TRACKED.describe(), ctx.paths.root, rows, transaction_id=tid,
                           phase="before")
        names = None if everything else [name for name, _, _ in changed]
        return _reapply_and_take_after(ctx, store, tid, changed, names, _touched(ctx, rows),
                                       catalogue,
                                       watch=None if everything else Watch(started_ns, rows))

    return _close(ctx, record, catalogue)


def dpkg_triggered(ctx: Context) -> int:
    owner = _marker_owner(ctx)
    if owner is not None and owner.alive():
        return 0  # the open transaction's post-invoke hook reapplies
    return _failures(_reapply(ctx, None), ctx)


def _stdin_paths(ctx: Context) -> tuple[str, ...]:
    if ctx.stdin.isatty():
        return ()
    return tuple(sorted({line.strip() for line in ctx.stdin if line.startswith("/")}))


def rpm_pre(ctx: Context) -> int:
    paths = _stdin_paths(ctx)
    begin(ctx, "rpm", Scope("path", paths) if paths else TRACKED)
    return 0


def _post(ctx: Context, manager: str) -> int:
    """Close the manager's open transaction; without one, just reapply."""
    tid = _open_transaction(ctx, manager)
    if tid is None:
        return _end_without_record(ctx, manager)
    return finish(ctx, tid)


def rpm_post(ctx: Context) -> int:
    return _post(ctx, "rpm")


def dnf_pre(ctx: Context) -> int:
    begin(ctx, "dnf")
    return 0


def dnf_post(ctx: Context) -> int:
    return _post(ctx, "dnf")


def baseline(ctx: Context) -> int:
    """capsnap is being installed: a full snapshot, so that every capability
    already on the machine is tracked from the first package run on (the
    first one, labelled "baseline", is what 'capsnap diff baseline' names)."""
    catalogue = _catalogue(ctx)
    with _store(ctx) as store:
        label = None if any(s.label == "baseline" for s in store.snapshots()) else "baseline"
        _, stats = snapshot.take(ctx.paths, store, Scope("full"), ctx.known_bits, catalogue,
                                 roots=ctx.roots, label=label)
    for path, why in stats.unreadable:
        ctx.report(f"{path}: cannot read: {why}")
    return 0


HOOKS: dict[str, Callable[[Context], int]] = {
    "apt-pre-invoke": apt_pre_invoke,
    "apt-pre-install-pkgs": apt_pre_install_pkgs,
    "apt-post-invoke": apt_post_invoke,
    "dpkg-post-invoke": dpkg_post_invoke,
    "dpkg-triggered": dpkg_triggered,
    "rpm-pre": rpm_pre,
    "rpm-post": rpm_post,
    "dnf-pre-transaction": dnf_pre,
    "dnf-post-transaction": dnf_post,
    "baseline": baseline,
}


# Hooks whose job includes putting capabilities back: whatever goes wrong,
# they end by reapplying (without a record if need be).
_CLOSING = {"apt-post-invoke", "dpkg-post-invoke", "dpkg-triggered", "rpm-post",
            "dnf-post-transaction"}
# A flood (a field of 25,000 malformed entries) is cut after this many lines.
_SHOWN_ON_STDERR = 10
_KEPT_IN_LOG = 200


def _reported_file(ctx: Context) -> str:
    """Problems already shown in the open transaction: apt runs several hooks
    and dpkg several times, and each must not repeat them all."""
    return os.path.join(ctx.paths.state_dir, "transaction-reported")


def _reset_reported(ctx: Context) -> None:
    with contextlib.suppress(OSError, CapsnapError):
        confine.unlink(ctx.paths, _reported_file(ctx))


def _reported(ctx: Context, owner: Owner | None) -> set[str]:
    """What the transaction `owner` holds open has shown already: read as a
    hook starts, since a closing hook removes the file with the marker."""
    if owner is None:
        return set()
    try:
        lines = confine.read_bytes(ctx.paths, _reported_file(ctx)).decode(
            "ascii", "replace").splitlines()
    except (OSError, CapsnapError):
        return set()
    return set(lines[1:]) if lines and lines[0] == _owner_key(owner) else set()


def _owner_key(owner: Owner) -> str:
    return " ".join(str(field) for field in owner)


def _first_time(ctx: Context, messages: list[str], owner: Owner | None,
                seen: set[str]) -> list[str]:
    """The messages not yet shown in the transaction `owner` holds open."""
    if owner is None or not messages:
        return messages
    import zlib

    digests = [f"{zlib.crc32(m.encode('utf-8', 'surrogateescape')):08x}" for m in messages]
    fresh = [m for m, d in zip(messages, digests, strict=True) if d not in seen]
    if fresh and _marker_owner(ctx) == owner:  # the transaction is still open
        with contextlib.suppress(OSError, CapsnapError):
            confine.write_atomically(ctx.paths, _reported_file(ctx), "\n".join(
                [_owner_key(owner), *sorted(seen | set(digests))]).encode("ascii") + b"\n")
    return fresh


def _cut(messages: list[str], limit: int, where: str) -> list[str]:
    if len(messages) <= limit:
        return messages
    return [*messages[:limit], f"... and {len(messages) - limit} more problems{where}"]


def run(name: str, paths: SystemPaths, db: str | None, known_bits: int,
        stdin: TextIO = sys.stdin, parent: int | None = None) -> int:
    """Run one hook; the exit code for the package manager (0 unless strict).
    `parent`: the process it runs for, when that is not its parent."""
    try:
        return _run(name, paths, db, known_bits, stdin,
                    os.getppid() if parent is None else parent)
    finally:
        confine.release()


def _run(name: str, paths: SystemPaths, db: str | None, known_bits: int,
         stdin: TextIO, parent: int) -> int:
    os.umask(0o022)  # apt's hooks inherit their caller's umask
    settings, problems = config.load(paths)
    messages: list[str] = list(problems)

    def report(message: str) -> None:
        messages.append(message)

    ctx = Context(paths, db or paths.snapshot_db, known_bits, stdin, report, [0],
                  settings.roots, settings.wait, (settings.keep, settings.keep_days), [], [],
                  parent)
    failures = 0
    owner = _marker_owner(ctx)
    seen = _reported(ctx, owner)
    try:
        if name not in HOOKS:
            raise InvalidInput(f"unknown hook {name!r} (known: {', '.join(HOOKS)})")
        failures = HOOKS[name](ctx) + ctx.problems[0]
    except Exception as exc:  # a hook must not take the package manager down
        import sqlite3

        from capsnap.store import StoreError

        report(_not_recorded(ctx, exc) if isinstance(exc, StoreError | sqlite3.Error)
               else _explain(ctx, exc))
        failures += 1
        if name in _CLOSING and not ctx.reapplied:
            # Reapply first, record second: whatever failed, put back what
            # can be put back.
            try:
                failures += _failures(_reapply(ctx, None, record=False), ctx)
            except Exception as again:
                report(f"cannot reapply: {_explain(ctx, again)}")
    # Paths, symlink targets and package fields are anyone's text: escaped,
    # they cannot forge a log line or drive apt's terminal.
    now = _marker_owner(ctx)
    shown = [escape(m) for m in _first_time(ctx, messages, now or owner,
                                            seen if now in (None, owner) else set())]
    log_name = os.path.basename(paths.log_file)
    for message in _cut(shown, _SHOWN_ON_STDERR, f" (see {paths.log_file})"):
        sys.stderr.write(f"capsnap: hook {name}: {message}\n")
    _log(paths, name, _cut(shown, _KEPT_IN_LOG, f" (not kept in {log_name})"))
    if failures and settings.strict:
        sys.stderr.write(f"capsnap: hook {name}: failing the package manager "
                         "(strict = yes in /etc/capsnap/capsnap.conf)\n")
        return 1
    return 0


def _log(paths: SystemPaths, name: str, messages: list[str]) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    # Nowhere left to report a log that cannot be written: stderr already has it.
    reapply.append_log(paths, [f"{stamp} hook {name}: {m}" for m in messages])
