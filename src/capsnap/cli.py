# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""capsnap's command line: the one place errors become messages and exit codes.

Start-up stays fast because package-manager hooks call this on every
transaction: each command imports what it needs when it runs, argparse
included, and `capsnap hook NAME` (what every hook file runs) is read
without it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from capsnap.display import escape
from capsnap.errors import EXIT_DIFFERENT, EXIT_FAILED, EXIT_OK, EXIT_USAGE, CapsnapError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

PROG = "capsnap"


def _write(stream: Any, text: str) -> None:
    # What is not UTF-8 here is a file's own bytes (generated scripts name paths).
    stream.buffer.write(text.encode("utf-8", "surrogateescape"))


def _out(line: str) -> None:
    # File names are any bytes: escaped, they can neither move the cursor,
    # forge a line nor be mistaken for another name.
    _write(sys.stdout, escape(line) + "\n")


def _err(message: str) -> None:
    # One line, whatever a path or a symlink's target holds.
    _write(sys.stderr, escape(f"{PROG}: {message}") + "\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    _err(f"warning: {message}")


def _print_json(value: Any) -> None:
    import json

    # ASCII only: a path that is not UTF-8 arrives as \\udcXX escapes (the
    # bytes are also given in hex where it matters), never as raw bytes.
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=True, default=str) + "\n")


def _known_bits() -> int:
    from capsnap.fileops import kernel_cap_bits
    return kernel_cap_bits()


# --- get -------------------------------------------------------------------

def _walk(path: str, root: str, visit_file: Callable[[str, str], None]) -> int:
    """Call visit_file(display, host_path) for each regular file under `path`, in
    the order getcap -r (nftw) visits them; the number of unreadable directories.

    The start is resolved inside the root; below it, each directory is opened
    under its parent's descriptor without following a symlink (a directory
    swapped for one meanwhile is reported, not followed), and each file is
    named through its directory's descriptor.  One descriptor per level of
    depth is open at a time.
    """
    import stat as stat_mod

    from capsnap import fileops

    failures = 0
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

    def visit(display: str, fd: int) -> None:
        nonlocal failures
        try:
            with os.scandir(fd) as it:
                entries = list(it)
        except OSError as exc:
            _err(f"{display}: cannot read directory: {fileops.describe_oserror(exc)}")
            failures += 1
            return
        base = display.rstrip("/")
        for entry in entries:
            child = f"{base}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                try:
                    below = os.open(entry.name, flags, dir_fd=fd)
                except OSError as exc:
                    _err(f"{child}: cannot read directory: {fileops.describe_oserror(exc)}")
                    failures += 1
                    continue
                try:
                    visit(child, below)
                finally:
                    os.close(below)
            elif entry.is_file(follow_symlinks=False):
                # The magic link is the directory itself; the name, one
                # component, is not followed if it became a symlink.
                visit_file(child, f"/proc/self/fd/{fd}/{entry.name}")

    with fileops.open_target(path, root) as target:
        if stat_mod.S_ISDIR(target.st.st_mode):
            try:
                top = os.open(".", flags, dir_fd=target.fd)
            except OSError as exc:
                _err(f"{path}: cannot read directory: {fileops.describe_oserror(exc)}")
                return 1
            try:
                visit(path, top)
            finally:
                os.close(top)
        elif target.is_regular:
            visit_file(path, "")
    return failures


def cmd_get(args: argparse.Namespace) -> int:
    from capsnap import filecaps

    known = _known_bits()
    status = EXIT_OK
    results: list[dict[str, object]] = []

    def show(reading: Any) -> None:
        if args.json:
            results.append(reading.as_json(known))
        elif reading.caps is not None:
            line = f"{reading.path} {reading.text(known)}"
            rootid = reading.caps.rootid
            # As getcap -n, a rootid other than 0 and (uid_t)-1, through
            # printf's %d: uids above 2^31 come out negative.  Always, unlike
            # getcap: capabilities a user gave in a namespace of their own
            # must not pass for real ones.
            if rootid not in (0, 0xFFFFFFFF):
                signed = rootid - (1 << 32) if rootid >= 1 << 31 else rootid
                line += f" [rootid={signed}]"
            _out(line)

    def visit_file(display: str, host: str) -> None:
        nonlocal status
        try:
            if not host:
                show(filecaps.read(display, args.root))
            else:
                show(filecaps.read_walked(display, host))
        except CapsnapError as exc:
            _err(str(exc))
            status = EXIT_FAILED

    for path in args.paths:
        try:
            if args.recursive:
                if _walk(path, args.root, visit_file):
                    status = EXIT_FAILED
            else:
                visit_file(path, "")
        except CapsnapError as exc:
            _err(str(exc))
            status = EXIT_FAILED
    if args.json:
        _print_json(results)
    return status


# --- set / verify / remove / parse ---------------------------------------------

def _parse_for_file(text: str) -> Any:
    from capsnap import captext
    return captext.parse_file_caps(text, _known_bits())


