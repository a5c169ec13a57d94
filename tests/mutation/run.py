#!/usr/bin/env python3
# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Mutation run: apply each hand-written mutant to a scratch copy of the tree,
run the tests that exercise its module, and count what the tests catch.

    python3 tests/mutation/run.py [--module M ...] [--jobs N] [--only ID ...]

The mutants and each module's test list are in tests/mutation/mutants/*.txt
(the format is in tests/mutation/README.md).  The checkout is never changed:
each job copies the tree (without .git and the virtual environment) into a
temporary directory, writes one mutant into its copy, runs pytest there, and
writes the original back.  Not part of CI: pytest never collects this
directory (no test_*.py in it).

Before the run and after every mutant, the host is checked: capabilities and
setuid bits of the system's programs, and the mount table.  A mutant that
reached the host (a broken confinement that a test did not keep on a scratch
root) stops the whole run loudly, naming the mutants that were running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import py_compile
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MUTANTS = HERE / "mutants"

# Host programs and libraries whose capabilities and set-id bits must never
# change: the tests copy some of them into scratch roots, and a mutant that
# broke the confinement would land on the originals.
WATCHED_DIRS = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/libexec", "/usr/local/bin",
                "/usr/local/sbin")
# Looked at after every FULL_EVERY mutants and at the end: 3 s (getcap on
# every library) after every mutant would cost a tenth of the run.
WATCHED_LIBRARIES = ("/usr/lib", "/usr/lib64", "/lib", "/lib64")
FULL_EVERY = 20
# capsnap's own places on the host: tests must use scratch roots, never these.
HOST_STATE = ("/etc/capsnap", "/var/lib/capsnap", "/var/log/capsnap.log",
              "/var/cache/capsnap")
# Each pytest run of a mutant sees the host read-only: a private mount
# namespace where / is bound read-only and only /tmp (the scratch copies,
# pytest's tmp_path, the overlays' upper directories) stays writable, and
# /var/tmp (rpmbuild's) and the job's TMPDIR (pytest's tmp_path) are fresh
# tmpfs: nothing to delete afterwards (deleting is slow on a disk mounted
# with discard), and the tests' scratch files stay in memory.  The
# host watch above is the second line.
SANDBOX = ("{ mount --bind /tmp /tmp && mount -o remount,bind,ro / && "
           "mount -t tmpfs tmpfs /var/tmp && mount -t tmpfs -o mode=0755 tmpfs \"$TMPDIR\"; } "
           "|| exit 99; exec \"$@\"")
# One test call longer than this fails (capsnap_mutation_timeout.py): an
# endless loop costs this much, not the whole list's timeout.  No test of
# the lists takes a tenth of it unmutated, even on a loaded machine.
TEST_TIMEOUT = 120
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".mypy_cache",
                                     ".ruff_cache", ".pytest_cache", ".hypothesis", "*.pyc")


@dataclass
class Mutant:
    ident: str
    critical: bool
    description: str
    original: str
    replacement: str
    line: int = 0  # in the module, where the original starts (for the report)
    equivalent: str = ""  # why no test can tell it from the original: not run
    stale: str = ""  # why its original no longer applies to the module: not run


@dataclass
class Module:
    name: str
    path: str  # relative to the tree
    tests: list[str]
    timeout: float
    mutants: list[Mutant] = field(default_factory=list)


@dataclass
class Outcome:
    module: str
    mutant: Mutant
    result: str  # killed, survived, timeout, invalid
    detail: str
    seconds: float


