"""Benchmark: `dpkg -i` of a small package with capsnap's hooks against without (issue 6).

Copy-on-write overlays of this machine (so the dpkg database is the size of
the test machine's): one with capsnap's .deb installed, its dpkg hooks and
triggers active; one without; and two with the .deb installed but its
post-invoke hook replaced, by sh that only cleans up, and by a python start
that does nothing: what the design costs before capsnap does any work.
A small package (one binary in /usr/bin, declaring a capability) is
reinstalled in each, alternating, and the ratio of the medians is reported.
Run as root: `.venv/bin/python benchmarks/bench_dpkg_hooks.py CAPSNAP_DEB
[--runs N]`; build the .deb with `dpkg-buildpackage -us -uc -b` on a copy of
the repository.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.overlay import inside, overlay_system, put  # noqa: E402
from tests.packaging import build_deb  # noqa: E402


def timed(root: Path, deb: str) -> float:
    start = time.perf_counter()
    done = inside(root, "dpkg", "-i", deb)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(done.stderr)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("debs", type=Path, nargs="+", metavar="DEB",
                        help="capsnap's .debs (capsnap and python3-capsnap)")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        small = build_deb(Path(tmp) / "debs", "small", "1.0", {"/usr/bin/small": "/bin/true"},
                          file_capabilities=["/usr/bin/small cap_net_raw=ep"])
        with_hooks = stack.enter_context(overlay_system(Path(tmp) / "with"))
        floor = stack.enter_context(overlay_system(Path(tmp) / "floor"))
        sh_only = stack.enter_context(overlay_system(Path(tmp) / "sh"))
        without = stack.enter_context(overlay_system(Path(tmp) / "without"))
        for root in (with_hooks, floor, sh_only):
            installed = inside(root, "dpkg", "-i", *(put(root, deb) for deb in args.debs))
            if installed.returncode != 0:
                sys.exit(installed.stderr)
        # What the design costs before capsnap does anything: its file
        # triggers and sh pre-invoke as shipped, and a post-invoke hook that
        # only drops the marker and the status link, as capsnap's would
        # ("sh only"), or that first starts python to do nothing ("floor").
        hook = "/usr/bin/capsnap hook dpkg-post-invoke"
        cleanup = "rm -f /var/lib/capsnap/transaction-open /var/lib/capsnap/dpkg-status.before"
        for root, command in ((floor, f"/usr/bin/python3 -I -c pass; {cleanup}"),
                              (sh_only, cleanup)):
            cfg = root / "etc/dpkg/dpkg.cfg.d/capsnap"
            assert hook in cfg.read_text()
            cfg.write_text(cfg.read_text().replace(hook, command))
        packages = inside(without, "dpkg-query", "-W", "-f", ".").stdout.count(".")
        roots = {"without capsnap": without, "sh only (no python)": sh_only,
                 "floor (python -c pass)": floor, "with capsnap": with_hooks}
        debs = {name: put(root, small) for name, root in roots.items()}
        for name, root in roots.items():  # first install, not measured
            timed(root, debs[name])
        times: dict[str, list[float]] = {name: [] for name in roots}
        for _ in range(args.runs):
            for name, root in roots.items():
                times[name].append(timed(root, debs[name]))
        base = statistics.median(times["without capsnap"])
        print(f"dpkg database: {packages} packages; {args.runs} paired runs, medians")
        for name in roots:
            median = statistics.median(times[name])
            print(f"dpkg -i, {name:22} {median * 1000:7.1f} ms   ratio {median / base:.2f}")


if __name__ == "__main__":
    main()
