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

import os
import sys
import time
from collections.abc import Callable, Iterable

from capsnap import config, confine, declarations, reapply, snapshot
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


def _ancestors() -> list[tuple[int, str, str]]:
    """(pid, command name, start time) of each process above this one."""
    out: list[tuple[int, str, str]] = []
    pid = os.getppid()
    while pid > 1 and len(out) < 32:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            break
        fields = stat[stat.rfind(")") + 2:].split()
        out.append((pid, stat[stat.find("(") + 1:stat.rfind(")")], fields[19]))
        pid = int(fields[1])
    return out


def _front_end() -> str:
    """The process that runs this hook through sh (apt, aptitude, nala, ...),
    as "pid starttime": the start time tells a reused pid apart.  apt runs
    hooks from a forked copy of itself, so the topmost of a run of same-named
    processes is the one dpkg will run under."""
    found = None
    for pid, name, started in _ancestors():
        if found is None and name in _SHELLS:
            continue
        if found is not None and name != found[1]:
            break
        found = (pid, name, started)
    return f"{found[0]} {found[2]}" if found else ""


def _catalogue(ctx: Context) -> declarations.Catalogue:
    catalogue = declarations.load(ctx.paths, ctx.known_bits)
    for problem in catalogue.problems:
        ctx.report(str(problem))
    ctx.problems[0] += len(catalogue.problems)
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
    if log_error:
        ctx.report(log_error)
    # dpkg runs capsnap's trigger before its post-invoke hook: what the
    # trigger restored belongs to the transaction still open.
    actions = [(os.fsencode(f.path), f.status, f.detail) for f in findings
               if f.status != reapply.OK]
    if record and actions and store is not None:
        tid = store.open_transaction()
        if tid is not None:
            store.record_actions(tid, actions)
    elif record and actions and confine.exists(ctx.paths, ctx.db):
        with Store(ctx.db, paths=ctx.paths) as opened:
            tid = opened.open_transaction()
            if tid is not None:
                opened.record_actions(tid, actions)
    return findings


def _failures(findings: list[reapply.Finding], ctx: Context) -> int:
    """Report, one line each, what is not in place (and fallbacks); count the former."""
    bad = 0
    for f in findings:
        if f.status == reapply.FALLBACK or f.status not in reapply.IN_PLACE:
            ctx.report(f"{f.path}: {f.status}: {f.detail}")
        if f.status not in reapply.IN_PLACE:
            bad += 1
    return bad


TRACKED = Scope("tracked")


def _marker(ctx: Context) -> str:
    """Exists while a transaction is open; capsnap's postinst reads it from sh
    to skip the trigger run that the post-invoke hook makes redundant."""
    return os.path.join(ctx.paths.state_dir, "transaction-open")


def _mark_open(ctx: Context, manager: str) -> None:
    """Leave the marker, naming the manager and the process that runs it."""
    try:
        confine.write_atomically(ctx.paths, _marker(ctx),
                                 f"{manager} {_front_end()}\n".encode("ascii"))
    except CapsnapError as exc:
        ctx.report(str(exc))
    except OSError as exc:
        ctx.report(f"{_marker(ctx)}: {exc.strerror}")


def _inside_apts_transaction(ctx: Context) -> bool:
    """Whether apt's hooks hold a transaction open and this process runs under
    the very front end that opened it (not a stale marker of a killed one)."""
    try:
        text = confine.read_bytes(ctx.paths, _marker(ctx)).decode("ascii", "replace")
    except OSError:
        return False
    manager, _, front_end = text.strip().partition(" ")
    return manager == "apt" and front_end in {f"{pid} {started}"
                                              for pid, _, started in _ancestors()}


def begin(ctx: Context, manager: str, scope: Scope = TRACKED) -> int:
    with Store(ctx.db, paths=ctx.paths) as store:
        tid = store.begin_transaction(manager, [])
        store.set_baseline(tid, _versions(ctx.paths))
        _snapshot(ctx, store, scope, tid, "before")
    _mark_open(ctx, manager)
    return tid


