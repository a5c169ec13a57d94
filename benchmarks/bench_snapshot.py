"""Benchmarks for snapshots and diff (issue 4).  Run as root:

    .venv/bin/python benchmarks/bench_snapshot.py walk [--runs N]
    .venv/bin/python benchmarks/bench_snapshot.py memory [--files N ...]
    .venv/bin/python benchmarks/bench_snapshot.py diff [--entries N] [--runs N]

walk:   `capsnap snapshot --path /usr` (the --full walker on /usr alone) against
        `getcap -r /usr`, alternating runs, ratio of medians.
memory: peak RSS of a snapshot walk of generated trees of N empty files, a few
        of them with capabilities; it must not grow with N.
diff:   `capsnap diff A B` of two stored snapshots of N entries each (a tenth of
        them changed) against `comm -3` over the sorted `path text` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Started as src/scripts/capsnap starts it: isolated (-I: no PYTHONPATH, no user site),
# the package where site-packages would be.
SRC = REPO / "src"  # the capsnap timed; --src names another tree's (to compare two)


def capsnap_cmd(src: Path) -> list[str]:
    return ["/usr/bin/python3", "-I", "-c", f"import sys; sys.path.append({str(src)!r}); "
            "from capsnap.cli import run; run()"]


CAPSNAP = capsnap_cmd(SRC)


def env() -> dict[str, str]:
    subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q", str(SRC)],
                   check=True, capture_output=True, env=dict(os.environ,
                                                             PYTHONDONTWRITEBYTECODE=""))
    out = dict(os.environ, PYTHONPATH=str(SRC))
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], environ: dict[str, str] | None = None,
          ok: tuple[int, ...] = (0,), cpu: list[float] | None = None) -> float:
    """Wall time of a command; with `cpu`, its CPU time (user and system, its
    own and its waited-for children's: the walk's workers) is appended there."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=environ)
    elapsed = time.perf_counter() - start
    if cpu is not None:
        cpu.append(_children_cpu() - cpu_before)
    if proc.returncode not in ok:
        sys.exit(f"{cmd} failed ({proc.returncode}): {proc.stderr.decode()}")
    return elapsed


