"""Benchmark: `apt-get install --reinstall` of 100 packages with capsnap's hooks
against without (issue 16).

Two copy-on-write overlays of this machine: one with capsnap's .debs
installed (apt's Pre-Invoke, Pre-Install-Pkgs and Post-Invoke hooks, dpkg's
hooks and capsnap's file triggers all active), one without.  The same 100
installed packages (every k-th by name of those whose .deb at the installed
version is in apt's archive cache, that are not Essential, required or
important, own no file with capabilities and are not the package tools, boot
or init) are reinstalled in each, alternating, from the cached archives with
downloads turned off, so that the network is not measured; the ratio of the
medians is reported, of wall time and of the CPU time of every process of
the run (less moved by other work on a shared machine).  A first
transaction in each, not measured, creates capsnap's database and warms the
page cache.  --compare-deb measures another build of capsnap (an earlier
one) in a third overlay, in the same rounds.

Run as root: `.venv/bin/python benchmarks/bench_apt.py [--runs N]
[--packages N] [--deb FILE ...] [--compare-deb FILE ...]`.  Without --deb, capsnap's .debs are built
from a copy of this tree.  Packages missing from the archive cache are
downloaded once, before anything is timed.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_storage import _AVOID, build_debs, owners_of_capabilities  # noqa: E402

from tests.overlay import inside, overlay_system, put  # noqa: E402

# apt as a script would run it: no download (the archives are in the cache),
# no progress bar or pty (the same cost on both sides, but noise).
APT = ["apt-get", "install", "--reinstall", "-y", "--no-download",
       "-o", "Dpkg::Use-Pty=0", "-o", "quiet=2"]


def archive_name(name: str, version: str, arch: str) -> str:
    """apt's file name for a package in /var/cache/apt/archives."""
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


def cached_candidates(root: Path, wanted: int) -> list[str]:
    """Installed packages whose .deb at the installed version apt keeps in its
    archive cache, with no file that has capabilities, spread over the
    alphabet (the same kind bench_storage.py reinstalls)."""
    listed = inside(root, "dpkg-query", "-W", "-f",
                    "${Package}\t${Version}\t${Architecture}\t${Essential}\t${Priority}\t"
                    "${db:Status-Abbrev}\n")
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    archives = root / "var/cache/apt/archives"
    names = {name for name, version, arch, essential, priority, status in rows
             if status.strip() == "ii" and essential != "yes"
             and priority not in ("required", "important")
             and not name.startswith(_AVOID)
             and (archives / archive_name(name, version, arch)).is_file()}
    names -= owners_of_capabilities(root)
    chosen = sorted(names)
    step = max(1, len(chosen) // wanted)
    return chosen[::step][:wanted]


def reinstall(root: Path, packages: list[str]) -> tuple[float, float]:
    """Wall time, and CPU time of every process of the run (apt, dpkg, the
    hooks and maintainer scripts): less moved by other work on the machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = inside(root, *APT, *packages)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        sys.exit(f"apt-get failed in {root}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    problems = [line for line in done.stderr.splitlines() if "capsnap" in line]
    if problems:
        print("\n".join(problems[:10]))
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--packages", type=int, default=100)
    parser.add_argument("--deb", type=Path, nargs="+", metavar="FILE",
                        help="capsnap's .deb files (default: built from this tree)")
    parser.add_argument("--compare-deb", type=Path, nargs="+", metavar="FILE",
                        help="another build of capsnap's .debs, measured in a third overlay "
                        "in the same rounds (an earlier version, say)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        debs = args.deb or build_debs(Path(tmp) / "build")
        without = stack.enter_context(overlay_system(Path(tmp) / "without"))
        roots = {"without capsnap": without}
        for name, top, files in (("with capsnap", "with", debs),
                                 ("with --compare-deb", "compare", args.compare_deb)):
            if not files:
                continue
            root = roots[name] = stack.enter_context(overlay_system(Path(tmp) / top))
            installed = inside(root, "dpkg", "-i", *(put(root, deb) for deb in files))
            if installed.returncode != 0:
                sys.exit(installed.stdout + installed.stderr)
        chosen = cached_candidates(without, args.packages)
        if len(chosen) < args.packages:
            sys.exit(f"only {len(chosen)} packages have their .deb in apt's archive cache; "
                     "fill it with apt-get install --reinstall --download-only first")
        files = sum(len((without / f"var/lib/dpkg/info/{name}.list").read_text().splitlines())
                    for name in chosen
                    if (without / f"var/lib/dpkg/info/{name}.list").exists())
        for root in roots.values():  # first transaction, not measured
            reinstall(root, chosen)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in roots}
        for run in range(args.runs):
            # Alternate the order: the page cache and other work on the
            # machine then favour no side.
            order = list(roots) if run % 2 == 0 else list(reversed(roots))
            for name in order:
                times[name].append(reinstall(roots[name], chosen))
        base = [statistics.median(t[i] for t in times["without capsnap"]) for i in (0, 1)]
        print(f"{len(chosen)} packages ({files} files), e.g. {', '.join(chosen[:4])}, ...; "
              f"{args.runs} paired runs, medians")
        for name in roots:
            wall, cpu = (statistics.median(t[i] for t in times[name]) for i in (0, 1))
            print(f"apt-get install --reinstall, {name:18} {wall * 1000:8.1f} ms   "
                  f"ratio {wall / base[0]:.3f}   cpu {cpu * 1000:8.1f} ms   "
                  f"cpu ratio {cpu / base[1]:.3f}")


if __name__ == "__main__":
    main()