def parse_file(path: Path) -> Module:
    """One module's mutants and tests.

    Lines: `module: PATH`, `timeout: SECONDS`, `test: PYTEST-ARG` (in the
    order they run), then per mutant a header `[ID] crit DESCRIPTION` or
    `[ID] - DESCRIPTION`, the original as `- TEXT` lines and the replacement
    as `+ TEXT` lines (several lines are joined with newlines; no `+` line:
    the original is deleted).  `#` starts a comment line.
    """
    module_path, timeout, tests = "", 300.0, []
    mutants: list[Mutant] = []
    current: Mutant | None = None
    originals: list[str] = []
    replacements: list[str] = []

    def close() -> None:
        if current is not None:
            if not originals:
                raise SystemExit(f"{path}: mutant {current.ident} has no '- ' line")
            current.original = "\n".join(originals)
            current.replacement = "\n".join(replacements)
            mutants.append(current)

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        if raw.startswith("["):
            close()
            ident, _, rest = raw[1:].partition("]")
            flag, _, description = rest.strip().partition(" ")
            if flag not in ("crit", "-") or not ident:
                raise SystemExit(f"{path}:{number}: expected '[ID] crit|- DESCRIPTION'")
            current = Mutant(ident, flag == "crit", description.strip(), "", "")
            originals, replacements = [], []
        elif raw.startswith("- ") or raw == "-":
            if current is None:
                raise SystemExit(f"{path}:{number}: '- ' line before any mutant")
            originals.append(raw[2:])
        elif raw.startswith("+ ") or raw == "+":
            if current is None:
                raise SystemExit(f"{path}:{number}: '+ ' line before any mutant")
            replacements.append(raw[2:])
        elif current is not None and raw.startswith("equivalent:") and not originals:
            current.equivalent = raw.partition(":")[2].strip()
        elif current is None and raw.startswith("module:"):
            module_path = raw.partition(":")[2].strip()
        elif current is None and raw.startswith("timeout:"):
            timeout = float(raw.partition(":")[2])
        elif current is None and raw.startswith("test:"):
            tests.append(raw.partition(":")[2].strip())
        else:
            raise SystemExit(f"{path}:{number}: cannot read this line")
    close()
    if not module_path or not tests:
        raise SystemExit(f"{path}: needs 'module:' and at least one 'test:' line")
    seen: set[str] = set()
    for m in mutants:
        if m.ident in seen:
            raise SystemExit(f"{path}: mutant id {m.ident} given twice")
        seen.add(m.ident)
    return Module(path.stem, module_path, tests, timeout, mutants)


def locate(module: Module, source: str) -> list[tuple[Mutant, str]]:
    """Mutants whose original does not occur exactly once: (mutant, why)."""
    bad = []
    for m in module.mutants:
        count = source.count(m.original)
        if count != 1:
            bad.append((m, f"original found {count} times in {module.path}"))
        else:
            m.line = source[:source.index(m.original)].count("\n") + 1
            if m.original == m.replacement:
                bad.append((m, "replacement equals the original"))
    return bad


# --- the host watch -----------------------------------------------------------------

def _watched(full: bool) -> list[str]:
    return [d for d in WATCHED_DIRS + (WATCHED_LIBRARIES if full else ())
            if os.path.isdir(d) and not os.path.islink(d)]


def _host_caps(full: bool) -> str:
    dirs = _watched(full)
    done = subprocess.run(["getcap", "-r", *dirs], capture_output=True, text=True)
    return "\n".join(sorted(done.stdout.splitlines()))


def _host_setid(full: bool) -> str:
    dirs = _watched(full)
    done = subprocess.run(["find", *dirs, "-xdev", "-type", "f", "-perm", "/6000"],
                          capture_output=True, text=True)
    return "\n".join(sorted(done.stdout.splitlines()))


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        # Mount point, type and source: the ids change with every remount.
        return {" ".join(line.split()[4:5] + line.split(" - ", 1)[1].split()[:2])
                for line in f if " - " in line}


def _state_signature() -> str:
    out = []
    for top in HOST_STATE:
        for dirpath, dirnames, filenames in os.walk(top) if os.path.isdir(top) else [
                (os.path.dirname(top), [], [os.path.basename(top)])]:
            dirnames.sort()
            for name in sorted(filenames):
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(dirpath, name))
                    out.append(f"{dirpath}/{name} {st.st_mode:o} {st.st_size} "
                               f"{st.st_mtime_ns}")
    return "\n".join(out)


