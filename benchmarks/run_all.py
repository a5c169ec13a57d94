"""Run every benchmark of benchmarks/README.md in turn, with the run counts
the README's figures were measured with, and list every ratio they print at
the end.  Run as root on the test machine (nothing here runs in CI):

    .venv/bin/python benchmarks/run_all.py [--ansible-bin DIR]

capsnap's .debs are built once, from a copy of this tree, for the benchmarks
that install them.  The Ansible comparison needs the `ansible` bundle in its
own venv (see bench_ansible.py) and runs only when --ansible-bin names it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_storage import build_debs  # noqa: E402

# Each benchmark's lines that give a ratio, for the summary at the end.
RATIOS: dict[str, list[str]] = {}


def bench(script: str, *args: str) -> bool:
    print(f"\n== {script} {' '.join(args)}", flush=True)
    proc = subprocess.Popen([sys.executable, str(HERE / script), *args],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = RATIOS.setdefault(script, [])
    for line in proc.stdout:  # shown as it comes: some take many minutes
        print(line, end="", flush=True)
        if "ratio" in line:
            lines.append(line.rstrip())
    return proc.wait() == 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ansible-bin", metavar="DIR",
                        help="bin directory of a venv with the ansible bundle")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        debs = [str(deb) for deb in build_debs(Path(tmp))]
        results = {
            "check": bench("bench_check.py", "--runs", "21"),
            "snapshot walk": bench("bench_snapshot.py", "walk", "--runs", "11"),
            "snapshot memory": bench("bench_snapshot.py", "memory", "--files", "10000",
                                     "100000", "1000000"),
            "snapshot diff": bench("bench_snapshot.py", "diff", "--runs", "11"),
            "dpkg hooks": bench("bench_dpkg_hooks.py", "--runs", "21",
                                *(deb for deb in debs if not Path(deb).name.startswith("dh-"))),
            "storage": bench("bench_storage.py", "--deb", *debs),
            "apt": bench("bench_apt.py", "--runs", "5", "--deb", *debs),
        }
        if args.ansible_bin:
            results["ansible"] = bench("bench_ansible.py", args.ansible_bin)
        else:
            print("\n== bench_ansible.py: skipped (no --ansible-bin)")
    print("\n== ratios")
    for script, lines in RATIOS.items():
        for line in lines:
            print(f"{script}: {line}")
    failed = [name for name, ok in results.items() if not ok]
    if failed:
        sys.exit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
