"""Benchmark: bytes the snapshot database gains per apt transaction (issue 13).

In a copy-on-write overlay of this machine with capsnap's .deb installed,
`apt-get install --reinstall` of about 100 installed packages, downloaded
from the Debian archive as apt would for an upgrade, none of which has a
file with capabilities: a transaction that changes no capability.  The
database (capsnap.db, after a checkpoint folds its write-ahead log in) is
measured before and after, for two such transactions in a row: the first
after capsnap's own install, and the next (the steady state).

Run as root: `.venv/bin/python benchmarks/bench_storage.py [--packages N]
[--deb FILE ...] [--cache DIR]`.  Without --deb, capsnap's .debs are built
from a copy of this tree with dpkg-buildpackage, as the tests build them.
--cache keeps the downloaded .debs in DIR for the next run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.overlay import inside, overlay_system, put  # noqa: E402

# Reinstalling these in a chroot does more than write files (boot loaders,
# init systems, the package tools themselves) or is capsnap.
_AVOID = ("apt", "base-files", "capsnap", "dbus", "dpkg", "grub", "initramfs", "libc6",
          "linux-", "python3-capsnap", "systemd", "udev")


def owners_of_capabilities(root: Path) -> set[str]:
    """The packages (bare names) that own a file under /usr with capabilities:
    left out of the reinstalls, which must not measure capsnap's work on them."""
    getcap = subprocess.run(["getcap", "-r", str(root / "usr")], capture_output=True,
                            text=True).stdout
    with_caps = {line.split()[0][len(str(root)):] for line in getcap.splitlines()}
    owners = inside(root, "dpkg-query", "-S", *with_caps).stdout if with_caps else ""
    return {owner.strip().split(":")[0] for line in owners.splitlines()
            for owner in line.split(":", 1)[0].split(",")}


def build_debs(top: Path) -> list[Path]:
    source = top / "capsnap"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"))
    # The system's python3 first on PATH, as tests/conftest.py builds them:
    # debian/rules takes python3 from PATH, and another one lacks the build tools.
    built = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=source,
                           capture_output=True, text=True,
                           env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin",
                                    DEB_BUILD_OPTIONS="nocheck"))
    if built.returncode != 0:
        sys.exit(built.stdout[-3000:] + built.stderr[-3000:])
    return sorted(top.glob("*.deb"))


def candidates(root: Path, wanted: int) -> list[str]:
    """Installed packages apt can download again at their installed version,
    with no file that has capabilities, spread over the alphabet."""
    listed = inside(root, "dpkg-query", "-W", "-f",
                    "${Package}\t${Version}\t${Essential}\t${Priority}\t${db:Status-Abbrev}\n")
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    names = {name: version for name, version, essential, priority, status in rows
             if status.strip() == "ii" and essential != "yes"
             and priority not in ("required", "important")
             and not name.startswith(_AVOID)}
    for owner in owners_of_capabilities(root):
        names.pop(owner, None)
    policy = inside(root, "apt-cache", "policy", *sorted(names)).stdout
    # apt-cache policy: "NAME:", then its version table: a version a line
    # (" *** V" the installed one), each followed by where it comes from.
    downloadable: set[str] = set()
    name = ""
    installed_line = False
    for line in policy.splitlines():
        fields = line.split()
        if line and not line.startswith(" "):
            name, installed_line = line.rstrip(":"), False
        elif line.startswith(" *** "):
            installed_line = fields[1] == names.get(name)
        elif line.startswith("        "):
            if installed_line and fields[1:2] and fields[1].startswith("http"):
                downloadable.add(name)
        elif line.startswith("     "):
            installed_line = False
    chosen = sorted(downloadable)
    step = max(1, len(chosen) // wanted)
    return chosen[::step][:wanted]


def database_bytes(root: Path) -> tuple[int, int]:
    """Size of capsnap.db with its log folded in, and its entry rows."""
    db = root / "var/lib/capsnap/capsnap.db"
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = con.execute("SELECT count(*) FROM entries").fetchone()[0]
    finally:
        con.close()
    return db.stat().st_size, rows


@contextmanager
def archives(root: Path, cache: Path | None) -> Iterator[None]:
    """apt's download directory, on the host when --cache is given."""
    if cache is None:
        yield
        return
    (cache / "partial").mkdir(parents=True, exist_ok=True)
    target = root / "var/cache/apt/archives"
    subprocess.run(["mount", "--bind", str(cache), str(target)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(target)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packages", type=int, default=100)
    parser.add_argument("--deb", type=Path, nargs="+", metavar="FILE",
                        help="capsnap's .deb files (default: built from this tree)")
    parser.add_argument("--cache", type=Path, metavar="DIR",
                        help="keep apt's downloads here between runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        debs = args.deb or build_debs(Path(tmp) / "build")
        with overlay_system(Path(tmp) / "ov") as root, archives(root, args.cache):
            installed = inside(root, "dpkg", "-i", *(put(root, deb) for deb in debs))
            if installed.returncode != 0:
                sys.exit(installed.stdout + installed.stderr)
            chosen = candidates(root, args.packages)
            files = sum(len((root / f"var/lib/dpkg/info/{name}.list").read_text().splitlines())
                        for name in chosen
                        if (root / f"var/lib/dpkg/info/{name}.list").exists())
            print(f"{len(chosen)} packages ({files} files), e.g. {', '.join(chosen[:5])}, ...")
            fetched = inside(root, "apt-get", "install", "--reinstall", "-y",
                             "--download-only", *chosen)
            if fetched.returncode != 0:
                sys.exit(fetched.stdout[-3000:] + fetched.stderr[-3000:])
            sizes = [database_bytes(root)] if (root / "var/lib/capsnap/capsnap.db").exists() \
                else [(0, 0)]
            for run in (1, 2):
                done = inside(root, "apt-get", "install", "--reinstall", "-y", *chosen)
                if done.returncode != 0:
                    sys.exit(done.stdout[-3000:] + done.stderr[-3000:])
                problems = [line for line in done.stderr.splitlines() if "capsnap" in line]
                if problems:
                    print("\n".join(problems[:10]))
                sizes.append(database_bytes(root))
                grown = sizes[-1][0] - sizes[-2][0]
                print(f"transaction {run}: capsnap.db {sizes[-2][0]:,} -> {sizes[-1][0]:,} "
                      f"bytes (+{grown:,}, {grown / 1024:.1f} KiB), entry rows "
                      f"{sizes[-2][1]:,} -> {sizes[-1][1]:,}")
            shown = inside(root, "capsnap", "diff")
            print(f"capsnap diff: exit {shown.returncode}, {len(shown.stdout.splitlines())} "
                  "lines (no capability changed: exit 0, nothing listed)")
            os.sync()


if __name__ == "__main__":
    main()