def bench_walk(runs: int) -> None:
    environ = env()
    ours, fresh, theirs = [], [], []
    ours_cpu: list[float] = []
    fresh_cpu: list[float] = []
    theirs_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        # The database as a system has it (made once, by the first snapshot or
        # hook), and one made by the timed run itself (its creation and the
        # syncs that go with it).
        kept, new = os.path.join(tmp, "kept.db"), os.path.join(tmp, "new.db")
        timed([*CAPSNAP, "--db", kept, "snapshot", "--path", "/usr"], environ)
        for _ in range(runs):
            theirs.append(timed(["getcap", "-r", "/usr"], cpu=theirs_cpu))
            ours.append(timed([*CAPSNAP, "--db", kept, "snapshot", "--path", "/usr"], environ,
                              cpu=ours_cpu))
            fresh.append(timed([*CAPSNAP, "--db", new, "snapshot", "--path", "/usr"], environ,
                               cpu=fresh_cpu))
            for suffix in ("", "-wal", "-shm", ".lock"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(new + suffix)
    files = subprocess.run(["find", "/usr", "-xdev", "-type", "f"], capture_output=True,
                           check=True).stdout.count(b"\n")
    m = statistics.median
    t, tc = m(theirs), m(theirs_cpu)
    print(f"/usr: {files} regular files; {runs} alternating runs, medians "
          f"(CPU: user and system, all processes)")
    print(f"getcap -r /usr                    {t * 1000:7.1f} ms  CPU {tc * 1000:7.1f} ms")
    for name, wall, cpu in (("capsnap snapshot --path /usr", ours, ours_cpu),
                            ("the same, creating its database", fresh, fresh_cpu)):
        print(f"{name:33s} {m(wall) * 1000:7.1f} ms  CPU {m(cpu) * 1000:7.1f} ms   "
              f"ratio {m(wall) / t:.2f} (CPU {m(cpu) / tc:.2f})")


def make_tree(top: Path, files: int, with_caps: int = 10) -> None:
    per_dir = 1000
    for d in range((files + per_dir - 1) // per_dir):
        directory = top / f"d{d // 100:03d}" / f"{d % 100:02d}"
        directory.mkdir(parents=True)
        for f in range(min(per_dir, files - d * per_dir)):
            (directory / f"f{f:04d}").touch()
    for n in range(with_caps):
        target = top / f"capfile{n}"
        shutil.copyfile("/bin/true", target)
        subprocess.run(["setcap", "cap_net_raw=ep", str(target)], check=True)


def _tree_rss_kb(pid: int) -> int:
    """The summed resident memory of all a process's descendants, now."""
    total, todo, first = 0, [pid], True
    while todo:
        p = todo.pop()
        try:
            if not first:
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            first = False
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            first = False
            continue  # gone meanwhile
    return total


def bench_memory(sizes: list[int]) -> None:
    environ = env()
    for files in sizes:
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            top = Path(tmp) / "tree"
            start = time.perf_counter()
            make_tree(top, files)
            made = time.perf_counter() - start
            db = os.path.join(tmp, "c.db")
            # The walk forks workers: the peak of the largest process (time's %M,
            # which covers the waited-for workers too) and the peak of their sum,
            # sampled every 10 ms (shared pages counted in each: an upper bound).
            proc = subprocess.Popen(["/usr/bin/time", "-f", "%M %e", *CAPSNAP, "--db", db,
                                     "snapshot", "--path", str(top)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=environ, text=True)
            tree_peak = 0
            while proc.poll() is None:
                tree_peak = max(tree_peak, _tree_rss_kb(proc.pid))
                time.sleep(0.01)
            out, err = proc.communicate()
            if proc.returncode != 0:
                sys.exit(err)
            peak_kb, seconds = err.split()[-2:]
            print(f"{files:>9} files (made in {made:.0f} s): peak RSS {int(peak_kb) / 1024:.1f} "
                  f"MiB (largest process), {tree_peak / 1024:.1f} MiB (all processes), walk "
                  f"{float(seconds):.2f} s; {out.strip()}")


def bench_diff(entries: int, runs: int) -> None:
    sys.path.insert(0, str(REPO / "src"))  # the store of this tree writes the data
    from capsnap.store import Row, Store

    environ = env()
    raw_a = bytes.fromhex("0100000200200000000000000000000000000000")
    raw_b = bytes.fromhex("0100000200100000000000000000000000000000")
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "c.db")

        def rows(changed: bool) -> list[Row]:
            out = []
            for n in range(entries):
                raw = raw_b if changed and n % 10 == 0 else raw_a
                text = "cap_net_admin=ep" if raw == raw_b else "cap_net_raw=ep"
                out.append(Row(f"/usr/lib/bench/{n:08d}".encode(), raw, text, None, "pkg",
                               "1", True, n, 1, 1, None))
            return out

        with Store(db) as store:
            store.add_snapshot("full", "/", rows(False), label="a")
            store.add_snapshot("full", "/", rows(True), label="b")
        for name, changed in (("a.txt", False), ("b.txt", True)):
            with open(os.path.join(tmp, name), "w") as f:
                for r in rows(changed):
                    f.write(f"{r.path.decode()} {r.text}\n")
        ours, theirs, floor = [], [], []
        ours_cpu: list[float] = []
        theirs_cpu: list[float] = []
        floor_cpu: list[float] = []
        # What any diff in python pays before reading a row: the interpreter
        # started as capsnap is, and the modules diff needs, sqlite3 included.
        start_only = [*CAPSNAP[:3], f"import sys; sys.path.append({str(SRC)!r}); "
                      "import capsnap.cli, capsnap.diff, capsnap.store, capsnap.config"]
        for _ in range(runs):
            ours.append(timed([*CAPSNAP, "--db", db, "diff", "a", "b"], environ, ok=(1,),
                              cpu=ours_cpu))
            theirs.append(timed(["sh", "-c", f"cd {tmp} && LC_ALL=C comm -3 a.txt b.txt"],
                                cpu=theirs_cpu))
            floor.append(timed(start_only, environ, cpu=floor_cpu))
        m = statistics.median
        t, tc = m(theirs), m(theirs_cpu)
        print(f"{entries} entries per snapshot, {entries // 10} changed; {runs} alternating "
              "runs, medians (CPU: user and system)")
        print(f"comm -3 over sorted text       {t * 1000:7.1f} ms  CPU {tc * 1000:6.1f} ms")
        for name, wall, cpu in (("capsnap diff a b", ours, ours_cpu),
                                ("python start and imports only", floor, floor_cpu)):
            print(f"{name:30s} {m(wall) * 1000:7.1f} ms  CPU {m(cpu) * 1000:6.1f} ms   "
                  f"ratio {m(wall) / t:.1f} (CPU {m(cpu) / tc:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["walk", "memory", "diff"])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--files", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--src", type=Path, help="the src directory of the capsnap to time "
                        "(default: this tree's)")
    args = parser.parse_args()
    if args.src:
        global SRC, CAPSNAP
        SRC = args.src.resolve()
        CAPSNAP = capsnap_cmd(SRC)
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    if args.what == "walk":
        bench_walk(args.runs)
    elif args.what == "memory":
        bench_memory(args.files)
    else:
        bench_diff(args.entries, args.runs)


if __name__ == "__main__":
    main()
