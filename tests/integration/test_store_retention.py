"""A database that stays small (issue 13, item 4): apt's hooks in a scratch dpkg
root record one before and one after snapshot per transaction, with rows only
for what a diff needs; retention from capsnap.conf is applied by the closing
hook; `prune` shrinks the file and leaves diff of what it keeps unchanged."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from pathlib import Path

import pytest

from capsnap import hook
from capsnap.fileops import kernel_cap_bits
from capsnap.paths import SystemPaths
from tests.conftest import needs_root, run_capsnap
from tests.packaging import build_deb, dpkg_install, make_dpkg_root

pytestmark = needs_root

HELPER = "/usr/lib/big/helper"
HELPERS = [HELPER] + [f"/usr/lib/big/helper{n:02d}" for n in range(1, 20)]
FILES = 300  # files without capabilities in each version of the package


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A package of many files, twenty of which declare a capability (which
    every upgrade drops and the closing hook puts back)."""
    out = tmp_path_factory.mktemp("debs")
    built = {}
    for version in ("1.0", "1.1", "1.2", "1.3"):
        files: dict[str, str | Path | bytes] = {
            f"/usr/share/big/f{n:03d}": f"{version} {n}\n".encode() for n in range(FILES)}
        files.update({helper: "/bin/true" for helper in HELPERS})
        built[version] = build_deb(out, "big", version, files,
                                   file_capabilities=[f"{h} cap_net_raw=ep" for h in HELPERS])
    return built


def apt_run(root: Path, deb: Path, old: str | None, new: str,
            capsys: pytest.CaptureFixture[str]) -> None:
    """One apt transaction as apt drives it: pre-invoke, pre-install-pkgs
    (protocol 3), dpkg, post-invoke."""
    paths, bits = SystemPaths(root=str(root)), kernel_cap_bits()
    line = f"big {old or '-'} all none {'<' if old else '-'} {new} all none {deb}\n"
    for name, stdin in (("apt-pre-invoke", ""),
                        ("apt-pre-install-pkgs", "VERSION 3\nAPT::Architecture=amd64\n\n"
                         + line)):
        assert hook.run(name, paths, None, bits, stdin=io.StringIO(stdin)) == 0
    dpkg_install(root, deb)
    assert hook.run("apt-post-invoke", paths, None, bits, stdin=io.StringIO("")) == 0
    err = capsys.readouterr().err
    assert "capsnap: hook" not in err, err  # nothing to report in a run that went well
    assert os.getxattr(root / HELPER.lstrip("/"), "security.capability")


def database(root: Path) -> Path:
    db = root / "var/lib/capsnap/capsnap.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return db


def query(root: Path, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(database(root))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_prune_keeps_diff_of_what_it_keeps_and_shrinks_the_file(
        tmp_path: Path, debs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = make_dpkg_root(tmp_path / "root")
    r = str(root)
    apt_run(root, debs["1.0"], None, "1.0", capsys)
    for old, new in (("1.0", "1.1"), ("1.1", "1.2"), ("1.2", "1.3")):
        apt_run(root, debs[new], old, new, capsys)

    # One before and one after snapshot per transaction; rows for the files
    # with capabilities, not for the package's other 300.
    snaps = query(root, "SELECT transaction_id, phase, scope, (SELECT count(*) FROM entries "
                        "WHERE snapshot_id=s.id) FROM snapshots s ORDER BY id")
    assert [(t, p) for t, p, _, _ in snaps] == \
        [(t, p) for t in (1, 2, 3, 4) for p in ("before", "after")]
    # The first before knows nothing yet; each upgrade's covers the package.
    assert [(s, n) for _, _, s, n in snaps] == [("tracked", 0)] + [("package:big", 20)] * 7
    assert query(root, "SELECT count(*) FROM transaction_baseline") == [(0,)]

    kept = query(root, "SELECT id FROM snapshots WHERE transaction_id=3 ORDER BY id")
    refs = [str(i) for (i,) in kept]
    shown = {args: run_capsnap("--root", r, "diff", *args)
             for args in (tuple(refs), (*refs, "--json"), (), ("--json",))}
    for args, result in shown.items():
        assert result.status == 1, (args, result)
    assert "replaced, caps lost, restored by capsnap" in shown[tuple(refs)].out
    assert "big 1.1 -> 1.2" in shown[tuple(refs)].out
    assert json.loads(shown[("--json",)].out)["transaction"]["id"] == 4

    size = database(root).stat().st_size
    pruned = run_capsnap("--root", r, "-v", "prune", "--keep", "2")
    assert pruned.status == 0, pruned.err
    assert database(root).stat().st_size < size
    assert query(root, "SELECT DISTINCT transaction_id FROM snapshots ORDER BY 1") == \
        [(3,), (4,)]
    assert query(root, "SELECT id FROM transactions ORDER BY id") == [(3,), (4,)]
    for args, result in shown.items():
        again = run_capsnap("--root", r, "diff", *args)
        assert (again.status, again.out, again.err) == (result.status, result.out, result.err)

    # The next transaction still tracks, restores and records.
    apt_run(root, debs["1.1"], "1.3", "1.1", capsys)
    newest = json.loads(run_capsnap("--root", r, "diff", "--json").out)
    assert newest["transaction"]["id"] == 5
    assert [c["capsnap"] for c in newest["changes"]] == ["restored"] * len(HELPERS)


def test_retention_from_capsnap_conf_is_applied_by_the_closing_hook(
        tmp_path: Path, debs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = make_dpkg_root(tmp_path / "root")
    (root / "etc/capsnap").mkdir(parents=True)
    (root / "etc/capsnap/capsnap.conf").write_text("keep = 2\n")
    apt_run(root, debs["1.0"], None, "1.0", capsys)
    apt_run(root, debs["1.1"], "1.0", "1.1", capsys)
    assert run_capsnap("--root", str(root), "snapshot", "--label", "mine").status == 0
    assert query(root, "SELECT id FROM transactions") == [(1,), (2,)]
    apt_run(root, debs["1.2"], "1.1", "1.2", capsys)
    # The two newest records: transaction 3 and the snapshot taken by hand.
    assert query(root, "SELECT id FROM transactions") == [(3,)]
    assert query(root, "SELECT label, transaction_id FROM snapshots ORDER BY id") == \
        [("mine", None), (None, 3), (None, 3)]
    assert json.loads(run_capsnap("--root", str(root), "diff", "--json").out)[
        "transaction"]["id"] == 3
