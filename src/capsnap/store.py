# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""The snapshot store: SQLite in /var/lib/capsnap/capsnap.db of the root.

WAL mode, so readers never wait for a writer; every write in one
transaction; an exclusive lock file beside the database so that two capsnap
runs (say apt's post-invoke hook and an administrator's snapshot) never
interleave their writes.  A file that is not capsnap's database is never
touched: capsnap says so and stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from capsnap.errors import CapsnapError, InvalidInput, OperationFailed
from capsnap.records import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from capsnap.paths import SystemPaths

APPLICATION = "capsnap"
# In the order they are stored (see _migration_1), which changed_pairs relies on.
_ENTRY_COLUMNS = ("path", "raw", "text", "rootid", "package", "version", "present", "inode",
                  "size", "mtime_ns", "btime_ns")
_SNAPSHOT_COLUMNS = "id, created, created_ns, label, scope, root, transaction_id, phase, entries"
SCHEMA_VERSION = 3


class StoreError(OperationFailed):
    """The database cannot be used as it is; the message says what to do."""


class StoreBusy(StoreError):
    """Another process holds the database or capsnap's lock beside it."""


class StoreDamaged(StoreError):
    """The file is damaged or not capsnap's: it is never written."""


# How long a Store waits for capsnap's lock and for SQLite's, by default.
# Hooks pass their own, shorter, bound (`wait` in capsnap.conf): a stopped
# `capsnap snapshot` must never keep dpkg waiting.
DEFAULT_WAIT = 30.0


