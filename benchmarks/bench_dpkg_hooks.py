"""Benchmark: `dpkg -i` of a small package with capsnap's hooks against without (issues 6, 16).

Copy-on-write overlays of this machine (so the dpkg database is the size of
the test machine's), each with capsnap's .debs installed and its dpkg hooks
and triggers active, but for the first:

- "without capsnap": nothing of capsnap's;
- "sh only": capsnap's pre-invoke lines as shipped, but starting nothing in
  the background, and a post-invoke line that only removes what they left
  (what the sh costs dpkg);
- "python start on the path": the same, with `python3 -I -c pass` first in
  post-invoke (the floor of a design that starts python while dpkg waits);
- "in dpkg's path": capsnap without its background process, post-invoke
  running `capsnap hook dpkg-post-invoke` itself (the fallback, and the
  design before issue 16);
- "with capsnap": as shipped (capsnap.background).

A small package (one binary in /usr/bin, declaring a capability, which each
reinstall drops and capsnap puts back) is reinstalled in each in turn,
alternating, and the ratio of the medians is reported.  Run as root:
`.venv/bin/python benchmarks/bench_dpkg_hooks.py [--runs N] [DEB ...]` with
capsnap's .debs (capsnap and python3-capsnap); without them they are built
from a copy of this tree.
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
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_storage import build_debs  # noqa: E402

from tests.overlay import inside, overlay_system, put  # noqa: E402
from tests.packaging import build_deb  # noqa: E402

CFG = "etc/dpkg/dpkg.cfg.d/capsnap"
START = "{ /usr/bin/capsnap hook dpkg-serve </dev/null >/dev/null 2>&1 & } && "
CLEANUP = ("rm -f /var/lib/capsnap/transaction-open /var/lib/capsnap/dpkg-status.before "
           "/var/lib/capsnap/dpkg-caps.before")


def timed(root: Path, deb: str) -> float:
    start = time.perf_counter()
    done = inside(root, "dpkg", "-i", deb)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or "capsnap" in done.stderr:
        sys.exit(done.stderr)
    return elapsed


def rewrite(root: Path, post_invoke: str | None, background: bool) -> None:
    """capsnap's dpkg.cfg.d file with its post-invoke line replaced, and
    without the start of the background process."""
    cfg = root / CFG
    text = cfg.read_text()
    assert START in text
    lines = []
    for line in text.splitlines():
        if line.startswith("pre-invoke=") and not background:
            line = line.replace(START, "")
        if line.startswith("post-invoke=") and post_invoke is not None:
            line = f'post-invoke="{post_invoke}"'
        lines.append(line)
    cfg.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("debs", type=Path, nargs="*", metavar="DEB",
                        help="capsnap's .debs (default: built from this tree)")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        debs = args.debs or [d for d in build_debs(Path(tmp) / "build")
                             if not d.name.startswith("dh-capsnap")]
        small = build_deb(Path(tmp) / "debs", "small", "1.0", {"/usr/bin/small": "/bin/true"},
                          file_capabilities=["/usr/bin/small cap_net_raw=ep"])
        variants = {
            "without capsnap": None,
            "sh only": (CLEANUP, False),
            "python start on the path": (f"/usr/bin/python3 -I -c pass; {CLEANUP}", False),
            "in dpkg's path (before)": (None, False),
            "with capsnap": (None, True),
        }
        roots = {}
        for number, (name, variant) in enumerate(variants.items()):
            root = stack.enter_context(overlay_system(Path(tmp) / str(number)))
            if variant is not None:
                installed = inside(root, "dpkg", "-i", *(put(root, deb) for deb in debs))
                if installed.returncode != 0:
                    sys.exit(installed.stderr)
                rewrite(root, *variant)
            roots[name] = root
        packages = inside(roots["without capsnap"], "dpkg-query", "-W", "-f", ".").stdout
        local = {name: put(root, small) for name, root in roots.items()}
        for name, root in roots.items():  # first install, not measured
            timed(root, local[name])
        times: dict[str, list[float]] = {name: [] for name in roots}
        for _ in range(args.runs):
            for name, root in roots.items():
                times[name].append(timed(root, local[name]))
        base = statistics.median(times["without capsnap"])
        print(f"dpkg database: {len(packages)} packages; {args.runs} paired runs, medians")
        for name in roots:
            median = statistics.median(times[name])
            print(f"dpkg -i, {name:26} {median * 1000:7.1f} ms   ratio {median / base:.2f}")


if __name__ == "__main__":
    main()