def cmd_set(args: argparse.Namespace) -> int:
    from capsnap import filecaps, fileops

    caps = _parse_for_file(args.caps)
    result = filecaps.apply(args.path, caps, rootid=args.rootid, root=args.root,
                            force=args.force)
    # After the fact, so that a refusal stays one line.
    for message in fileops.root_equivalent_warnings(caps):
        warn(message)
    if args.verbose:
        _out(f"{result.path}: {'set' if result.changed else 'already set'}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from capsnap import captext, filecaps

    caps = captext.parse(args.caps, _known_bits())
    verdict = filecaps.verify(args.path, caps, rootid=args.rootid, root=args.root)
    if args.json:
        known = _known_bits()
        _print_json({
            "path": verdict.path,
            "match": verdict.matches,
            "expected": captext.format_text(verdict.expected, known),
            "actual": captext.format_text(verdict.actual, known)
            if verdict.has_xattr else None,
            "differs": verdict.actual.differs_in(verdict.expected),
            "expected_rootid": verdict.expected_rootid,
            "actual_rootid": verdict.actual_rootid,
        })
    else:
        _out(verdict.explain())
    return EXIT_OK if verdict.matches else EXIT_DIFFERENT


def cmd_remove(args: argparse.Namespace) -> int:
    from capsnap import filecaps

    for path in args.paths:
        if not filecaps.remove(path, args.root) and args.verbose:
            _out(f"{path}: had no capabilities")
    return EXIT_OK


def cmd_parse(args: argparse.Namespace) -> int:
    from capsnap import captext, xattr

    known = _known_bits()
    if args.hex:
        _out(xattr.encode(captext.parse_file_caps(args.caps, known), args.rootid).hex())
    else:
        _out(captext.format_text(captext.parse(args.caps, known), known))
    return EXIT_OK


# --- declarations: list / check / reapply / declare / undeclare ---------------

def _on_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except ValueError:  # closed
        return False


def _styled() -> bool:
    """Colour and bold: on a terminal only, and never with NO_COLOR
    (https://no-color.org: set, whatever its value)."""
    return _on_terminal() and "NO_COLOR" not in os.environ


def _shorten(cell: str, width: int) -> str:
    """`cell` in `width` characters: a path loses its middle (its file name
    and top directories say most), anything else its end."""
    if len(cell) <= width:
        return cell
    if width <= 1:
        return "\u2026"[:width]
    if cell.startswith("/"):
        tail = (width - 1) // 2 + (width - 1) % 2
        return cell[:width - 1 - tail] + "\u2026" + cell[len(cell) - tail:]
    return cell[:width - 1] + "\u2026"


def _fit(widths: list[int], headers: list[str], room: int, keep: int | None = None) \
        -> list[int]:
    """Column widths that fit `room` characters (with two spaces between
    columns): the widest are narrowed first, none below its header (or 10
    characters; column `keep`, the one that says what a row is about, not
    below a third of the room); when even that is too wide, so be it."""
    widths = list(widths)
    floor = [min(w, max(len(h), 10, room // 3 if i == keep else 0))
             for i, (w, h) in enumerate(zip(widths, headers, strict=True))]
    excess = sum(widths) + 2 * (len(widths) - 1) - room
    while excess > 0:
        shrinkable = [i for i, w in enumerate(widths) if w > floor[i]]
        if not shrinkable:
            break
        widths[max(shrinkable, key=widths.__getitem__)] -= 1
        excess -= 1
    return widths


def _table(rows: list[list[str]], headers: list[str],
           colours: Sequence[str] | None = None, keep: int | None = None) -> None:
    """A compact aligned table; the last column is never padded.

    On a terminal, long cells are shortened with an ellipsis to fit its
    width (COLUMNS, or the terminal's own), the header is bold and rows
    take `colours` (ANSI codes, one per row), unless NO_COLOR is set;
    piped, every cell is printed whole, without escapes.
    """
    # One test of every cell at once: a diff's table can be 100,000 rows,
    # nearly always with nothing to escape (a space is printable).
    every = " ".join([" ".join(row) for row in rows])
    if not every.isprintable() or "\\" in every:
        rows = [[escape(cell) for cell in row] for row in rows]
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(headers)
    widths = [max(len(h), max(map(len, c), default=0)) for h, c in zip(headers, columns,
                                                                         strict=True)]
    terminal = _on_terminal()
    if terminal:
        widths = _fit(widths, headers, _columns(margin=0), keep)
        rows = [[_shorten(c, w) for c, w in zip(row, widths, strict=True)] for row in rows]
    styled = _styled()
    # Cells left-aligned in their column's width, the last one unpadded.
    layout = "  ".join([f"{{:<{w}}}" for w in widths[:-1]] + ["{}"]).format
    lines = [layout(*row).rstrip() for row in [headers, *rows]]
    if styled:
        lines = [f"\x1b[1m{line}\x1b[0m" if n == 0 else
                 f"\x1b[{colours[n - 1]}m{line}\x1b[0m" if colours is not None else line
                 for n, line in enumerate(lines)]
    lines.append("")
    _write(sys.stdout, "\n".join(lines))


def _out_fitted(line: str) -> None:
    """A line shortened to the terminal's width on a terminal, whole when piped."""
    shown = escape(line)
    if _on_terminal():
        shown = _shorten(shown, _columns(margin=0))
    _write(sys.stdout, shown + "\n")


def _catalogue(args: argparse.Namespace, sources: Sequence[str] | None = None) -> Any:
    from capsnap import declarations

    note = (lambda line: _err(line)) if args.verbose else None
    catalogue = declarations.load(args.paths_, _known_bits(),
                                  sources or declarations.SOURCES, note=note)
    for problem in catalogue.problems:
        warn(str(problem))
    return catalogue


def _require_packages(args: argparse.Namespace, catalogue: Any) -> None:
    """Refuse a --package that names no installed package (nor one a
    declaration names): a typo in a monitoring check must not pass forever."""
    from capsnap.declarations import dpkg, rpm
    from capsnap.errors import InvalidInput

    named: set[str] | None = None
    for name in getattr(args, "package", None) or ():
        if dpkg.package_version(args.paths_, name) is not None or \
                rpm.package_version(args.paths_, name) is not None:
            continue
        if named is None:
            named = {n for d in catalogue.declarations for n in (d.package, d.owner) if n}
            named |= {n.split(":", 1)[0] for n in named}
        if name not in named:
            raise InvalidInput(f"--package {name}: no such package is installed (and no "
                               "declaration names it)")


def _owners_gone(args: argparse.Namespace, catalogue: Any) -> set[str]:
    """The recorded owners of local declarations that are not installed."""
    from capsnap.declarations import dpkg, rpm

    owners = {d.owner for d in catalogue.declarations if d.source == "local" and d.owner}
    return {o for o in owners if dpkg.package_version(args.paths_, o) is None
            and rpm.package_version(args.paths_, o) is None}


def cmd_list(args: argparse.Namespace) -> int:
    from capsnap import captext, reapply

    known = _known_bits()
    catalogue = _catalogue(args, [args.source] if args.source else None)
    _require_packages(args, catalogue)
    entries: list[tuple[Any, str]] = []
    from capsnap.declarations import canonical_in

    gone = _owners_gone(args, catalogue)
    for item in reapply.select(catalogue.resolve(canonical_in(args.paths_)), args.package):
        # Each under the one name of its file, as check and diff name it.
        if item.winner is not None and item.winner.owner in gone:
            entries.append((item.winner._replace(path=item.path),
                            f"dormant: {item.winner.owner} is not installed"))
        elif item.winner is not None:
            beaten = ", ".join(d.label() for d in item.overridden if d.source != "local")
            entries.append((item.winner._replace(path=item.path),
                            f"wins over {beaten}" if beaten else "in force"))
        for decl in item.overridden:
            winner = item.winner.source if item.winner else ""
            entries.append((decl._replace(path=item.path), f"overridden by {winner}"
                            if winner and winner != decl.source else "duplicate"))
        for decl in item.conflicting:
            entries.append((decl._replace(path=item.path), "conflict: left alone"))
    # What a maintainer script may set but was never seen on disk (a debconf
    # "no", a failed setcap) is shown, never enforced.
    canonical = canonical_in(args.paths_)
    entries += [(decl._replace(path=canonical(decl.path)), "not seen on disk: not enforced")
                for decl in catalogue.declarations if not decl.confirmed]
    if args.json:
        _print_json([dict(decl.as_json(known), state=state) for decl, state in entries])
        return EXIT_OK
    rows = []
    for decl, state in entries:
        package = decl.package or (f"(file of {decl.owner})" if decl.owner else "-")
        rows.append([decl.path, captext.format_text(decl.caps, known), decl.source,
                     package, decl.version or "-", state])
    if rows:
        _table(rows, ["PATH", "CAPABILITIES", "SOURCE", "PACKAGE", "VERSION", "STATE"],
               keep=0)
    return EXIT_OK


def _report(findings: list[Any], as_json: bool, problems: list[Any]) -> None:
    if as_json:
        statuses = [f.status for f in findings]
        _print_json({"findings": [f.as_json() for f in findings],
                     "summary": {status: statuses.count(status)
                                 for status in sorted(set(statuses))},
                     "problems": [{"source": p.source, "where": p.where,
                                   "message": p.message} for p in problems],
                     "warnings": [{"path": f.path, "message": w}
                                  for f in findings for w in f.warnings]})
        return
    rows = [[f.path, f.status, f.expected or "-", f.actual or "none", f.source, f.detail]
            for f in findings]
    if rows:
        _table(rows, ["PATH", "STATUS", "DECLARED", "ON DISK", "SOURCE", "DETAIL"], keep=0)
    for f in findings:
        for warning in f.warnings:
            warn(f"{f.path}: {warning}")


def cmd_check(args: argparse.Namespace) -> int:
    from capsnap import reapply
    from capsnap.declarations import canonical_in

    catalogue = _catalogue(args)
    _require_packages(args, catalogue)
    items = reapply.select(catalogue.resolve(canonical_in(args.paths_)), args.package)
    findings = reapply.check(items, args.paths_, _known_bits())
    _report(findings, args.json, catalogue.problems)
    bad = catalogue.problems or any(f.status not in reapply.IN_PLACE for f in findings)
    return EXIT_DIFFERENT if bad else EXIT_OK


def cmd_reapply(args: argparse.Namespace) -> int:
    from capsnap import reapply
    from capsnap.declarations import canonical_in

    catalogue = _catalogue(args)
    _require_packages(args, catalogue)
    items = reapply.select(catalogue.resolve(canonical_in(args.paths_)), args.package)
    findings, log_error = reapply.reapply(items, args.paths_, _known_bits(),
                                          dry_run=args.dry_run, everything=catalogue,
                                          packages=args.package)
    if log_error:
        warn(log_error)
    for f in findings:
        # Said on stderr too: maintainer scripts and hooks discard stdout.
        if f.status in (reapply.FALLBACK, reapply.FAILED):
            warn(f"{f.path}: {f.detail}")
    _report(findings, args.json, catalogue.problems)
    # A dry run changes nothing: what it would restore is not in place.
    bad = catalogue.problems or any(f.status not in reapply.IN_PLACE for f in findings)
    return EXIT_DIFFERENT if bad else EXIT_OK


def _spelling(args: argparse.Namespace, path: str) -> str:
    """The one spelling of a file named on the command line, as list and
    check name it: absolute (a relative path starts at the working directory,
    or at the root with --root, as for set), the symlinks of its directories
    followed inside the root (on merged /usr, /bin/x is /usr/bin/x)."""
    import posixpath

    from capsnap.errors import InvalidInput
    from capsnap.snapshot import canonical_paths

    if not path:
        raise InvalidInput("'': not a file path")
    if not path.startswith("/"):
        path = posixpath.join(os.getcwd() if args.root == "/" else "/", path)
    if posixpath.basename(path) in ("", ".", ".."):
        return posixpath.normpath(path)  # a directory, refused as such
    spelled = canonical_paths(args.paths_)(path)
    if ".." in spelled.split("/"):
        return spelled  # left outside the root: refused as it is
    return "/" + posixpath.normpath(spelled).lstrip("/")


def cmd_declare(args: argparse.Namespace) -> int:
    from capsnap import desired

    path = _spelling(args, args.path)
    done = desired.declare_locally(args.paths_, path, args.caps, args.reason, _known_bits(),
                                   force=args.force, apply=not args.no_apply)
    shown = done.file.removeprefix(args.root.rstrip("/")) if args.root != "/" else done.file
    owner = f" (file of package {done.owner[0]} {done.owner[1]})" if done.owner else ""
    forced = f", forced past: {done.forced_past}" if done.forced_past is not None else ""
    said = (f"{'replaced' if done.replaced else 'added'} the local declaration of {path} "
            f"in {shown}{owner}{forced}")
    for message in done.warnings:
        warn(message)
    if args.no_apply:
        _err(f"{said}; not applied (--no-apply): 'capsnap reapply' applies it")
        return EXIT_OK
    if done.failure is not None:
        _err(f"{said}; not applied: {done.failure}")
        return EXIT_FAILED
    _err(f"{said}; {'applied' if done.applied else 'already in place'} and verified")
    return EXIT_OK


def cmd_adopt(args: argparse.Namespace) -> int:
    from capsnap import config
    from capsnap.declarations import adopt

    if bool(args.paths) == args.all:
        _err("give either PATH... or --all (see 'capsnap adopt --help')")
        return EXIT_USAGE
    settings, problems = config.load(args.paths_)
    for problem in problems:
        warn(problem)
    outcomes = adopt.adopt(args.paths_, args.paths or None, _known_bits(),
                           dry_run=args.dry_run, roots=settings.roots)
    if args.json:
        _print_json([o.as_json() for o in outcomes])
    else:
        for o in outcomes:
            owner = f" (file of {o.owner})" if o.owner else ""
            if o.status in (adopt.ADOPTED, adopt.WOULD_ADOPT):
                _out(f"{o.status} {o.path} {o.capabilities}{owner}")
            else:
                _out(f"{o.status} {o.path}: {o.detail}")
    return EXIT_DIFFERENT if any(o.failed for o in outcomes) else EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from capsnap import audit, config

    known = _known_bits()
    catalogue = _catalogue(args)
    if args.from_:
        with _store(args, create=False) as store:
            snap = store.find(args.from_)
            rows = [r for r in store.rows(snap.id) if r.raw is not None]
    else:
        settings, problems = config.load(args.paths_)
        for problem in problems:
            warn(problem)
        unreadable: list[tuple[str, str]] = []
        rows = list(audit.live(args.paths_, known, settings.roots, unreadable))
        for path, reason in unreadable[:20]:
            warn(f"{path}: cannot read: {reason}")
    findings = audit.audit(rows, catalogue, args.paths_, known, recorded=bool(args.from_))
    bad = any(f.bad for f in findings)
    if args.json:
        _print_json({"findings": [f.as_json() for f in findings], "ok": not bad})
    else:
        table = [[f.path, f.capabilities + (f" [rootid={f.rootid}]" if f.rootid is not None
                                            else ""),
                  f.source or f.status, f.package or "-", ",".join(f.risks) or "-"]
                 for f in findings]
        if table:
            _table(table, ["PATH", "CAPABILITIES", "SOURCE", "PACKAGE", "RISKS"])
        for f in findings:
            for detail in f.details:
                _out(f"  {f.path}: {detail}")
    return EXIT_DIFFERENT if bad else EXIT_OK


def cmd_undeclare(args: argparse.Namespace) -> int:
    from capsnap.declarations import canonical_in, local

    path = _spelling(args, args.path)
    for file in local.undeclare(args.paths_, path, canonical_in(args.paths_)):
        if args.verbose:
            _err(f"removed the local declaration of {path} from {file}")
    return EXIT_OK


# --- snapshots: snapshot / snapshots / diff / prune -----------------------------

def _settings(args: argparse.Namespace) -> Any:
    """capsnap.conf's settings and problems, read once per command."""
    cached = getattr(args, "settings_", None)
    if cached is None:
        from capsnap import config

        cached = args.settings_ = config.load(args.paths_)
    return cached


def _store(args: argparse.Namespace, create: bool = True) -> Any:
    from capsnap.store import Store

    db = getattr(args, "db", None) or args.paths_.snapshot_db
    # The wait capsnap.conf sets for hooks holds for commands too: a locked
    # database is said to be locked within seconds, not after half a minute.
    return Store(db, create=create, paths=args.paths_, wait=_settings(args)[0].wait)


def _recorded(args: argparse.Namespace) -> Any:
    """The store, or None before anything was recorded: no database is the
    same as an empty one (and is not created by reading it)."""
    from capsnap import confine

    db = getattr(args, "db", None) or args.paths_.snapshot_db
    return _store(args, create=False) if confine.exists(args.paths_, db) else None


_NOTHING_RECORDED = ("no package-manager transaction recorded yet; name two snapshots "
                     "('capsnap snapshots' lists them)")


def _scope(args: argparse.Namespace) -> Any:
    from capsnap.snapshot import Scope

    if args.package:
        return Scope("package", tuple(args.package))
    if args.path:
        return Scope("path", tuple(args.path))
    return Scope("full")


def take_snapshot(args: argparse.Namespace, store: Any, scope: Any) -> int:
    import time

    from capsnap import declarations, scan, snapshot

    settings, problems = _settings(args)
    for problem in problems:
        warn(problem)
    catalogue = declarations.load(args.paths_, _known_bits())
    snapshot_id, stats = snapshot.take(
        args.paths_, store, scope, _known_bits(), catalogue, roots=settings.roots,
        label=getattr(args, "label", None),
        progress=scan.terminal_progress(time.monotonic()))
    scan.clear_progress()
    for path, reason in stats.unreadable[:20]:
        warn(f"{path}: cannot read: {reason}")
    if stats.unreadable:
        warn(f"{len(stats.unreadable)} director{'y' if len(stats.unreadable) == 1 else 'ies'} "
             "or files could not be read and were left out")
    if args.verbose:
        _err(f"snapshot {snapshot_id}: {stats.found} files with capabilities among "
             f"{stats.files} files in {stats.directories} directories")
    return snapshot_id


def cmd_snapshot(args: argparse.Namespace) -> int:
    from capsnap import snapshot

    scope = _scope(args)
    # A mistyped package name changes nothing: not even an empty database.
    snapshot.require_installed(args.paths_, scope)
    with _store(args) as store:
        snapshot_id = take_snapshot(args, store, scope)
        snap = store.find(str(snapshot_id))
    _out(f"snapshot {snap.id}: {snap.entries} files with capabilities "
         f"({_scope_shown(snap.scope, room=60)})")
    return EXIT_OK


def _scope_shown(stored: str, room: int = 0) -> str:
    """A scope with its paths as they are (_out and _table escape them once),
    each name once; with `room`, the first names that fit in it and how many
    more there are, as `package:appstream,apt,… (+137)`."""
    from capsnap.scope import Scope

    scope = Scope.parse(stored)
    items = list(dict.fromkeys(scope.items))
    if not items:
        return scope.kind
    shown = items
    if room:
        shown = items[:1]
        for item in items[1:]:
            if len(",".join([*shown, item])) > room:
                break
            shown.append(item)
    more = len(items) - len(shown)
    return f"{scope.kind}:{','.join(shown)}" + (f",\u2026 (+{more})" if more else "")


def _snapshot_json(snap: Any) -> dict[str, object]:
    from capsnap.scope import Scope

    scope = Scope.parse(snap.scope)
    return {"id": snap.id, "created": snap.created, "label": snap.label,
            # Each name once (apt names a package to unpack it and to configure it).
            "scope": Scope(scope.kind, tuple(dict.fromkeys(scope.items))).describe(),
            "root": snap.root, "transaction": snap.transaction_id, "phase": snap.phase,
            "entries": snap.entries}


def cmd_snapshots(args: argparse.Namespace) -> int:
    store = _recorded(args)
    snaps = []
    if store is not None:
        with store:
            snaps = store.snapshots()
    if args.json:
        _print_json([_snapshot_json(s) for s in snaps])
    elif snaps:
        _table([[str(s.id), s.created, s.label or "-", _scope_shown(s.scope, room=24),
                 f"{s.phase} #{s.transaction_id}" if s.transaction_id else "-",
                 str(s.entries)] for s in snaps],
               ["ID", "CREATED", "LABEL", "SCOPE", "TRANSACTION", "WITH CAPS"], keep=3)
    return EXIT_OK


_COLOURS = {"lost": "31", "removed": "31", "gained": "32", "new": "32", "changed": "33",
            "replaced": "33"}


# What capsnap's hooks did to a path during the transaction, as diff says it
# (capsnap(1) explains each).
_ACTIONS_SHOWN = {"restored": "restored by capsnap",
                  "fallback": "setuid fallback by capsnap",
                  "failed": "capsnap failed to restore",
                  "skipped": "skipped by capsnap",
                  "missing": "declared file missing",
                  "removed": "taken back by capsnap",
                  "left-alone": "left alone by capsnap"}


def _row_json(row: Any) -> dict[str, object] | None:
    if row is None:
        return None
    return {"present": row.present, "capabilities": row.text,
            "raw": row.raw.hex() if row.raw is not None else None, "rootid": row.rootid,
            "package": row.package, "version": row.version, "inode": row.inode,
            "size": row.size, "mtime_ns": row.mtime_ns, "btime_ns": row.btime_ns}


def _path_json(path: bytes) -> dict[str, object]:
    try:
        return {"path": path.decode("utf-8")}
    except UnicodeDecodeError:
        return {"path": path.decode("utf-8", "backslashreplace"), "path_hex": path.hex()}


def cmd_diff(args: argparse.Namespace) -> int:
    from capsnap import diff
    from capsnap.errors import InvalidInput

    if len(args.snapshots) > 2:
        raise InvalidInput(f"diff compares at most two snapshots, not {len(args.snapshots)} "
                           "(see 'capsnap diff --help')")
    store = _recorded(args)
    if store is None:
        if args.snapshots:
            raise InvalidInput(f"no snapshot {args.snapshots[0]!r}: nothing is recorded yet "
                               "(take one with 'capsnap snapshot')")
        raise InvalidInput(_NOTHING_RECORDED)
    with store:
        transaction = None
        if not args.snapshots:
            transaction = store.last_complete_transaction()
            if transaction is None:
                raise InvalidInput(_NOTHING_RECORDED)
            first, second = (store.find(str(transaction.before_id)),
                             store.find(str(transaction.after_id)))
        else:
            first = store.find(args.snapshots[0])
            second = store.find(args.snapshots[1]) if len(args.snapshots) > 1 else None
        # What capsnap itself did during the transaction the two belong to.
        tid = first.transaction_id if second is not None and \
            second.transaction_id == first.transaction_id else None
        actions = store.actions(tid) if tid is not None else {}
        if transaction is None and tid is not None:
            transaction = store.transaction_info(tid)
        roots = _settings(args)[0].roots
        covered_before = diff.covers(first.scope, roots)
        if second is not None:
            changes = diff.grouped(diff.compare_pairs(
                store.changed_pairs(first.id, second.id), first.created_ns,
                covered_before, diff.covers(second.scope, roots)))
        else:
            from capsnap.scope import Scope
            from capsnap.snapshot import live_rows

            tracked = [r.path for r in store.rows(first.id)]
            live = live_rows(args.paths_, Scope.parse(first.scope), _known_bits(),
                             extra=tracked, roots=roots, missing_packages_ok=True)
            changes = diff.grouped(diff.compare(store.rows(first.id), live, first.created_ns,
                                                covered_before, covered_before))
    unrecorded = [c for c in changes if c.kind == diff.NOT_RECORDED]
    changes = [c for c in changes if c.kind != diff.NOT_RECORDED]
    if args.json:
        _print_json({
            "from": _snapshot_json(first),
            "to": _snapshot_json(second) if second is not None else "live",
            "transaction": {"id": transaction.id, "manager": transaction.manager,
                            "packages": [{"package": p, "old": o, "new": n}
                                         for p, o, n in transaction.packages]}
            if transaction else None,
            "changes": [dict(kind=c.kind, **_path_json(c.path), survived=c.survived,
                             capsnap=actions.get(c.path, (None,))[0],
                             before=_row_json(c.before), after=_row_json(c.after))
                        for c in changes],
            "not_recorded": [dict(**_path_json(c.path),
                                  side="before" if c.before is None else "after")
                             for c in unrecorded],
            "summary": {kind: sum(1 for c in changes if c.kind == kind)
                        for kind in diff.KINDS if kind != diff.NOT_RECORDED},
        })
        return EXIT_DIFFERENT if changes else EXIT_OK
    _out_fitted(_diff_header(transaction, first, second))
    rows = []
    for c in changes:
        what = c.kind
        action = actions.get(c.path, (None,))[0]
        if c.kind == diff.REPLACED and action == "restored":
            what += ", caps lost"  # and put back before the after snapshot
        elif c.kind == diff.REPLACED:
            what += ", caps kept" if c.survived else ", caps lost" if not (
                c.after and c.after.raw) else ", caps gained" if not (
                c.before and c.before.raw) else ", caps changed"
        if action:
            what += f", {_ACTIONS_SHOWN.get(action, f'{action} by capsnap')}"
        rows.append([what, os.fsdecode(c.path),
                     diff.caps_text(c.before) or "none",
                     diff.caps_text(c.after) or
                     ("none" if c.after is None or c.after.present else "(file removed)"),
                     diff.package_label(c.before, c.after)])
    if rows:
        _table(rows, ["CHANGE", "PATH", "BEFORE", "AFTER", "PACKAGE"],
               colours=[_COLOURS[c.kind] for c in changes], keep=1)
    else:
        _out("no capability changes")
    if unrecorded:
        sides = {"before" if c.before is None else "after" for c in unrecorded}
        which = " and ".join(f"the {side} snapshot" for side in ("before", "after")
                             if side in sides)
        _out(f"{len(unrecorded)} path{'s' if len(unrecorded) != 1 else ''} with "
             f"capabilities outside the scope of {which}: not compared "
             "(--json lists them)")
    return EXIT_DIFFERENT if changes else EXIT_OK


def _diff_header(transaction: Any, first: Any, second: Any) -> str:
    """What was compared: the transaction (manager, packages, versions) or the snapshots."""
    def name(snap: Any) -> str:
        return f"snapshot {snap.id}" + (f" ({snap.label})" if snap.label else "")

    compared = f"{name(first)} -> {name(second) if second is not None else 'the live system'}"
    if transaction is None:
        return compared
    shown = [f"{p} {o} -> {n}" if o and n and o != n else f"{p} {n or o}" + (
        " (removed)" if n is None else " (installed)" if o is None else "")
        for p, o, n in transaction.packages]
    # One line, whatever the transaction's size: --json has them all.
    packages = ", ".join(shown[:8]) + (f", ... (+{len(shown) - 8})" if len(shown) > 8 else "") \
        if shown else "no package version changed"
    return f"transaction {transaction.id} ({transaction.manager}): {packages}; {compared}"


def cmd_prune(args: argparse.Namespace) -> int:
    keep, keep_days = args.keep, args.keep_days
    if keep is None and keep_days is None:
        from capsnap import config

        settings, problems = config.load(args.paths_)
        for problem in problems:
            warn(problem)
        keep, keep_days = settings.keep, settings.keep_days
    with _store(args, create=False) as store:
        size = store.size()
        gone = store.prune(keep, keep_days)
        store.reclaim(thorough=True)
        now = store.size()
    if args.verbose:
        _err(f"removed {gone} snapshot{'s' if gone != 1 else ''}; the database went from "
             f"{size} to {now} bytes")
    return EXIT_OK


# --- packaging: generate / forget -------------------------------------------------

def cmd_generate(args: argparse.Namespace) -> int:
    from capsnap import generate

    entries = generate.read_declarations(args.from_)
    for message in generate.root_equivalent_warnings(args.from_, entries):
        warn(message)
    package = args.package or os.path.basename(args.from_).removesuffix(".capabilities")
    produced = generate.artifacts(args.kind, entries, package, strict=args.strict)
    if args.only:
        if args.only not in produced:
            from capsnap.errors import InvalidInput
            raise InvalidInput(f"no artifact {args.only!r} for {args.kind} (there are: "
                               f"{', '.join(produced)})")
        produced = {args.only: produced[args.only]}
    if args.output:
        for path in generate.write(args.output, produced, package):
            if args.verbose:
                _err(f"wrote {path}")
    elif len(produced) == 1:
        _write(sys.stdout, next(iter(produced.values())))
    else:
        for name, content in produced.items():
            _write(sys.stdout, f"==> {name} <==\n{content}\n")
    return EXIT_OK


def cmd_forget(args: argparse.Namespace) -> int:
    from capsnap import reapply

    forgotten = reapply.forget(args.paths_, args.package)
    if forgotten is None:
        from capsnap.errors import InvalidInput
        raise InvalidInput(f"{args.package}: capsnap has no records of such a package "
                           f"(they are in {_records_shown(args)})")
    if args.verbose:
        _err(f"forgot {forgotten} record{'s' if forgotten != 1 else ''} of {args.package}")
    return EXIT_OK


def _records_shown(args: argparse.Namespace) -> str:
    from capsnap.reapply import records_dir

    return records_dir(args.paths_).removeprefix(args.root.rstrip("/")) + "/"


# --- package-manager hooks ------------------------------------------------------

def cmd_hook(args: argparse.Namespace) -> int:
    from capsnap import hook

    return hook.run(args.name, args.paths_, getattr(args, "db", None), _known_bits())


def cmd_install_hooks(args: argparse.Namespace) -> int:
    from capsnap import hookfiles

    for path, action in hookfiles.install(args.paths_, args.executable, args.force):
        _err(f"{action} {path}")
    # From now on every package run is compared with what is there: take
    # the baseline now, or a capability already on the machine is never
    # tracked.  Like a hook, it never fails the installation.
    from capsnap import hook

    hook.run("baseline", args.paths_, getattr(args, "db", None), _known_bits())
    return EXIT_OK


def cmd_uninstall_hooks(args: argparse.Namespace) -> int:
    from capsnap import hookfiles

    for path in hookfiles.uninstall(args.paths_):
        _err(f"removed {path}")
    return EXIT_OK


# --- argument parsing --------------------------------------------------------

def _rootid(text: str) -> int:
    import argparse

    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a uid: {text!r}") from None
    if not 0 <= value <= 0xFFFFFFFE:
        raise argparse.ArgumentTypeError(f"uid out of range: {text!r}")
    return value


def _args_get(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "--recursive", action="store_true",
                   help="walk directories (symlinks are not followed)")
    p.add_argument("-n", "--namespace", action="store_true",
                   help="accepted as getcap -n takes it: the rootid of namespaced "
                        "capabilities is always shown")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("paths", nargs="+", metavar="PATH")


def _args_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("caps", metavar="CAPS", help="capability text, e.g. cap_net_raw=ep")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--rootid", type=_rootid, default=0, metavar="N",
                   help="limit to the user namespace whose root is uid N (revision 3)")
    p.add_argument("--force", action="store_true",
                   help="set even where the safety policy refuses")


def _args_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("caps", metavar="CAPS")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--rootid", type=_rootid, default=0, metavar="N")
    p.add_argument("--json", action="store_true", help="print JSON")


def _args_remove(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH")


def _args_parse(p: argparse.ArgumentParser) -> None:
    p.add_argument("caps", metavar="CAPS")
    p.add_argument("--hex", action="store_true",
                   help="print the security.capability bytes instead, in hex")
    p.add_argument("--rootid", type=_rootid, default=0, metavar="N")


def _args_list(p: argparse.ArgumentParser) -> None:
    from capsnap.declarations import SOURCES

    p.add_argument("--source", choices=SOURCES, help="only the declarations of this source")
    p.add_argument("--package", action="append", metavar="P",
                   help="only what package P declares or ships (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _args_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("--package", action="append", metavar="P",
                   help="only what package P declares or ships (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _args_reapply(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="say what would be restored")
    _args_check(p)


def _args_declare(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH")
    p.add_argument("caps", metavar="CAPS",
                   help="capability text; 'none' (or '=') keeps the file free of any, "
                        "whatever packages declare")
    p.add_argument("--reason", metavar="TEXT", help="why; kept as the entry's comment")
    p.add_argument("--force", action="store_true",
                   help="declare (recorded as forced) and apply even where the safety "
                        "policy refuses")
    p.add_argument("--no-apply", action="store_true",
                   help="only record the declaration; do not apply it now")


def _args_adopt(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--all", action="store_true",
                   help="every capability on disk that nothing declares (a full walk)")
    p.add_argument("--dry-run", action="store_true", help="say what would be adopted")
    p.add_argument("--json", action="store_true", help="print JSON")


def _args_audit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_", metavar="SNAPSHOT",
                   help="audit a snapshot (id or label) instead of a walk of the system")
    p.add_argument("--json", action="store_true", help="print JSON")


def _args_undeclare(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH")


def _args_snapshot(p: argparse.ArgumentParser) -> None:
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--full", action="store_true",
                       help="walk the configured roots (the default)")
    scope.add_argument("--package", action="append", metavar="P",
                       help="the files of installed package P (repeatable)")
    scope.add_argument("--path", action="append", metavar="PATH",
                       help="a file, or a directory walked recursively (repeatable)")
    p.add_argument("--label", metavar="L", help="a name to refer to the snapshot by")


def _args_snapshots(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def _args_diff(p: argparse.ArgumentParser) -> None:
    p.add_argument("snapshots", nargs="*", metavar="SNAPSHOT",
                   help="ids or labels: none for the last transaction's before and after, "
                        "one for that snapshot against the live system, two to compare "
                        "them")
    p.add_argument("--json", action="store_true", help="print JSON")


def _args_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep", type=int, metavar="N",
                   help="keep the N newest transactions (a snapshot taken by hand counts as "
                        "one); without --keep or --keep-days, capsnap.conf's keep and "
                        "keep-days")
    p.add_argument("--keep-days", type=float, metavar="D",
                   help="keep only transactions younger than D days (the newest is always "
                        "kept)")


def _args_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=["deb", "rpm"])
    p.add_argument("--from", dest="from_", required=True, metavar="FILE",
                   help="the declaration file, e.g. debian/foo.capabilities")
    p.add_argument("--package", metavar="P", help="the package (default: from FILE's name)")
    p.add_argument("--output", metavar="DIR", help="write the artifacts into DIR")
    p.add_argument("--only", metavar="NAME", help="just this artifact (e.g. postinst)")
    p.add_argument("--strict", action="store_true",
                   help="maintainer scripts fail when capabilities cannot be applied")


def _args_forget(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", metavar="PACKAGE")


def _args_hook(p: argparse.ArgumentParser) -> None:
    from capsnap.hook import HOOKS

    p.add_argument("name", metavar="NAME", choices=sorted(HOOKS),
                   help="the event: " + ", ".join(HOOKS))


def _args_install_hooks(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executable", metavar="PATH",
                   help="the capsnap the hooks run (default: this one)")
    p.add_argument("--force", action="store_true",
                   help="accept an executable (or interpreter, or Python package) that a "
                        "user other than root could change")


def _args_uninstall_hooks(p: argparse.ArgumentParser) -> None:
    pass


if TYPE_CHECKING:
    Command = tuple[Callable[[argparse.Namespace], int], str,
                    Callable[[argparse.ArgumentParser], None]]
COMMANDS: dict[str, Command] = {
    "get": (cmd_get, "print file capabilities as getcap(8) does", _args_get),
    "set": (cmd_set, "set file capabilities, then read back and verify them", _args_set),
    "verify": (cmd_verify, "check a file carries exactly CAPS, as setcap -v", _args_verify),
    "remove": (cmd_remove, "remove file capabilities", _args_remove),
    "parse": (cmd_parse, "print capability text in canonical form", _args_parse),
    "list": (cmd_list, "list declared capabilities and where they come from", _args_list),
    "check": (cmd_check, "compare declared capabilities with the files", _args_check),
    "reapply": (cmd_reapply, "restore declared capabilities that drifted", _args_reapply),
    "declare": (cmd_declare, "declare capabilities for a file locally", _args_declare),
    "undeclare": (cmd_undeclare, "remove a local declaration", _args_undeclare),
    "adopt": (cmd_adopt, "declare locally the capabilities files carry that nothing "
              "declares", _args_adopt),
    "audit": (cmd_audit, "explain every file capability on the machine, and flag risks",
              _args_audit),
    "snapshot": (cmd_snapshot, "record the file capabilities of a scope", _args_snapshot),
    "snapshots": (cmd_snapshots, "list snapshots, newest first", _args_snapshots),
    "diff": (cmd_diff, "show what capabilities changed, and through which package",
             _args_diff),
    "prune": (cmd_prune, "delete old transactions and snapshots, and reclaim their space",
              _args_prune),
    "generate": (cmd_generate, "generate maintainer-script snippets or spec lines",
                 _args_generate),
    "forget": (cmd_forget, "forget capsnap's records of a purged package", _args_forget),
    "hook": (cmd_hook, "the entry point of the apt, dpkg, rpm and dnf hooks", _args_hook),
    "install-hooks": (cmd_install_hooks, "put the package-manager hook files in place",
                      _args_install_hooks),
    "uninstall-hooks": (cmd_uninstall_hooks, "remove the hook files install-hooks put",
                        _args_uninstall_hooks),
}
_GLOBAL_WITH_VALUE = ("--root", "--admindir", "--dbpath", "--db")


def _command_named(argv: Sequence[str]) -> str | None:
    """The command in argv, found the way argparse will find it."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _GLOBAL_WITH_VALUE:
            skip = True
        elif arg == "--version":
            return "parse"  # any one command: --version needs no sub-parsers
        elif arg in ("-h", "--help", "--"):
            return None
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that command's (hooks start faster)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # one line, exit 2, no usage dump
            _err(f"{message} (see '{self.prog} --help')")
            sys.exit(EXIT_USAGE)

        def _get_formatter(self) -> argparse.HelpFormatter:
            # argparse asks shutil for the width on every add_argument (and
            # shutil imports bz2 and lzma): ask the terminal only for help.
            formatter: argparse.HelpFormatter = self.formatter_class(
                prog=self.prog, width=_columns())  # type: ignore[call-arg]
            return formatter

    # Global options are accepted before or after the command name.
    common = _Parser(add_help=False)
    common.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS,
                        help="act on the system installed in DIR (image, chroot, scratch "
                             "root); symlinks are never followed out of it")
    common.add_argument("--admindir", metavar="DIR", default=argparse.SUPPRESS,
                        help="dpkg's database directory (default ROOT/var/lib/dpkg, or "
                             "DPKG_ADMINDIR when dpkg runs us)")
    common.add_argument("--dbpath", metavar="DIR", default=argparse.SUPPRESS,
                        help="the rpm database, relative to the root (default: the first of "
                             "/usr/lib/sysimage/rpm, /var/lib/rpm, /root/.rpmdb that exists)")
    common.add_argument("--db", metavar="FILE", default=argparse.SUPPRESS,
                        help="the snapshot database (default ROOT/var/lib/capsnap/capsnap.db)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="say more about what is done")

    parser = _Parser(prog=PROG, parents=[common],
                     description="Declared, verified Linux file capabilities.")
    from capsnap import __version__
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (func, help_text, configure) in COMMANDS.items():
        if only is None or name == only:
            p = sub.add_parser(name, parents=[common], help=help_text,
                               description=help_text)
            p.set_defaults(func=func)
            configure(p)
    return parser


def _columns(margin: int = 2) -> int:
    """The terminal's width (COLUMNS first, as shutil has it), less `margin`."""
    try:
        columns = int(os.environ["COLUMNS"])
        if columns > 0:
            return columns - margin
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns - margin
    except (OSError, ValueError):
        return 80 - margin


# Commands run unattended and often (by hooks, timers, monitoring), with the
# options they take.  Their plain spellings are read by _plain_args: argparse's
# import and parser are a third of such a run.
_PLAIN_OPTIONS = {"check": ("--json", "--package"),
                  "reapply": ("--json", "--package", "--dry-run"),
                  "diff": ("--json",)}
# Commands whose plain spelling takes words as well (diff's snapshots).
_PLAIN_POSITIONAL = {"diff": "snapshots"}


def _plain_args(argv: Sequence[str]) -> Any:
    """The arguments of a plain `check`, `reapply` or `diff` command line, or None.

    Only exact option names, each value as the next word and not starting
    with "-", each global option once, and diff's snapshots as words that
    do not start with "-": anything else (help, abbreviations, --opt=value,
    mistakes) is argparse's to read or to refuse.
    """
    from types import SimpleNamespace

    values: dict[str, Any] = {"root": None, "admindir": None, "dbpath": None, "db": None,
                              "verbose": False, "json": False, "package": None,
                              "dry_run": False}
    command = None
    positional: list[str] = []
    closed = False  # an option came after the positional words
    words = list(argv)
    while words:
        word = words.pop(0)
        if word in _GLOBAL_WITH_VALUE or (command and word == "--package"
                                             and word in _PLAIN_OPTIONS[command]):
            if not words or not words[0] or words[0].startswith("-"):
                return None
            name = word[2:]
            if name == "package":
                values["package"] = [*(values["package"] or []), words.pop(0)]
            elif values[name] is not None:
                return None
            else:
                values[name] = words.pop(0)
        elif word in ("-v", "--verbose"):
            values["verbose"] = True
        elif command is None and word in _PLAIN_OPTIONS:
            command = word
        elif command and word in _PLAIN_OPTIONS[command] and word != "--package":
            values[word[2:].replace("-", "_")] = True
        elif command in _PLAIN_POSITIONAL and word and not word.startswith("-"):
            if closed:
                return None  # words on both sides of an option: argparse refuses them
            positional.append(word)
            continue
        else:
            return None
        closed = bool(positional)
    if command is None:
        return None
    if command in _PLAIN_POSITIONAL:
        values[_PLAIN_POSITIONAL[command]] = positional
    return SimpleNamespace(command=command, func=COMMANDS[command][0], **values)


def _main(argv: Sequence[str] | None = None) -> int:
    # apt's hooks, cron and Ansible pass on their caller's umask: the modes
    # of what capsnap creates must not depend on it.
    os.umask(0o022)
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 2 and argv[0] == "hook":
        # What every hook file runs, read by hand: argparse's import is a
        # tenth of a hook's time, and a hook takes no options.  Anything
        # else ("hook --help", an unknown name) is argparse's.
        from capsnap import hook
        from capsnap.paths import SystemPaths

        if argv[1] in hook.HOOKS:
            return hook.run(argv[1], SystemPaths.select(), None, _known_bits())
        if argv[1] == "dpkg-serve":  # started by dpkg's pre-invoke line, not a hook of its own
            from capsnap import background

            return background.serve(SystemPaths.select(), _known_bits())
    args = _plain_args(argv) or build_parser(_command_named(argv)).parse_args(argv)
    from capsnap.paths import SystemPaths

    args.paths_ = SystemPaths.select(root=getattr(args, "root", None),
                                     admindir=getattr(args, "admindir", None),
                                     dbpath=getattr(args, "dbpath", None))
    args.root = args.paths_.root
    args.verbose = getattr(args, "verbose", False)
    if args.root != "/" and not os.path.isdir(args.root):
        _err(f"root {args.root}: not a directory")
        return EXIT_USAGE
    try:
        status: int = args.func(args)
        return status
    except CapsnapError as exc:
        _err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        _err(_explain(args, exc))
        return EXIT_FAILED


def _explain(args: argparse.Namespace, exc: Exception) -> str:
    """One line for what escaped a command: SQLite's errors told apart (a
    damaged page shows only when read), a system call's with its file."""
    if type(exc).__module__ == "sqlite3":
        from capsnap.store import describe

        return str(describe(getattr(args, "db", None) or args.paths_.snapshot_db, exc))
    if isinstance(exc, OSError):
        from capsnap.fileops import describe_oserror

        return f"{exc.filename + ': ' if exc.filename else ''}{describe_oserror(exc)}"
    return f"internal error (please report it): {type(exc).__name__}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """capsnap's entry point: one command, then every pinned root closed."""
    from capsnap import confine

    try:
        return _main(argv)
    finally:
        confine.release()


def run() -> None:
    sys.exit(main())
