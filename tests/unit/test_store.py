"""The SQLite snapshot store: schema, refusals, locking, pruning."""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from capsnap import diff
from capsnap.errors import InvalidInput
from capsnap.store import SCHEMA_VERSION, Row, Store, StoreError


def rows(n: int, prefix: bytes = b"/usr/bin/") -> list[Row]:
    return [Row(prefix + f"{i:06d}".encode(), b"\x01\x00\x00\x02" + bytes(16), "x", None,
                None, None, True, i, 1, 1, None) for i in range(n)]


def test_create_add_list_find_rows(tmp_path: Path) -> None:
    db = tmp_path / "var/lib/capsnap/capsnap.db"
    with Store(str(db)) as store:
        first = store.add_snapshot("full", "/", rows(3), label="before")
        second = store.add_snapshot("full", "/", rows(5))
        assert [s.id for s in store.snapshots()] == [second, first]
        assert store.find("before").id == first
        assert store.find(str(second)).entries == 5
        assert [r.path for r in store.rows(first)] == [r.path for r in rows(3)]
        with pytest.raises(InvalidInput) as info:
            store.find("nope")
        assert "capsnap snapshots" in str(info.value) and info.value.exit_code == 2
        with pytest.raises(InvalidInput):
            store.add_snapshot("full", "/", [], label="before")
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert dict(con.execute("SELECT key, value FROM capsnap_meta"))["schema_version"] == \
        str(SCHEMA_VERSION)


def test_a_failed_snapshot_leaves_nothing_behind(tmp_path: Path) -> None:
    def broken() -> list[Row]:
        yield from rows(10)
        raise RuntimeError("walk died")

    with Store(str(tmp_path / "c.db")) as store:
        with pytest.raises(RuntimeError):
            store.add_snapshot("full", "/", broken())
        assert store.snapshots() == []


def test_foreign_and_corrupt_files_are_refused_and_untouched(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    before = garbage.read_bytes()
    with pytest.raises(StoreError) as info:
        Store(str(garbage))
    assert "leaves it alone" in str(info.value)
    assert garbage.read_bytes() == before

    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE accounts (id INTEGER)")
    con.commit()
    con.close()
    before = foreign.read_bytes()
    with pytest.raises(StoreError) as info:
        Store(str(foreign))
    assert "not capsnap's" in str(info.value) and "accounts" in str(info.value)
    assert foreign.read_bytes() == before


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    Store(str(db)).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE capsnap_meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError) as info:
        Store(str(db))
    assert "newer capsnap" in str(info.value)