def _touched(ctx: Context, before: Iterable[Row]) -> set[str]:
    """Tracked paths whose file the transaction replaced, removed or created.

    A reinstall of the same version changes no version, yet dpkg writes
    every file anew, dropping its capabilities.
    """
    touched = set()
    for row in before:
        path = os.fsdecode(row.path)
        try:
            inode: int | None = confine.lstat(ctx.paths, ctx.paths.inside(path)).st_ino
        except OSError:
            inode = None
        if inode != row.inode or (row.present and inode is None):
            touched.add(path)
    return touched


def finish(ctx: Context, tid: int, announced: Iterable[str] = ()) -> int:
    """Reapply what the transaction touched, take the after snapshot, close it."""
    catalogue = _catalogue(ctx)

    def record(store: Store) -> list[reapply.Finding]:
        changed = _changed(store.baseline(tid), _versions(ctx.paths))
        store.add_transaction_packages(tid, changed)
        names = sorted({name for name, _, _ in changed} | set(announced))
        before = store.transaction_info(tid).before_id
        touched = _touched(ctx, store.rows(before)) if before is not None else set()
        return _reapply_and_take_after(ctx, store, tid, changed, names, touched, catalogue)

    return _close(ctx, record, catalogue)


def _reapply_and_take_after(ctx: Context, store: Store, tid: int,
                            changed: list[tuple[str, str | None, str | None]],
                            names: list[str] | None, touched: set[str],
                            catalogue: declarations.Catalogue) -> list[reapply.Finding]:
    """A closing hook's last steps: reapply what the transaction touched (the
    declarations of `names`, every one when None, and of the touched paths),
    then take the after snapshot of the packages it installed or upgraded."""
    findings = _reapply(ctx, names, touched, catalogue, store) \
        if names is None or names or touched else []
    installed = tuple(n for n, _, new in changed if new)
    _snapshot(ctx, store, Scope("package", installed) if installed else TRACKED, tid, "after",
              catalogue)
    return findings


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
            with Store(ctx.db, paths=ctx.paths) as store:
                findings = record(store)
        except Exception as exc:  # the store's trouble must not stop the reapply
            ctx.report(f"cannot record the transaction in {ctx.db}: {exc}; "
                       "reapplying without a record")
            ctx.problems[0] += 1
            findings = _reapply(ctx, None, catalogue=catalogue, record=False)
    finally:
        for leftover in (_status_before(ctx), _marker(ctx)):
            try:
                confine.unlink(ctx.paths, leftover)
            except OSError as exc:
                ctx.report(f"{leftover}: {exc.strerror}")
    return _failures(findings, ctx)


def _open_transaction(ctx: Context, manager: str) -> int | None:
    if not confine.exists(ctx.paths, ctx.db):
        return None
    with Store(ctx.db, paths=ctx.paths) as store:
        tid = store.open_transaction()
        if tid is not None and store.transaction_manager(tid) == manager:
            return tid
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
    with Store(ctx.db, paths=ctx.paths) as store:
        if tid is None:
            tid = store.begin_transaction("apt", [])
            store.set_baseline(tid, _versions(ctx.paths))
            _mark_open(ctx, "apt")
        store.add_transaction_packages(tid, packages)
        installed = tuple(sorted(name for name, old, _ in packages if old))
        scope = Scope("package", installed) if installed else TRACKED
        _snapshot(ctx, store, scope, tid, "before")
    return 0


def apt_post_invoke(ctx: Context) -> int:
    tid = _open_transaction(ctx, "apt")
    if tid is None:
        return _failures(_reapply(ctx, None), ctx)
    with Store(ctx.db, paths=ctx.paths) as store:
        announced = [p for p, _, _ in store.transaction_info(tid).packages]
    return finish(ctx, tid, announced)


def dpkg_post_invoke(ctx: Context) -> int:
    if _inside_apts_transaction(ctx):
        # Restore between apt's dpkg runs too; apt's post-invoke records it.
        return _failures(_reapply(ctx, None), ctx)
    return dpkg_finish(ctx)


def _status_before(ctx: Context) -> str:
    """Where dpkg's pre-invoke hook links the status file as the run began."""
    return os.path.join(ctx.paths.state_dir, "dpkg-status.before")