class HostWatch:
    """What must not change on the host while mutants run."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.seen_mounts: set[str] = set()
        self.caps = {full: _host_caps(full) for full in (False, True)}
        self.setid = {full: _host_setid(full) for full in (False, True)}
        self.checks = 0
        self.mounts = _mounts()
        self.state = _state_signature()
        self.warnings: list[str] = []

    def harm(self, running: str, final: bool = False) -> str | None:
        """Why the run must stop, or None; a change to capsnap's own host
        state is a warning (other work on the machine may touch it)."""
        self.checks += 1
        full = final or self.checks % FULL_EVERY == 0
        caps = _host_caps(full)
        if caps != self.caps[full]:
            return (f"host capabilities changed (getcap -r):\nbefore:\n{self.caps[full]}\n"
                    f"now:\n{caps}")
        setid = _host_setid(full)
        if setid != self.setid[full]:
            return f"host set-id files changed:\nbefore:\n{self.setid[full]}\nnow:\n{setid}"
        added = _mounts() - self.mounts
        if added:
            time.sleep(2)  # one being torn down right now is no stray mount
            added = _mounts() - self.mounts
        # The tests run in mount namespaces of their own (the sandbox, and
        # tests/conftest.py): one of their mounts can show here only if
        # that failed, and it would be under this run's directory (the
        # copies, each job's TMPDIR).  Others on the machine mount too.
        ours = sorted(m for m in added if m.startswith(f"{self.scratch}/"))
        if ours:
            return "mounts left on the host: " + "; ".join(ours)
        for m in sorted(added - self.seen_mounts):
            self.warnings.append(f"a mount appeared while {running} ran (not under this "
                                 f"run's directory: someone else's?): {m}")
        self.seen_mounts |= added
        state = _state_signature()
        if state != self.state:
            self.warnings.append(f"capsnap's host state changed while {running} ran")
            self.state = state
        return None


# --- running --------------------------------------------------------------------------

class Abort(Exception):
    pass


class Runner:
    def __init__(self, python: str, jobs: int, watch: HostWatch, verbose: bool,
                 sandbox: bool, scratch: Path, run_equivalents: bool = False) -> None:
        self.python = python
        self.run_equivalents = run_equivalents
        self.sandbox = sandbox
        self.watch = watch
        self.verbose = verbose
        self.lock = threading.Lock()
        self.aborted: str | None = None
        self.running: dict[int, str] = {}
        self.processes: dict[int, subprocess.Popen[str]] = {}
        self.scratch = scratch
        # Some tests run the copy's capsnap as an unprivileged user.
        self.scratch.chmod(0o755)
        self.copies = []
        for n in range(jobs):
            copy = self.scratch / f"tree{n}"
            shutil.copytree(REPO, copy, ignore=COPY_IGNORE, symlinks=True)
            self.copies.append(copy)
            # Each job's own TMPDIR: pytest's base temporary directory
            # (pytest-of-root) is shared otherwise, and a test that opens it
            # to other users races with the other job's pytest closing it.
            (self.scratch / f"tmp{n}").mkdir(mode=0o755)
        self.free = list(range(jobs))

    def stop(self, why: str) -> None:
        """Stop the run: no new mutant starts, and the running tests are killed."""
        with self.lock:
            self.aborted = self.aborted or why
            for proc in self.processes.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def pytest(self, slot: int, module: Module, timeout: float) -> tuple[str, str, float]:
        """Run the module's tests in a copy: (killed|survived|timeout, detail, seconds)."""
        copy = self.copies[slot]
        env = dict(os.environ, PYTHONPATH=f"{copy / 'src'}:{copy / 'tests/mutation'}",
                   PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0",
                   CAPSNAP_MUTATION_TEST_TIMEOUT=str(TEST_TIMEOUT),
                   TMPDIR=str(self.scratch / f"tmp{slot}"))
        cmd = [self.python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-p", "capsnap_mutation_timeout",
               "--no-header", "-o", "addopts=", *module.tests]
        if self.sandbox:
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", SANDBOX, "sh",
                   *cmd]
        start = time.monotonic()
        # errors="replace": a test's output may hold any byte (a path that
        # is not UTF-8, a binary's bytes in an assertion).
        proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, encoding="utf-8", errors="replace",
                                start_new_session=True)
        with self.lock:
            self.processes[slot] = proc
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "timeout", f"over {timeout:.0f} s", time.monotonic() - start
        finally:
            with self.lock:
                self.processes.pop(slot, None)
        seconds = time.monotonic() - start
        # Whatever the tests started and left behind goes with them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode == 0:
            return "survived", "", seconds
        if proc.returncode == 99 and self.sandbox:
            raise Abort(f"cannot make the read-only sandbox: {out[-300:]}")
        lines = out.splitlines()
        failed = [ln for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
        if proc.returncode == 1 and "mutation-timeout" in out:
            return "timeout", (failed[0] if failed else "")[:200], seconds
        if proc.returncode in (1, 2):  # tests failed, or the module no longer imports
            return "killed", (failed[0] if failed else lines[-1] if lines else "")[:200], \
                seconds
        return "error", f"pytest exit {proc.returncode}: {out[-600:]}", seconds

    def baseline(self, module: Module) -> float:
        """The module's tests on the unchanged tree: they must pass, and
        their time sets the per-mutant timeout."""
        slot = self.take()
        try:
            result, detail, seconds = self.pytest(slot, module, module.timeout)
        finally:
            self.give(slot)
        if result != "survived":
            raise Abort(f"{module.name}: the tests fail without any mutant ({result}): "
                        f"{detail}")
        return seconds

    def take(self) -> int:
        with self.lock:
            return self.free.pop()

    def give(self, slot: int) -> None:
        with self.lock:
            self.free.append(slot)

    def run_mutant(self, module: Module, m: Mutant, timeout: float) -> Outcome:
        if self.aborted:
            return Outcome(module.name, m, "skipped", "run aborted", 0.0)
        if m.stale:
            return Outcome(module.name, m, "stale", m.stale, 0.0)
        if m.equivalent and not self.run_equivalents:
            return Outcome(module.name, m, "equivalent", m.equivalent, 0.0)
        slot = self.take()
        target = self.copies[slot] / module.path
        original = target.read_bytes()
        text = original.decode("utf-8")
        with self.lock:
            self.running[slot] = f"{module.name} {m.ident}"
        try:
            target.write_text(text.replace(m.original, m.replacement, 1), encoding="utf-8")
            try:
                py_compile.compile(str(target), cfile=str(self.scratch / f"c{slot}.pyc"),
                                   doraise=True)
            except py_compile.PyCompileError as exc:
                return Outcome(module.name, m, "invalid", str(exc).splitlines()[-1], 0.0)
            result, detail, seconds = self.pytest(slot, module, timeout)
            return Outcome(module.name, m, result, detail, seconds)
        finally:
            target.write_bytes(original)
            assert target.read_bytes() == original
            with self.lock:
                running = ", ".join(sorted(self.running.values()))
                self.running.pop(slot, None)
                harm = None if self.aborted else self.watch.harm(running)
                if harm and not self.aborted:
                    self.aborted = f"while {running} ran: {harm}"
                    for proc in self.processes.values():
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
            self.give(slot)


def load(names: list[str] | None) -> list[Module]:
    files = sorted(MUTANTS.glob("*.txt"))
    modules = [parse_file(f) for f in files]
    if names:
        unknown = set(names) - {m.name for m in modules}
        if unknown:
            raise SystemExit(f"unknown module(s): {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(m.name for m in modules)})")
        by_name = {m.name: m for m in modules}
        modules = [by_name[n] for n in dict.fromkeys(names)]  # in the order given
    return modules


def report(outcomes: list[Outcome], modules: list[Module], seconds: float,
           warnings: list[str], what: str = "run time") -> int:
    print()
    print("| module | mutants | killed | timeout (killed) | survived | invalid | score |"
          " critical killed |")
    print("|---|---|---|---|---|---|---|---|")
    totals = dict.fromkeys(("n", "killed", "timeout", "survived", "invalid", "crit",
                            "crit_killed"), 0)
    for module in modules:
        mine = [o for o in outcomes if o.module == module.name]
        counts = {r: sum(o.result == r for o in mine)
                  for r in ("killed", "timeout", "survived", "invalid", "error", "skipped",
                            "equivalent", "stale")}
        crit = [o for o in mine if o.mutant.critical
                and o.result not in ("invalid", "equivalent", "stale")]
        crit_killed = sum(o.result in ("killed", "timeout") for o in crit)
        judged = counts["killed"] + counts["timeout"] + counts["survived"]
        score = (counts["killed"] + counts["timeout"]) / judged if judged else 0.0
        extra = "".join(f", {counts[r]} {r}" for r in ("equivalent", "stale", "error", "skipped")
                        if counts[r])
        print(f"| {module.name} | {len(mine)} | {counts['killed']} | {counts['timeout']} | "
              f"{counts['survived']} | {counts['invalid']} | {score:.1%}{extra} | "
              f"{crit_killed}/{len(crit)} |")
        for key, value in (("n", len(mine)), ("killed", counts["killed"]),
                           ("timeout", counts["timeout"]), ("survived", counts["survived"]),
                           ("invalid", counts["invalid"]), ("crit", len(crit)),
                           ("crit_killed", crit_killed)):
            totals[key] += value
    judged = totals["killed"] + totals["timeout"] + totals["survived"]
    score = (totals["killed"] + totals["timeout"]) / judged if judged else 0.0
    print(f"| **all** | {totals['n']} | {totals['killed']} | {totals['timeout']} | "
          f"{totals['survived']} | {totals['invalid']} | {score:.1%} | "
          f"{totals['crit_killed']}/{totals['crit']} |")
    print(f"\n{what} {seconds / 60:.1f} min")
    survivors = [o for o in outcomes if o.result in ("survived", "error", "invalid",
                                                    "equivalent", "stale")]
    if survivors:
        print("\nsurvivors (and mutants that could not be judged):")
        for o in survivors:
            where = f"{o.module}:{o.mutant.line}"
            crit = " [critical]" if o.mutant.critical else ""
            extra = f" -- {o.detail}" if o.result != "survived" else ""
            print(f"  {o.result.upper()} {o.mutant.ident}{crit} {where} "
                  f"{o.mutant.description}{extra}")
    for w in warnings:
        print(f"warning: {w}")
    return 0


def report_from(path: Path, modules: list[Module]) -> int:
    """The table of a results file: the last outcome of each mutant."""
    known = {(module.name, m.ident): m for module in modules for m in module.mutants}
    last: dict[tuple[str, str], Outcome] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        m = known.get((row["module"], row["id"]))
        if m is not None:
            m.line = row["line"]
            last[(row["module"], row["id"])] = Outcome(row["module"], m, row["result"],
                                                       row["detail"], row["seconds"])
    ran = [module for module in modules if any(k[0] == module.name for k in last)]
    missing = sum(1 for k in known if k[0] in {m.name for m in ran} and k not in last)
    report(list(last.values()), ran, sum(o.seconds for o in last.values()), [],
           "pytest time, summed over the mutants")
    if missing:
        print(f"({missing} mutants of these modules have no result in {path})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", help="only this module (repeatable)")
    parser.add_argument("--only", action="append", help="only this mutant id (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="copies run in parallel (max 4)")
    parser.add_argument("--list", action="store_true",
                        help="check that every mutant applies, list them, run nothing")
    venv = Path(os.environ.get("CAPSNAP_VENV", REPO / ".venv"))
    parser.add_argument("--python", default=str(venv / "bin/python")
                        if (venv / "bin/python").exists() else sys.executable,
                        help="the Python with pytest and hypothesis (default: "
                        "$CAPSNAP_VENV/bin/python, else .venv's, else this one)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run of each module's tests without a mutant")
    parser.add_argument("--baseline-only", action="store_true",
                        help="only time each module's tests without a mutant")
    parser.add_argument("--results", metavar="FILE",
                        help="append each mutant's outcome to FILE (JSON lines) as it ends")
    parser.add_argument("--report-from", metavar="FILE",
                        help="print the table of a --results file (a run stopped early too)")
    parser.add_argument("--resume", action="store_true",
                        help="with --results: skip the mutants FILE already has an outcome "
                        "for (a run stopped early, on the same tree)")
    parser.add_argument("--run-equivalents", action="store_true",
                        help="run the mutants marked equivalent as well")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run the tests with the host writable (only the host watch "
                        "then guards it)")
    parser.add_argument("-v", "--verbose", action="store_true", help="a line per mutant")
    args = parser.parse_args(argv)
    modules = load(args.module)
    if args.report_from:
        return report_from(Path(args.report_from), modules)
    bad_total = 0
    for module in modules:
        source = (REPO / module.path).read_text(encoding="utf-8")
        bad = locate(module, source)
        for m, why in bad:
            print(f"{module.name} {m.ident}: {why}", file=sys.stderr)
            m.stale = why
        bad_total += len(bad)
        if args.only:
            module.mutants = [m for m in module.mutants if m.ident in args.only]
    if args.list:
        for module in modules:
            crit = sum(m.critical for m in module.mutants)
            print(f"{module.name}: {len(module.mutants)} mutants ({crit} critical), "
                  f"{module.path}, tests: {' '.join(module.tests)}")
            if args.verbose:
                for m in module.mutants:
                    print(f"  {m.ident} {'crit' if m.critical else '-   '} line {m.line}: "
                          f"{m.description}")
        return 1 if bad_total else 0
    if bad_total:
        # The code moved under them: the others still run, these are listed
        # as stale (not counted) for their original text to be brought up to date.
        print(f"{bad_total} mutants do not apply (stale, not run): fix their original text",
              file=sys.stderr)
    if os.geteuid() != 0:
        print("run.py: the tests need root (file capabilities, overlays)", file=sys.stderr)
        return 2
    jobs = max(1, min(args.jobs, 4))
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="capsnap-mutation-"))
    watch = HostWatch(scratch)
    runner = Runner(args.python, jobs, watch, args.verbose, not args.no_sandbox, scratch,
                    args.run_equivalents)
    outcomes: list[Outcome] = []

    def interrupted(signum: int, frame: object) -> None:
        runner.stop(f"interrupted by signal {signum}")

    # An interrupted run leaves no test running and no copy behind.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    try:
        timeouts: dict[str, float] = {}
        with ThreadPoolExecutor(jobs) as pool:
            if not args.no_baseline:
                for module, seconds in zip(modules, pool.map(runner.baseline, modules),
                                           strict=True):
                    timeouts[module.name] = max(120.0, 3 * seconds + 60)
                    print(f"baseline {module.name}: {len(module.tests)} test files "
                          f"pass in {seconds:.1f} s; timeout per mutant "
                          f"{timeouts[module.name]:.0f} s", flush=True)
            done: set[tuple[str, str]] = set()
            if args.resume and args.results and os.path.exists(args.results):
                with open(args.results, encoding="utf-8") as f:
                    done = {(r["module"], r["id"]) for r in map(json.loads, f)
                            if r["result"] not in ("skipped", "error")}
            work = [] if args.baseline_only else \
                [(module, m) for module in modules for m in module.mutants
                 if (module.name, m.ident) not in done]

            def one(item: tuple[Module, Mutant]) -> Outcome:
                module, m = item
                outcome = runner.run_mutant(module, m,
                                            timeouts.get(module.name, module.timeout))
                if args.verbose or outcome.result not in ("killed", "timeout", "skipped"):
                    print(f"{outcome.result:8} {module.name} {m.ident} "
                          f"({outcome.seconds:.1f} s) {m.description}"
                          + (f" -- {outcome.detail}" if outcome.detail else ""), flush=True)
                if args.results:
                    with runner.lock, open(args.results, "a", encoding="utf-8") as f:
                        f.write(json.dumps({"module": module.name, "id": m.ident,
                                            "critical": m.critical, "line": m.line,
                                            "description": m.description,
                                            "result": outcome.result, "detail": outcome.detail,
                                            "seconds": round(outcome.seconds, 1)}) + "\n")
                return outcome

            outcomes = list(pool.map(one, work))
    except Abort as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2
    finally:
        runner.close()
    if not runner.aborted:
        harm = watch.harm("the run", final=True)
        if harm:
            runner.aborted = f"found at the end of the run: {harm}"
    if runner.aborted and runner.aborted.startswith("interrupted"):
        print(f"run.py: {runner.aborted}; nothing counted", file=sys.stderr)
        return 130
    if runner.aborted:
        print("\n" + "!" * 78 + f"\nRUN ABORTED: a mutant changed the host\n{runner.aborted}\n"
              + "!" * 78, file=sys.stderr)
        return 3
    report(outcomes, modules, time.monotonic() - started, watch.warnings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