def test_concurrent_writers_do_not_interleave(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    Store(db).close()
    errors: list[BaseException] = []

    def write(tag: bytes) -> None:
        try:
            with Store(db) as store:
                for _ in range(5):
                    store.add_snapshot("full", "/", rows(500, b"/" + tag + b"/"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in (b"a", b"b", b"c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Store(db) as store:
        snaps = store.snapshots()
        assert len(snaps) == 15
        for snap in snaps:
            paths = [r.path for r in store.rows(snap.id)]
            assert len(paths) == 500
            assert len({p.split(b"/")[1] for p in paths}) == 1  # one writer's rows each


def test_prune_and_transactions(tmp_path: Path) -> None:
    with Store(str(tmp_path / "c.db")) as store:
        tid = store.begin_transaction("apt", [("foo", "1.0", "1.1")])
        before = store.add_snapshot("package:foo", "/", rows(1), transaction_id=tid,
                                    phase="before")
        assert store.open_transaction() == tid
        store.add_transaction_packages(tid, [("foo", "0.9", "1.2"), ("bar", None, "2")])
        after = store.add_snapshot("package:foo", "/", rows(1), transaction_id=tid,
                                   phase="after")
        assert store.open_transaction() is None
        info = store.last_complete_transaction()
        assert info is not None
        assert (info.before_id, info.after_id) == (before, after)
        assert info.packages == (("bar", None, "2"), ("foo", "1.0", "1.2"))
        for _ in range(3):
            store.add_snapshot("full", "/", rows(2))
        assert store.prune(2) == 3
        assert len(store.snapshots()) == 2
        assert store.last_complete_transaction() is None


def test_retention_counts_transactions_and_keeps_the_newest(tmp_path: Path) -> None:
    day = 86400 * 10**9
    with Store(str(tmp_path / "c.db")) as store:
        def transaction(closed: bool = True) -> int:
            tid = store.begin_transaction("apt", [("foo", "1", "2")])
            store.set_baseline(tid, {"foo": "1", "bar": "3"})
            store.add_snapshot("package:foo", "/", rows(3), transaction_id=tid, phase="before")
            if closed:
                store.add_snapshot("package:foo", "/", rows(3), transaction_id=tid,
                                   phase="after")
            return tid

        first, second = transaction(), transaction()
        by_hand = store.add_snapshot("full", "/", rows(2))
        third = transaction()
        assert store.baseline(third) == {}  # closed: its baseline went with it
        with pytest.raises(InvalidInput):
            store.prune(0)
        assert store.prune(None, None) == 0
        # Records, newest first: third, the snapshot by hand, second, first.
        assert store.prune(3) == 2
        assert store.transaction_info(second).before_id is not None
        with pytest.raises(InvalidInput):
            store.transaction_info(first)
        # By age: everything is a day old two days from now, but the newest stays.
        now = store.snapshots()[0].created_ns
        assert store.prune(keep_days=1, now_ns=now + day // 2) == 0
        assert store.prune(keep_days=1, now_ns=now + 2 * day) == 3
        assert [s.transaction_id for s in store.snapshots()] == [third, third]
        assert by_hand not in {s.id for s in store.snapshots()}
        # A transaction still open is never pruned, even under a snapshot by hand.
        still_open = transaction(closed=False)
        store.add_snapshot("full", "/", rows(1))
        assert store.prune(1) == 2
        assert store.open_transaction() == still_open
        assert store.baseline(still_open) == {"foo": "1", "bar": "3"}
        assert store.last_complete_transaction() is None  # third went: it was not newest


def test_reclaim_gives_space_back(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with Store(str(db)) as store:
        assert store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        for _ in range(4):
            store.add_snapshot("full", "/", rows(3000))
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        full = db.stat().st_size
        assert store.prune(1) == 3
        store.reclaim(thorough=False)
        assert db.stat().st_size < full / 2
    # A database made before incremental auto-vacuum is converted once.
    old = tmp_path / "old.db"
    with Store(str(old)) as store:
        store.db.execute("PRAGMA auto_vacuum=NONE")
        store.db.execute("VACUUM")
        for _ in range(4):
            store.add_snapshot("full", "/", rows(3000))
        store.prune(2)
        store.reclaim(thorough=False)
        assert store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert store.db.execute("PRAGMA freelist_count").fetchone()[0] == 0


def test_a_snapshot_extended_keeps_its_first_rows(tmp_path: Path) -> None:
    with Store(str(tmp_path / "c.db")) as store:
        first = rows(2)
        snap = store.add_snapshot("tracked", "/", first[:1])
        later = [r._replace(raw=None, text=None) for r in first]
        store.extend_snapshot(snap, "package:foo", later)
        assert list(store.rows(snap)) == [first[0], later[1]]
        found = store.find(str(snap))
        assert (found.scope, found.entries) == ("package:foo", 1)


def test_a_path_stays_tracked_until_its_file_is_gone(tmp_path: Path) -> None:
    raw = bytes.fromhex("0100000200200000000000000000000000000000")

    def seen(caps: bytes | None, present: bool = True) -> Row:
        return Row(b"/usr/bin/clockdiff", caps, None, None, None, None, present, 7, 1, 1, 1)

    with Store(str(tmp_path / "s.db")) as store:
        store.add_snapshot("tracked", "/", [])
        assert store.tracked() == []
        store.add_snapshot("full", "/", [seen(raw)])
        assert store.tracked() == [b"/usr/bin/clockdiff"]
        # Lost its capability: still tracked, it may lose it again once regained.
        store.add_snapshot("tracked", "/", [seen(None)])
        assert store.tracked() == [b"/usr/bin/clockdiff"]
        # Pruning snapshots forgets no tracked path.
        store.prune(1)
        assert store.tracked() == [b"/usr/bin/clockdiff"]
        store.add_snapshot("tracked", "/", [seen(None, present=False)])
        assert store.tracked() == []


def _random_row(rng: random.Random, path: bytes) -> Row:
    def maybe(value: object) -> Any:
        return None if rng.random() < 0.2 else value

    raw = rng.choice([None, b"\x01\x00\x00\x02" + bytes(16), b"\x01\x00\x00\x02\x01" + bytes(15)])
    return Row(path, raw, None if raw is None else rng.choice(["a", "b"]), maybe(0),
               maybe(rng.choice(["p", "q"])), maybe(rng.choice(["1", "2"])),
               rng.random() < 0.9, maybe(rng.randint(1, 3)), maybe(rng.randint(1, 2)),
               maybe(rng.randint(1, 2)), maybe(rng.randint(1, 2)))


def test_changed_pairs_are_what_a_full_merge_of_both_snapshots_finds(tmp_path: Path) -> None:
    """The pairs SQLite picks out classify exactly as a merge of every row of
    both snapshots does, and include every path whose compared fields differ."""
    rng = random.Random(20261201)
    with Store(str(tmp_path / "c.db")) as store:
        for _ in range(30):
            names = [f"/usr/bin/{n:03d}".encode() for n in range(rng.randint(0, 60))]
            # Paths on one side only, both sides, and rows that differ in
            # any column, including NULLs, which SQL compares in its own way.
            a = [_random_row(rng, p) for p in names if rng.random() < 0.8]
            b = [r if rng.random() < 0.5 else _random_row(rng, r.path) for r in a
                 if rng.random() < 0.8]
            b += [_random_row(rng, p) for p in names if rng.random() < 0.2
                  and p not in {r.path for r in b}]
            b.sort(key=lambda r: r.path)
            first = store.add_snapshot("full", "/", a)
            second = store.add_snapshot("full", "/", b)
            stored_a, stored_b = list(store.rows(first)), list(store.rows(second))
            covered = diff.covers("full", ["/usr"])
            pairs = list(store.changed_pairs(first, second))
            assert diff.grouped(diff.compare_pairs(pairs, 1, covered, covered)) == \
                diff.grouped(diff.compare(stored_a, stored_b, 1, covered, covered))
            by_a, by_b = {r.path: r for r in stored_a}, {r.path: r for r in stored_b}
            compared = ("raw", "inode", "present", "btime_ns", "size", "mtime_ns")
            differing = {p for p in by_a.keys() | by_b.keys()
                         if p not in by_a or p not in by_b or
                         any(getattr(by_a[p], f) != getattr(by_b[p], f) for f in compared)}
            seen = [(x or y).path for x, y in pairs]  # type: ignore[union-attr]
            assert len(seen) == len(set(seen)) and differing <= set(seen)
            assert all(x == by_a.get((x or y).path) and y == by_b.get((x or y).path)  # type: ignore[union-attr]
                       for x, y in pairs)


def test_changed_pairs_merge_the_two_snapshots_without_a_sort(tmp_path: Path) -> None:
    """The comparison relies on the columns' stored order: a migration that
    reorders them would make every diff sort both snapshots again."""
    with Store(str(tmp_path / "c.db")) as store:
        first = store.add_snapshot("full", "/", rows(3))
        second = store.add_snapshot("full", "/", rows(4))
        captured: list[str] = []
        store.db.set_trace_callback(captured.append)
        list(store.changed_pairs(first, second))
        store.db.set_trace_callback(None)
        query = next(q for q in captured if "EXCEPT" in q)
        plan = " | ".join(r[3] for r in store.db.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert plan.count("MERGE (EXCEPT)") == 2 and "TEMP B-TREE" not in plan, plan