def describe(path: str, exc: BaseException) -> StoreError:
    """What an SQLite error means for the administrator, told apart: only a
    damaged file is worth moving aside (and that throws its history away)."""
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return StoreBusy(f"{path}: in use by another process ({text}); nothing is lost: "
                         "try again once it is done")
    if "full" in lowered or "disk i/o" in lowered:
        return StoreError(f"{path}: the filesystem holding it is full or failing ({text}); "
                          "free space there: the database itself is kept")
    if "readonly" in lowered or "read-only" in lowered:
        return StoreError(f"{path}: cannot be written ({text}): a read-only filesystem or "
                          "missing permissions")
    if "unable to open" in lowered:
        try:
            read_only = bool(os.statvfs(os.path.dirname(path) or ".").f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        if read_only:
            return StoreError(f"{path}: cannot be written ({text}): its filesystem is read-only")
        return StoreError(f"{path}: cannot be opened ({text}): check its directory")
    operational = isinstance(exc, sqlite3.OperationalError)
    if (isinstance(exc, sqlite3.DatabaseError) and not operational) \
            or "malformed" in lowered or "no such" in lowered or "not a database" in lowered:
        return StoreDamaged(f"{path}: damaged ({text}); capsnap leaves it alone: move it "
                            "aside to start a new one (its history goes with it)")
    return StoreError(f"{path}: {text}")


def _unwritable(exc: sqlite3.Error) -> bool:
    """SQLite could not open a database for lack of a writable filesystem."""
    text = str(exc).lower()
    return any(word in text for word in ("readonly", "read-only", "unable to open",
                                         "disk i/o", "full"))


# Databases found sound by this process: the check runs before the first write.
_sound: set[tuple[int, int]] = set()


class Row(NamedTuple):
    """What one snapshot knows of one path."""

    path: bytes
    raw: bytes | None  # the security.capability value; None: none
    text: str | None  # canonical text of raw
    rootid: int | None  # for revision 3
    package: str | None
    version: str | None
    present: bool  # False: the file did not exist
    inode: int | None = None
    size: int | None = None
    mtime_ns: int | None = None
    btime_ns: int | None = None  # creation time, where the filesystem keeps one


class Snapshot(NamedTuple):
    id: int
    created: str
    created_ns: int
    label: str | None
    scope: str
    root: str
    transaction_id: int | None
    phase: str | None  # "before" or "after" when a hook took it
    entries: int


class Transaction(NamedTuple):
    id: int
    manager: str
    started: str
    before_id: int | None
    after_id: int | None
    packages: tuple[tuple[str, str | None, str | None], ...]  # name, old, new


def _migration_1(db: sqlite3.Connection) -> None:
    # One statement at a time: executescript() would commit the surrounding
    # transaction, and a half-migrated database must never be left behind.
    _run_script(db, """
        CREATE TABLE snapshots (
            id INTEGER PRIMARY KEY,
            created TEXT NOT NULL,
            created_ns INTEGER NOT NULL,
            label TEXT UNIQUE,
            scope TEXT NOT NULL,
            root TEXT NOT NULL,
            transaction_id INTEGER REFERENCES transactions(id) ON DELETE SET NULL,
            phase TEXT,
            entries INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE transactions (
            id INTEGER PRIMARY KEY,
            manager TEXT NOT NULL,
            started TEXT NOT NULL
        );
        CREATE TABLE transaction_packages (
            transaction_id INTEGER NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
            package TEXT NOT NULL,
            old_version TEXT,
            new_version TEXT,
            PRIMARY KEY (transaction_id, package)
        );
        CREATE TABLE transaction_baseline (
            transaction_id INTEGER NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
            package TEXT NOT NULL,
            version TEXT,
            PRIMARY KEY (transaction_id, package)
        );
        CREATE TABLE transaction_actions (
            transaction_id INTEGER NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
            path BLOB NOT NULL,
            result TEXT NOT NULL,
            detail TEXT,
            PRIMARY KEY (transaction_id, path)
        );
        CREATE TABLE entries (
            snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
            path BLOB NOT NULL,
            raw BLOB,
            text TEXT,
            rootid INTEGER,
            package TEXT,
            version TEXT,
            present INTEGER NOT NULL,
            inode INTEGER,
            size INTEGER,
            mtime_ns INTEGER,
            btime_ns INTEGER,
            PRIMARY KEY (snapshot_id, path)
        ) WITHOUT ROWID;
    """)


def _run_script(db: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _migration_2(db: sqlite3.Connection) -> None:
    # A closed transaction's baseline (every installed package's version) is
    # what most of its bytes were: only the open one needs it.  The index
    # lets retention find a transaction's snapshots without a scan.
    db.execute("DELETE FROM transaction_baseline WHERE transaction_id IN (SELECT "
               "transaction_id FROM snapshots WHERE phase='after')")
    db.execute("CREATE INDEX snapshots_by_transaction ON snapshots (transaction_id)")


def _migration_tracked(db: sqlite3.Connection) -> None:
    # The paths a snapshot always looks at, kept apart from the snapshots:
    # a path stays tracked after it loses its capabilities (the file that
    # lost them once may lose them again) and only leaves when its file is
    # gone; pruning snapshots must not forget it either.
    db.execute("CREATE TABLE tracked (path BLOB PRIMARY KEY) WITHOUT ROWID")
    newest = db.execute("SELECT max(id) FROM snapshots").fetchone()[0]
    if newest is not None:
        db.execute(f"INSERT OR IGNORE INTO tracked SELECT path FROM entries WHERE "
                   f"snapshot_id=? AND {_TRACKABLE}", (newest,))


# Capabilities of the host's root (not namespaced for a user: any user can
# make those by the thousand, and every hook would probe them).
_TRACKABLE = "raw IS NOT NULL AND (rootid IS NULL OR rootid = 0)"


# Index n upgrades a database of schema version n to n + 1.
MIGRATIONS: Sequence[Callable[[sqlite3.Connection], None]] = (
    _migration_1, _migration_2, _migration_tracked)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Store:
    """An open snapshot store.  Use as a context manager."""

    def __init__(self, path: str, create: bool = True, paths: SystemPaths | None = None,
                 wait: float = DEFAULT_WAIT) -> None:
        from capsnap import confine
        from capsnap.paths import SystemPaths

        self.path = path
        self.wait = wait
        self._lock_fd: int | None = None
        self._dir_fd: int | None = None
        # Under a root, the database is one of capsnap's files there, and
        # resolved inside it like all of them; its default directory is
        # capsnap's own, which nobody else may write.
        paths = paths or SystemPaths()
        if not create and not confine.exists(paths, path):
            raise StoreError(f"{path}: no snapshot database yet (take one with "
                             "'capsnap snapshot')")
        try:
            self._dir_fd = confine.database_directory(
                paths, path, private=path == paths.snapshot_db, create=True)
            self.db = sqlite3.connect(f"/proc/self/fd/{self._dir_fd}/{os.path.basename(path)}",
                                      isolation_level=None, timeout=wait)
        except sqlite3.Error as exc:
            self._close_directory()
            raise describe(path, exc) from None
        except (OSError, CapsnapError) as exc:
            self._close_directory()
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise StoreError(f"{path}: cannot open the snapshot database: {detail}") from None
        self.readonly = False
        try:
            self._prepare()
        except sqlite3.Error as exc:
            self.db.close()
            if create or not _unwritable(exc):
                self._close_directory()
                raise describe(path, exc) from None
            self._open_as_it_is(exc)
        except CapsnapError:
            self.close()
            raise

    def _open_as_it_is(self, why: sqlite3.Error) -> None:
        """A reader's second try on a read-only or full filesystem: the file
        as it is, nothing written (not even WAL's shared memory), for
        `snapshots` and `diff` must still show the history."""
        try:
            self.db = sqlite3.connect(
                f"file:/proc/self/fd/{self._dir_fd}/{os.path.basename(self.path)}"
                "?immutable=1", uri=True, isolation_level=None, timeout=self.wait)
            self.readonly = True
            self._prepare()
        except sqlite3.Error:
            self.close()
            raise describe(self.path, why) from None
        except CapsnapError:
            self.close()
            raise

    def _close_directory(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.unlock()
        self.db.close()
        self._close_directory()

    def _prepare(self) -> None:
        db = self.db
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "capsnap_meta" not in tables:
            raise StoreError(f"{self.path}: a SQLite database that is not capsnap's (tables: "
                             f"{', '.join(sorted(tables))}); capsnap leaves it alone: choose "
                             "another --db")
        if self.readonly:
            if not tables:
                raise StoreError(f"{self.path}: no snapshot database yet (take one with "
                                 "'capsnap snapshot')")
        else:
            if not tables:
                # Only a new database takes this without a VACUUM (and before
                # WAL mode writes its header): space freed by pruning can then
                # be given back a little at a time.
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
        if not tables:
            with self.locked(), self.transaction():
                # Re-check under the lock: another run may have created it.
                if not db.execute("SELECT 1 FROM sqlite_master WHERE name='capsnap_meta'") \
                        .fetchone():
                    db.execute("CREATE TABLE capsnap_meta (key TEXT PRIMARY KEY, value TEXT)")
                    db.execute("INSERT INTO capsnap_meta VALUES ('application', ?), "
                               "('schema_version', '0')", (APPLICATION,))
        meta = dict(db.execute("SELECT key, value FROM capsnap_meta").fetchall())
        if meta.get("application") != APPLICATION:
            raise StoreError(f"{self.path}: not a capsnap database; capsnap leaves it alone")
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: made by a newer capsnap (schema {version}, this "
                             f"one knows {SCHEMA_VERSION}); upgrade capsnap")
        if version < SCHEMA_VERSION and self.readonly:
            raise StoreError(f"{self.path}: made by an older capsnap and cannot be upgraded "
                             "where it is (read-only or full); make room, then run any "
                             "capsnap command")
        if version < SCHEMA_VERSION:
            with self.locked(), self.transaction():
                current = int(db.execute("SELECT value FROM capsnap_meta WHERE "
                                         "key='schema_version'").fetchone()[0])
                for step in range(current, SCHEMA_VERSION):
                    MIGRATIONS[step](db)
                db.execute("UPDATE capsnap_meta SET value=? WHERE key='schema_version'",
                           (str(SCHEMA_VERSION),))

    # --- locking and transactions ------------------------------------------

    def lock(self) -> None:
        """capsnap's lock, waited for `self.wait` seconds at most, never longer:
        a holder that is stopped or hung must not stall a package manager."""
        if self._lock_fd is not None:
            return
        from capsnap import confine

        assert self._dir_fd is not None
        try:
            fd = confine.open_lock(self._dir_fd, os.path.basename(self.path) + ".lock",
                                   self.path + ".lock")
        except OSError as exc:
            raise StoreError(f"{self.path}.lock: cannot open capsnap's lock: "
                             f"{exc.strerror or exc}") from None
        deadline = time.monotonic() + self.wait
        pause = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreBusy(f"{self.path}: another capsnap run holds its lock (waited "
                                    f"{self.wait:g} s); nothing is lost: try again once it is "
                                    "done") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.2)
        self._lock_fd = fd
        try:
            self._check_sound()
        except BaseException:
            self.unlock()
            raise

    def _check_sound(self) -> None:
        """Before this process first writes: a damaged database is never written."""
        try:
            key = os.stat(os.path.basename(self.path), dir_fd=self._dir_fd)
        except OSError:
            return
        identity = (key.st_dev, key.st_ino)
        if identity in _sound:
            return
        try:
            tables = {r[0] for r in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            verdict = [r[0] for r in self.db.execute("PRAGMA quick_check")]
        except sqlite3.Error as exc:
            raise describe(self.path, exc) from None
        missing = {"snapshots", "entries", "transactions", "capsnap_meta"} - tables
        if verdict != ["ok"] or (missing and "snapshots" in tables):
            problems = [line for line in "\n".join(verdict).splitlines()
                        if line and not line.startswith("***")]
            why = f"missing tables {', '.join(sorted(missing))}" if verdict == ["ok"] \
                else f"integrity check: {problems[0] if problems else verdict[0]}"
            raise StoreDamaged(f"{self.path}: damaged ({why}); capsnap leaves it alone: "
                               "move it aside to start a new one (its history goes with it)")
        _sound.add(identity)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def locked(self) -> _Locked:
        return _Locked(self)

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    # --- snapshots -----------------------------------------------------------

    def add_snapshot(self, scope: str, root: str, rows: Iterable[Row],
                     label: str | None = None, transaction_id: int | None = None,
                     phase: str | None = None) -> int:
        """Store a snapshot and its rows in one transaction; its id."""
        if label is not None:
            _check_label(label)
        # The walk happens here, before the lock: holding it through a
        # filesystem walk would keep every hook waiting.
        rows = list(rows)
        with self.locked(), self.transaction():
            if label is not None and self.db.execute(
                    "SELECT 1 FROM snapshots WHERE label=?", (label,)).fetchone():
                raise InvalidInput(f"a snapshot is already labelled {label!r} (labels are "
                                   "unique; see 'capsnap snapshots')")
            cur = self.db.execute(
                "INSERT INTO snapshots (created, created_ns, label, scope, root, transaction_id, "
                "phase) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_now(), time.time_ns(), label, scope, root, transaction_id, phase))
            snapshot_id = int(cur.lastrowid or 0)
            batch: list[tuple[object, ...]] = []
            for row in rows:
                batch.append((snapshot_id, *row))
                if len(batch) >= 2000:
                    self._insert(batch)
                    batch = []
            self._insert(batch)
            self._update_tracked(snapshot_id)
            self._count_entries(snapshot_id)
            if phase == "after" and transaction_id is not None:
                # Closed: the versions it began with are no longer needed.
                self.db.execute("DELETE FROM transaction_baseline WHERE transaction_id=?",
                                (transaction_id,))
            return snapshot_id

    def extend_snapshot(self, snapshot_id: int, scope: str, rows: Iterable[Row]) -> None:
        """Add rows of paths a snapshot has not recorded yet, and widen its
        scope: apt's package list arrives after its before snapshot is taken,
        and a transaction keeps one before snapshot."""
        rows = list(rows)  # the walk, before the lock
        with self.locked(), self.transaction():
            self._insert([(snapshot_id, *row) for row in rows], replace=False)
            self.db.execute("UPDATE snapshots SET scope=? WHERE id=?", (scope, snapshot_id))
            self._count_entries(snapshot_id)

    def _count_entries(self, snapshot_id: int) -> None:
        self.db.execute("UPDATE snapshots SET entries=(SELECT count(*) FROM entries "
                        "WHERE snapshot_id=? AND raw IS NOT NULL) WHERE id=?",
                        (snapshot_id, snapshot_id))

    def _insert(self, batch: list[tuple[object, ...]], replace: bool = True) -> None:
        if batch:
            self.db.executemany(f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO entries "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)

    def _update_tracked(self, snapshot_id: int) -> None:
        """A path seen with capabilities is tracked from now on; one seen
        without a file leaves (a declared path is tracked all the same)."""
        self.db.execute(f"INSERT OR IGNORE INTO tracked SELECT path FROM entries WHERE "
                        f"snapshot_id=? AND {_TRACKABLE}", (snapshot_id,))
        self.db.execute("DELETE FROM tracked WHERE path IN (SELECT path FROM entries WHERE "
                        "snapshot_id=? AND present=0)", (snapshot_id,))

    def snapshots(self) -> list[Snapshot]:
        return [Snapshot(*r) for r in self.db.execute(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots ORDER BY id DESC")]

    def find(self, ref: str) -> Snapshot:
        """A snapshot by id or label; exit 2 when there is none."""
        row = None
        if ref.isdigit():
            row = self.db.execute(f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE id=?",
                                  (int(ref),)).fetchone()
        if row is None:
            row = self.db.execute(f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE label=?",
                                  (ref,)).fetchone()
        if row is None:
            raise InvalidInput(f"no snapshot {ref!r} in {self.path}; 'capsnap snapshots' "
                               "lists the ids and labels there are")
        return Snapshot(*row)

    def rows(self, snapshot_id: int) -> Iterator[Row]:
        """The rows of a snapshot, in path order (streamed, not loaded)."""
        cur = self.db.execute(
            "SELECT path, raw, text, rootid, package, version, present, inode, size, "
            "mtime_ns, btime_ns FROM entries WHERE snapshot_id=? ORDER BY path",
            (snapshot_id,))
        for r in cur:
            yield Row(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9], r[10])

    def changed_pairs(self, before_id: int, after_id: int) \
            -> Iterator[tuple[Row | None, Row | None]]:
        """(before, after) for each path whose row differs: first the paths
        the before snapshot has, then those only the after one has, each
        part in path order.

        SQLite does the comparison, as a merge of the two snapshots' rows in
        key order (no lookup per path, no sort): only the rows that differ
        ever become Python objects.  A row differing only in what a diff
        does not compare (its package, say) may come too; compare_pairs
        finds nothing in it.
        """
        # EXCEPT compares whole rows; with its ORDER BY in the order the
        # columns are stored in the (snapshot_id, path) key, SQLite merges
        # the two index ranges instead of sorting them, and LIMIT keeps the
        # subquery's ORDER BY from being dropped.
        order = ", ".join(str(n) for n in range(1, len(_ENTRY_COLUMNS) + 1))
        columns = ", ".join(_ENTRY_COLUMNS)
        after = ", ".join(f"b.{c}" for c in _ENTRY_COLUMNS)
        cur = self.db.execute(
            f"SELECT a.*, {after} FROM (SELECT {columns} FROM entries WHERE snapshot_id=?1 "
            f"EXCEPT SELECT {columns} FROM entries WHERE snapshot_id=?2 ORDER BY {order} "
            "LIMIT -1) a LEFT JOIN entries b ON b.snapshot_id=?2 AND b.path=a.path "
            f"UNION ALL SELECT {', '.join(['NULL'] * len(_ENTRY_COLUMNS))}, {after} FROM "
            "(SELECT path FROM entries WHERE snapshot_id=?2 EXCEPT SELECT path FROM entries "
            "WHERE snapshot_id=?1 ORDER BY 1 LIMIT -1) o "
            "JOIN entries b ON b.snapshot_id=?2 AND b.path=o.path",
            (before_id, after_id))
        width = len(_ENTRY_COLUMNS)
        for r in cur:
            yield _row_of(r), _row_of(r[width:])

    def tracked(self) -> list[bytes]:
        """The paths every snapshot includes besides its scope: those seen
        with capabilities, until a snapshot finds their file gone."""
        return [bytes(r[0]) for r in self.db.execute("SELECT path FROM tracked ORDER BY path")]

    def newest_rows(self, wanted: Iterable[bytes]) -> dict[bytes, Row]:
        """What the newest snapshot knows of each wanted path (the paths a
        snapshot always includes are in every one)."""
        row = self.db.execute("SELECT max(id) FROM snapshots").fetchone()
        if row is None or row[0] is None:
            return {}
        out = {}
        for path in wanted:
            found = _row_of(self.db.execute(
                "SELECT path, raw, text, rootid, package, version, present, inode, size, "
                "mtime_ns, btime_ns FROM entries WHERE snapshot_id=? AND path=?",
                (row[0], path)).fetchone() or (None,))
            if found is not None:
                out[path] = found
        return out

    def prune(self, keep: int | None = None, keep_days: float | None = None,
              now_ns: int | None = None) -> int:
        """Delete what retention does not keep; how many snapshots went.

        What is kept or deleted is a record: a transaction with its before
        and after snapshots (diff needs both), or a snapshot taken outside
        one.  Kept: the `keep` newest records and those younger than
        `keep_days` (both, when both are given), and always the newest
        record, whose rows are what the next hook tracks.
        """
        if keep is not None and keep < 1:
            raise InvalidInput("keep must be 1 or more (the newest transaction is always kept)")
        if keep_days is not None and keep_days < 0:
            raise InvalidInput("keep-days must be 0 or more")
        if keep is None and keep_days is None:
            return 0
        now_ns = time.time_ns() if now_ns is None else now_ns
        with self.locked(), self.transaction():
            # Each record as (newest snapshot id, its time, transaction or None,
            # the snapshot when it is one taken by hand), newest first.
            records = self.db.execute(
                "SELECT max(id), max(created_ns), transaction_id, NULL FROM snapshots "
                "WHERE transaction_id IS NOT NULL GROUP BY transaction_id "
                "UNION ALL SELECT id, created_ns, NULL, id FROM snapshots "
                "WHERE transaction_id IS NULL ORDER BY 1 DESC").fetchall()
            oldest_ns = None if keep_days is None else now_ns - int(keep_days * 86400e9)
            # A transaction still open belongs to a run that will close it.
            still_open = self.open_transaction()
            doomed = [r for n, r in enumerate(records)
                      if n > 0 and (r[2] is None or r[2] != still_open)
                      and ((keep is not None and n >= keep)
                           or (oldest_ns is not None and r[1] < oldest_ns))]
            gone = 0
            for _, _, tid, snapshot_id in doomed:
                if tid is not None:
                    gone += self.db.execute("DELETE FROM snapshots WHERE transaction_id=?",
                                            (tid,)).rowcount
                    self.db.execute("DELETE FROM transactions WHERE id=?", (tid,))
                else:
                    gone += self.db.execute("DELETE FROM snapshots WHERE id=?",
                                            (snapshot_id,)).rowcount
            # A transaction left without any snapshot (its run died before
            # the first) is history of nothing; the newest may still be opening.
            self.db.execute("DELETE FROM transactions WHERE id < (SELECT max(id) FROM "
                            "transactions) AND id NOT IN (SELECT transaction_id FROM "
                            "snapshots WHERE transaction_id IS NOT NULL)")
        return gone

    def size(self) -> int:
        """Bytes of the database file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(os.path.basename(self.path) + suffix,
                                 dir_fd=self._dir_fd).st_size
        return total

    def reclaim(self, thorough: bool) -> None:
        """Give the space pruning freed back to the filesystem.

        `thorough` (the administrator's prune): VACUUM, which rewrites the
        file (and turns on incremental auto-vacuum for a database made
        before it was the default).  Otherwise (a hook) only when free pages
        are over a quarter of the file: new rows reuse them anyway, and an
        incremental vacuum frees them without rewriting the rest.
        """
        db = self.db
        with self.locked():
            incremental = db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
            if not thorough:
                free = db.execute("PRAGMA freelist_count").fetchone()[0]
                pages = db.execute("PRAGMA page_count").fetchone()[0]
                if free * 4 <= pages:
                    return
            if thorough or not incremental:
                # Changing auto_vacuum on a database with tables takes one VACUUM.
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                db.execute("VACUUM")
            else:
                # It frees one page a step, and execute() steps once a
                # statement that returns no rows: executescript() runs it out.
                db.executescript("PRAGMA incremental_vacuum")
            # In WAL mode the file shrinks when the log is written back into it.
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- package-manager transactions --------------------------------------

    def begin_transaction(self, manager: str,
                          packages: Iterable[tuple[str, str | None, str | None]]) -> int:
        with self.locked(), self.transaction():
            cur = self.db.execute("INSERT INTO transactions (manager, started) VALUES (?, ?)",
                                  (manager, _now()))
            tid = int(cur.lastrowid or 0)
            self.db.executemany("INSERT OR REPLACE INTO transaction_packages VALUES "
                                "(?, ?, ?, ?)", [(tid, *p) for p in packages])
            return tid

    def add_transaction_packages(self, tid: int,
                                 packages: Iterable[tuple[str, str | None, str | None]]) \
            -> None:
        with self.locked(), self.transaction():
            for name, old, new in packages:
                known = self.db.execute("SELECT old_version FROM transaction_packages WHERE "
                                        "transaction_id=? AND package=?",
                                        (tid, name)).fetchone()
                self.db.execute("INSERT OR REPLACE INTO transaction_packages VALUES "
                                "(?, ?, ?, ?)", (tid, name, known[0] if known else old, new))

    def set_baseline(self, tid: int, versions: dict[str, str]) -> None:
        """The installed versions when the transaction began (to find what changed)."""
        with self.locked(), self.transaction():
            self.db.executemany("INSERT OR REPLACE INTO transaction_baseline VALUES (?, ?, ?)",
                                [(tid, name, version) for name, version in versions.items()])

    def baseline(self, tid: int) -> dict[str, str]:
        return dict(self.db.execute("SELECT package, version FROM transaction_baseline "
                                    "WHERE transaction_id=?", (tid,)).fetchall())

    def record_actions(self, tid: int, actions: Iterable[tuple[bytes, str, str]]) -> None:
        with self.locked(), self.transaction():
            self.db.executemany("INSERT OR REPLACE INTO transaction_actions VALUES "
                                "(?, ?, ?, ?)", [(tid, *a) for a in actions])

    def actions(self, tid: int) -> dict[bytes, tuple[str, str]]:
        return {r[0]: (r[1], r[2]) for r in self.db.execute(
            "SELECT path, result, detail FROM transaction_actions WHERE transaction_id=?",
            (tid,))}

    def transaction_manager(self, tid: int) -> str | None:
        row = self.db.execute("SELECT manager FROM transactions WHERE id=?",
                              (tid,)).fetchone()
        return str(row[0]) if row else None

    def open_transaction(self) -> int | None:
        """The newest transaction that has a before snapshot and no after one."""
        row = self.db.execute(
            "SELECT t.id FROM transactions t WHERE NOT EXISTS (SELECT 1 FROM snapshots s "
            "WHERE s.transaction_id=t.id AND s.phase='after') ORDER BY t.id DESC "
            "LIMIT 1").fetchone()
        return int(row[0]) if row else None

    def transaction_info(self, tid: int) -> Transaction:
        row = self.db.execute("SELECT id, manager, started FROM transactions WHERE id=?",
                              (tid,)).fetchone()
        if row is None:
            raise InvalidInput(f"no transaction {tid}")
        snaps = dict(self.db.execute("SELECT phase, max(id) FROM snapshots WHERE "
                                     "transaction_id=? GROUP BY phase", (tid,)).fetchall())
        packages = tuple(self.db.execute(
            "SELECT package, old_version, new_version FROM transaction_packages WHERE "
            "transaction_id=? ORDER BY package", (tid,)).fetchall())
        return Transaction(row[0], row[1], row[2], snaps.get("before"), snaps.get("after"),
                           packages)

    def last_complete_transaction(self) -> Transaction | None:
        row = self.db.execute(
            "SELECT transaction_id FROM snapshots WHERE phase='after' AND transaction_id IN "
            "(SELECT transaction_id FROM snapshots WHERE phase='before') ORDER BY id DESC "
            "LIMIT 1").fetchone()
        return self.transaction_info(row[0]) if row else None


def _row_of(r: Sequence[Any]) -> Row | None:
    """The Row of an entry's columns (the first 11 of `r`), or None for NULLs."""
    if r[0] is None:
        return None
    # tuple.__new__ spares the named tuple's own __new__, a Python call per row.
    return _new_tuple(Row, (r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9],
                            r[10]))


_new_tuple = tuple.__new__


class _Locked:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.outer = False

    def __enter__(self) -> None:
        self.outer = self.store._lock_fd is None
        self.store.lock()

    def __exit__(self, *exc: object) -> None:
        if self.outer:
            self.store.unlock()


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _check_label(label: str) -> None:
    if not label or label.isdigit() or any(c.isspace() for c in label):
        raise InvalidInput(f"label {label!r}: use a word that is not a number, "
                           "without spaces")
