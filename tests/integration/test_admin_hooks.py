"""The administrator's day with capsnap's .deb installed (issue 13), in one
overlay of this machine for the module: a dormant declaration stays quiet
through apt's hooks, a problem is said once per transaction, and removing
capsnap leaves nothing behind that the next dpkg run would trust."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import needs_root
from tests.overlay import inside, overlay_supported, overlay_system, put
from tests.packaging import build_deb

pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("dpkg-buildpackage") is None,
                                 reason="dpkg-dev missing"),
              pytest.mark.skipif(shutil.which("dh") is None, reason="debhelper missing")]

STATE = "var/lib/capsnap"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, capsnap_debs: list[Path]) -> Iterator[Path]:
    if not overlay_supported():
        pytest.skip("no overlayfs here")
    with overlay_system(tmp_path_factory.mktemp("admin-hooks") / "ov") as root:
        done = inside(root, "dpkg", "-i", *(put(root, deb) for deb in capsnap_debs))
        assert done.returncode == 0, done.stdout + done.stderr
        yield root


def last_transaction(root: Path) -> dict[str, object]:
    result = inside(root, "capsnap", "diff", "--json")
    assert result.returncode in (0, 1), result.stderr
    transaction: dict[str, object] = json.loads(result.stdout)["transaction"]
    return transaction


def test_dormant_is_quiet_and_a_problem_is_said_once_per_apt_run(
        tmp_path: Path, system: Path) -> None:
    root = system
    fping = build_deb(tmp_path, "fpingish", "1", {"/usr/bin/fpingish": "/bin/true"})
    assert inside(root, "dpkg", "-i", put(root, fping)).returncode == 0
    declared = inside(root, "capsnap", "declare", "/usr/bin/fpingish", "cap_net_raw=ep")
    assert declared.returncode == 0, declared.stderr
    purged = inside(root, "apt-get", "purge", "-y", "fpingish")
    assert purged.returncode == 0, purged.stderr
    said = purged.stdout + purged.stderr
    assert "capsnap:" not in said and "/usr/bin/fpingish" not in said, said
    assert not (root / STATE / "packages/fpingish").exists()
    check = inside(root, "capsnap", "check")
    assert check.returncode == 0 and "dormant" in check.stdout, check.stdout + check.stderr

    # A problem that every hook of the run meets (a bad local line): said
    # once, though apt runs dpkg twice and four hooks fire.
    (root / "etc/capsnap/capabilities.d/zz-bad.capabilities").write_text("relative cap_x\n")
    try:
        two = [build_deb(tmp_path, name, "1", {f"/usr/bin/{name}": "/bin/true"})
               for name in ("one", "two")]
        apt = inside(root, "apt-get", "install", "-y", *(put(root, deb) for deb in two))
        assert apt.returncode == 0, apt.stderr
        output = apt.stdout + apt.stderr
        said = [line for line in output.splitlines() if "zz-bad.capabilities:1" in line]
        assert len(said) == 1, output
    finally:
        (root / "etc/capsnap/capabilities.d/zz-bad.capabilities").unlink()

    back = inside(root, "apt-get", "install", "-y", put(root, fping))
    assert back.returncode == 0, back.stderr
    in_force = inside(root, "getcap", "/usr/bin/fpingish").stdout
    assert "cap_net_raw=ep" in in_force, back.stderr


def test_removing_capsnap_leaves_no_marker_and_the_next_run_is_attributed(
        tmp_path: Path, system: Path, capsnap_debs: list[Path]) -> None:
    root = system
    state = root / STATE
    removed = inside(root, "dpkg", "-r", "capsnap")
    assert removed.returncode == 0, removed.stderr
    left = {name for name in ("transaction-open", "dpkg-status.before", "transaction-reported",
                              "dpkg-caps.before", "dpkg-serve.pid", "dpkg-serve.in",
                              "dpkg-serve.out")
            if os.path.lexists(state / name)}
    assert inside(root, "dpkg", "-i", *(put(root, deb) for deb in capsnap_debs)).returncode == 0
    assert not left, left
    bar = build_deb(tmp_path, "bar", "1", {"/usr/bin/bar": "/bin/true"})
    assert inside(root, "dpkg", "-i", put(root, bar)).returncode == 0
    transaction = last_transaction(root)
    assert transaction["manager"] == "dpkg"
    assert transaction["packages"] == [{"package": "bar", "old": None, "new": "1"}]


def test_a_stale_marker_of_a_live_process_is_replaced(tmp_path: Path, system: Path) -> None:
    """A marker left by a killed run whose pid now belongs to someone else
    (here: init) is neither trusted nor left in the way."""
    root = system
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    (root / STATE / "transaction-open").write_text(f"dpkg 1 1 {boot}\n")
    baz = build_deb(tmp_path, "baz", "1", {"/usr/bin/baz": "/bin/true"})
    assert inside(root, "dpkg", "-i", put(root, baz)).returncode == 0
    assert last_transaction(root)["packages"] == [{"package": "baz", "old": None, "new": "1"}]
    assert not os.path.lexists(root / STATE / "transaction-open")