def _before_rows(ctx: Context, store: Store, wanted: list[bytes], started_ns: int,
                 owners: dict[bytes, tuple[str, str]]) -> list[Row]:
    """The tracked paths as they were when dpkg began, without a snapshot then.

    dpkg's pre-invoke hook is sh, not a python start (which would cost more
    than the whole run of a small package): a file whose ctime is older than
    the marker it wrote is as it was; one the run touched was as the newest
    snapshot last saw it (a file the run rewrote on a filesystem that keeps
    whole seconds counts as touched: wrongly so only if the administrator
    changed it in the second before the run).
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
            rows.append(Row(path, None, None, None, None, None, False))
    return rows


def dpkg_finish(ctx: Context) -> int:
    """Record dpkg's run as a transaction: what changed since its pre-invoke
    hook linked the status file, the tracked paths before and after, and
    what was reapplied in between."""
    try:
        started_ns = confine.lstat(ctx.paths, _marker(ctx)).st_mtime_ns
    except OSError:
        started_ns = time.time_ns()  # no pre-invoke ran: every tracked path is suspect
    from capsnap.declarations import dpkg

    try:
        before, after = dpkg.changed_versions(ctx.paths, _status_before(ctx))
        everything = False
    except OSError:  # what changed is unknown: reapply every declaration
        before, after, everything = {}, {}, True
    changed = _changed(before, after)
    catalogue = _catalogue(ctx)

    def record(store: Store) -> list[reapply.Finding]:
        tid = store.begin_transaction("dpkg", changed)
        wanted, owners = snapshot.tracked(store, catalogue)
        rows = _before_rows(ctx, store, wanted, started_ns, owners)
        store.add_snapshot(TRACKED.describe(), ctx.paths.root, rows, transaction_id=tid,
                           phase="before")
        names = None if everything else [name for name, _, _ in changed]
        return _reapply_and_take_after(ctx, store, tid, changed, names, _touched(ctx, rows),
                                       catalogue)

    return _close(ctx, record, catalogue)


def dpkg_triggered(ctx: Context) -> int:
    if confine.exists(ctx.paths, _marker(ctx)):
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
        return _failures(_reapply(ctx, None), ctx)
    return finish(ctx, tid)


def rpm_post(ctx: Context) -> int:
    return _post(ctx, "rpm")


def dnf_pre(ctx: Context) -> int:
    begin(ctx, "dnf")
    return 0


def dnf_post(ctx: Context) -> int:
    return _post(ctx, "dnf")


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
}


def run(name: str, paths: SystemPaths, db: str | None, known_bits: int,
        stdin: TextIO = sys.stdin) -> int:
    """Run one hook; the exit code for the package manager (0 unless strict)."""
    os.umask(0o022)  # apt's hooks inherit their caller's umask
    settings, problems = config.load(paths)
    messages: list[str] = list(problems)

    def report(message: str) -> None:
        messages.append(message)

    ctx = Context(paths, db or paths.snapshot_db, known_bits,
                  stdin, report, [0], settings.roots)
    failures = 0
    try:
        if name not in HOOKS:
            raise InvalidInput(f"unknown hook {name!r} (known: {', '.join(HOOKS)})")
        failures = HOOKS[name](ctx) + ctx.problems[0]
    except CapsnapError as exc:
        report(str(exc))
        failures += 1
    except Exception as exc:  # a hook must not take the package manager down
        report(f"internal error: {type(exc).__name__}: {exc}")
        failures += 1
    for message in messages:
        sys.stderr.write(f"capsnap: hook {name}: {message}\n")
    _log(paths, name, messages)
    if failures and settings.strict:
        sys.stderr.write(f"capsnap: hook {name}: failing the package manager "
                         "(strict = yes in /etc/capsnap/capsnap.conf)\n")
        return 1
    return 0


def _log(paths: SystemPaths, name: str, messages: list[str]) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    # Nowhere left to report a log that cannot be written: stderr already has it.
    reapply.append_log(paths, [f"{stamp} hook {name}: {m}" for m in messages])
