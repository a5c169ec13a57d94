"""Benchmark: `capsnap check` against a shell loop of `setcap -v` (issue 3).

A scratch root holds a dpkg status database of 5,000 packages, 50 of which
declare one capability each in File-Capabilities; the 50 files carry their
capabilities.  Both sides verify the same 50 files; each is timed as a whole
process, alternating runs, and the ratio of medians is reported: warm
(nothing changed since the last run), after a dpkg run (the status file
rewritten, a package that declares nothing upgraded), and cold (no cache),
of wall time and of CPU time.  Run as root:

    .venv/bin/python benchmarks/bench_check.py [--runs N]
"""

from __future__ import annotations

import argparse
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
PACKAGES = 5000
DECLARED = 50
CAPS = "cap_net_bind_service=ep"


def make_root(top: Path, declared: int = DECLARED) -> tuple[Path, list[Path]]:
    root = top / "root"
    admin = root / "var/lib/dpkg"
    for sub in ("info", "updates", "triggers"):
        (admin / sub).mkdir(parents=True)
    (root / "usr/lib/bench").mkdir(parents=True)
    paragraphs = []
    files = []
    for n in range(PACKAGES):
        para = (f"Package: pkg{n:05d}\nStatus: install ok installed\nPriority: optional\n"
                f"Section: misc\nInstalled-Size: {n % 977}\n"
                f"Maintainer: Bench <bench@example.org>\nArchitecture: all\n"
                f"Version: 1.{n}-1\nDepends: libc6 (>= 2.36), pkg{(n + 1) % PACKAGES:05d}\n"
                f"Description: benchmark package {n}\n filler text for package {n}\n")
        if n % (PACKAGES // declared) == 0:
            path = f"/usr/lib/bench/helper{n:05d}"
            shutil.copyfile("/bin/true", root / path.lstrip("/"))
            os.chmod(root / path.lstrip("/"), 0o755)
            files.append(root / path.lstrip("/"))
            para += f"File-Capabilities:\n {path} {CAPS}\n"
            # A package may only declare its own files: dpkg's list of them.
            (admin / f"info/pkg{n:05d}.list").write_text(
                f"/.\n/usr\n/usr/lib\n/usr/lib/bench\n{path}\n")
        paragraphs.append(para)
    (admin / "status").write_text("\n".join(paragraphs))
    for f in files:
        subprocess.run(["setcap", CAPS, str(f)], check=True)
    return root, files


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall time, and CPU time (user + system) of the command and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{cmd[:4]} failed: {proc.stderr.decode()}")
    return elapsed, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=31)
    parser.add_argument("--declared", type=int, default=DECLARED)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, files = make_root(Path(tmp), args.declared)
        loop = Path(tmp) / "loop.sh"
        loop.write_text("for f in " + " ".join(str(f) for f in files) +
                        f"; do setcap -q -v {CAPS} \"$f\" || exit 1; done\n")
        # As installed: byte-compiled (py3compile does it for the .deb) and
        # started the way src/scripts/capsnap starts it (python3 -I), with
        # the checkout where the package would be.
        subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q", str(REPO / "src")],
                       check=True, capture_output=True,
                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE=""))
        env = None
        capsnap = ["/usr/bin/python3", "-I", "-c",
                   f"import sys; sys.path.append({str(REPO / 'src')!r}); "
                   "from capsnap.cli import run; run()", "--root", str(root), "check"]
        cache = root / "var/cache/capsnap"
        status = root / "var/lib/dpkg/status"
        original = status.read_text()
        times: dict[str, list[tuple[float, float]]] = {
            "cold": [], "warm": [], "after a dpkg run": [], "loop": []}
        for run in range(args.runs):
            shutil.rmtree(cache, ignore_errors=True)
            times["cold"].append(timed(capsnap, env))
            times["warm"].append(timed(capsnap, env))
            # What a dpkg run leaves: the status file rewritten, with another
            # package (one declaring nothing) at a new version.
            status.write_text(original.replace("Version: 1.1-1\n", f"Version: 1.1-{run + 2}\n"))
            times["after a dpkg run"].append(timed(capsnap, env))
            times["loop"].append(timed(["sh", str(loop)]))
        wall, cpu = (statistics.median(t[i] for t in times["loop"]) for i in (0, 1))
        print(f"{PACKAGES} packages, {len(files)} declarations, {args.runs} runs each (median; "
              "CPU time, user + system, is less moved by other work on the machine)")
        print(f"setcap -v loop                   {wall * 1000:7.1f} ms   "
              f"           cpu {cpu * 1000:6.1f} ms")
        for name in ("warm", "after a dpkg run", "cold"):
            w, c = (statistics.median(t[i] for t in times[name]) for i in (0, 1))
            label = "cold (no cache)" if name == "cold" else name
            print(f"capsnap check, {label:17} {w * 1000:7.1f} ms   ratio {w / wall:.2f}   "
                  f"cpu {c * 1000:6.1f} ms   cpu ratio {c / cpu:.2f}")


if __name__ == "__main__":
    main()
