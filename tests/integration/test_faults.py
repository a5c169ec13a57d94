"""The fault matrix: no fault in capsnap's world fails, blocks or silently
weakens a package transaction.

Each test runs real dpkg and apt, with capsnap's own .deb installed, in a
throw-away overlay of this machine (tests/overlay.py), and puts one fault in
capsnap's way: a package with a field that is not UTF-8, a process holding
capsnap's lock or SQLite's, a stopped `capsnap snapshot --full`, a damaged
database, a full or read-only state directory, hooks killed at random
points, strict mode.  Every case asserts what the reliability review
measured as failing: the package manager exits 0 within a bounded time, the
capability is in place, a damaged database's bytes are unchanged, and
capsnap's messages are single lines without a traceback or "internal error"
for a fault of the environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import needs_root
from tests.overlay import inside, install_debs, overlay_supported, overlay_system, put

pytestmark = [needs_root,
              pytest.mark.skipif(not overlay_supported(), reason="no overlayfs here")]

BIN = "/usr/lib/x/bin"
STATE = "var/lib/capsnap"
# A hook waits this long for capsnap's lock or the database (capsnap.conf's
# `wait`, its default); a whole apt run calls four hooks.
WAIT = 5


def mkpkg(out: Path, name: str, version: str, field: bytes, binary: str = BIN) -> Path:
    """A .deb whose binary is a copy of /bin/true, with the field as raw bytes
    (dpkg-deb accepts what build_deb's UTF-8 text could not hold)."""
    stage = out / f"{name}_{version}.root"
    shutil.rmtree(stage, ignore_errors=True)
    target = stage / os.fsencode(binary).lstrip(b"/").decode("utf-8", "surrogateescape")
    target.parent.mkdir(parents=True)
    shutil.copyfile("/bin/true", target)
    target.chmod(0o755)
    (stage / "DEBIAN").mkdir()
    (stage / "DEBIAN/control").write_bytes(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: t <t@example.org>\nDescription: t\n".encode() +
        (b"File-Capabilities:" + field + b"\n" if field else b""))
    deb = out / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(stage), str(deb)],
                   check=True, capture_output=True)
    return deb


class Machine:
    """An overlay with capsnap installed, and what the tests ask of it."""

    def __init__(self, root: Path, packages: Path) -> None:
        self.root = root
        self.packages = packages
        self.xcap = {v: put(root, mkpkg(packages, "xcap", v, f"\n {BIN} cap_net_raw=ep"
                                        .encode())) for v in ("1.0", "1.1")}

    def run(self, *cmd: str, timeout: float = 120, env: dict[str, str] | None = None) \
            -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        done = inside(self.root, "timeout", "-s", "KILL", str(timeout), *cmd, env=env)
        return done, time.monotonic() - started

    def dpkg_i(self, version: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done, _ = self.run("dpkg", "-i", self.xcap[version], timeout=timeout)
        return done

    def apt_install(self, deb: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        done, _ = self.run("apt-get", "install", "-y", "--allow-downgrades",
                           "--no-install-recommends", deb, timeout=timeout)
        return done

    def getcap(self, path: str = BIN) -> str:
        return subprocess.run(["getcap", str(self.root / path.lstrip("/"))],
                              capture_output=True, text=True).stdout.split(" ", 1)[-1].strip()

    def state(self, name: str = "") -> Path:
        return self.root / STATE / name

    def last_transaction(self) -> dict[str, object]:
        done, _ = self.run("capsnap", "diff", "--json")
        assert done.returncode in (0, 1), done.stderr
        transaction: dict[str, object] = json.loads(done.stdout)["transaction"]
        return transaction

    def configure(self, text: str) -> None:
        (self.root / "etc/capsnap/capsnap.conf").write_text(text)


@pytest.fixture
def machine(tmp_path: Path, capsnap_debs: list[Path]) -> Iterator[Machine]:
    with overlay_system(tmp_path / "ov") as root:
        done = install_debs(root, capsnap_debs)
        assert done.returncode == 0, done.stdout + done.stderr
        # Only what the tests declare: nothing of the host's own.
        local = root / "etc/capsnap/capabilities.d"
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        yield Machine(root, tmp_path / "debs")


def capsnap_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("capsnap")]


def well_said(text: str, environmental: bool = True) -> None:
    """capsnap's messages: one line each, no traceback, and for a fault of
    the environment no "internal error"."""
    assert "Traceback" not in text, text
    if environmental:
        assert "internal error" not in text, text


def no_markers(machine: Machine) -> None:
    for name in ("transaction-open", "dpkg-status.before"):
        assert not machine.state(name).exists(), name


# --- a package's metadata that cannot be read --------------------------------

def test_a_field_that_is_not_utf8_costs_only_its_own_package(machine: Machine) -> None:
    """G9/G33: one byte 0xff in one package's field used to stop every reapply."""
    assert machine.dpkg_i("1.0").returncode == 0
    bad = put(machine.root, mkpkg(machine.packages, "badbyte", "1",
                                  b"\n /usr/lib/bb/\xff cap_net_raw=ep", "/usr/lib/bb/\udcff"))
    done = machine.run("dpkg", "-i", bad)[0]
    assert done.returncode == 0, done.stderr
    well_said(done.stderr)
    assert any("badbyte" in line and "not UTF-8" in line
               for line in capsnap_lines(done.stderr)), done.stderr
    for version in ("1.1", "1.0"):
        upgraded = machine.dpkg_i(version)
        assert upgraded.returncode == 0, upgraded.stderr
        assert machine.getcap() == "cap_net_raw=ep", upgraded.stderr
        well_said(upgraded.stderr)
        no_markers(machine)
    apt = machine.apt_install(machine.xcap["1.1"])
    assert apt.returncode == 0, apt.stdout + apt.stderr
    assert machine.getcap() == "cap_net_raw=ep"
    for command in (["check"], ["list"], ["reapply"], ["list", "--json"]):
        result = machine.run("capsnap", *command)[0]
        assert result.returncode in (0, 1), (command, result.stderr)
        well_said(result.stderr + result.stdout)
    transaction = machine.last_transaction()
    assert {"package": "xcap", "old": "1.0", "new": "1.1"} in \
        transaction["packages"], transaction  # type: ignore[operator]


# --- waiting: locks held by others ---------------------------------------------

def _hold_flock(path: Path) -> subprocess.Popen[bytes]:
    """A process group holding the lock (flock's child inherits it: the
    whole group is killed to let it go)."""
    holder = subprocess.Popen(["flock", str(path), "sleep", "600"], start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # wait until it holds the lock
        if subprocess.run(["flock", "-n", str(path), "true"]).returncode != 0:
            return holder
        time.sleep(0.05)
    os.killpg(holder.pid, signal.SIGKILL)
    raise AssertionError("could not take the lock")


def test_a_lock_holder_never_blocks_dpkg_or_apt(machine: Machine) -> None:
    """C11: a process holding capsnap's lock file used to hang dpkg forever."""
    assert machine.dpkg_i("1.0").returncode == 0
    holder = _hold_flock(machine.state("capsnap.db.lock"))
    try:
        done, took = machine.run("dpkg", "-i", machine.xcap["1.1"], timeout=120)
        assert done.returncode == 0, done.stderr
        assert took < 4 * WAIT + 20, took
        assert machine.getcap() == "cap_net_raw=ep"
        well_said(done.stderr)
        assert "move it aside" not in done.stderr
        assert any("lock" in line for line in capsnap_lines(done.stderr)), done.stderr
        apt = machine.apt_install(machine.xcap["1.0"])
        assert apt.returncode == 0, apt.stdout + apt.stderr
        assert machine.getcap() == "cap_net_raw=ep"
        well_said(apt.stdout + apt.stderr)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    # Once the holder is gone, the next run is recorded as usual.
    assert machine.dpkg_i("1.1").returncode == 0
    assert machine.getcap() == "cap_net_raw=ep"
    transaction = machine.last_transaction()
    assert {"package": "xcap", "old": "1.0", "new": "1.1"} in \
        transaction["packages"]  # type: ignore[operator]
    no_markers(machine)


def test_a_stopped_full_snapshot_never_blocks_dpkg(machine: Machine) -> None:
    """C12: `capsnap snapshot --full` stopped with Ctrl-Z used to hang dpkg."""
    assert machine.dpkg_i("1.0").returncode == 0
    snapper = subprocess.Popen(["chroot", str(machine.root), "capsnap", "snapshot", "--full"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        time.sleep(0.3)
        os.killpg(snapper.pid, signal.SIGSTOP)
        done, took = machine.run("dpkg", "-i", machine.xcap["1.1"], timeout=120)
        assert done.returncode == 0, done.stderr
        assert took < 2 * WAIT + 20, took
        assert machine.getcap() == "cap_net_raw=ep"
        well_said(done.stderr)
    finally:
        os.killpg(snapper.pid, signal.SIGKILL)
        snapper.wait()


@pytest.mark.parametrize("how", ["immediate", "exclusive"])
def test_a_locked_database_delays_a_hook_by_seconds_and_is_called_locked(
        machine: Machine, how: str) -> None:
    """C9/C10: a locked database cost apt 2-2.5 minutes and was called
    "not a usable SQLite database ... move it aside"."""
    assert machine.dpkg_i("1.0").returncode == 0
    db = sqlite3.connect(str(machine.state("capsnap.db")), isolation_level=None, timeout=1)
    try:
        if how == "exclusive":
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO capsnap_meta VALUES ('test', 'held')")
        done, took = machine.run("dpkg", "-i", machine.xcap["1.1"], timeout=120)
        assert done.returncode == 0, done.stderr
        assert took < 4 * WAIT + 20, took
        assert machine.getcap() == "cap_net_raw=ep"
        well_said(done.stderr)
        assert "move it aside" not in done.stderr, done.stderr
        assert any("in use by another process" in line or "lock" in line
                   for line in capsnap_lines(done.stderr)), done.stderr
        apt = machine.apt_install(machine.xcap["1.0"])
        assert apt.returncode == 0, apt.stdout + apt.stderr
        assert machine.getcap() == "cap_net_raw=ep"
    finally:
        db.execute("ROLLBACK")
        db.close()


# --- a database that must not be written --------------------------------------

def _scribble(db: Path) -> None:
    """Random bytes over every page but the first: the header still reads."""
    page = 4096
    data = bytearray(db.read_bytes())
    rng = random.Random(1201)
    for at in range(page, len(data)):
        data[at] = rng.randrange(256)
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["scribbled", "table-dropped"])
def test_a_damaged_database_is_never_written(machine: Machine, damage: str) -> None:
    """C3/C6: hooks kept writing half-recorded transactions into it."""
    assert machine.dpkg_i("1.0").returncode == 0
    assert machine.dpkg_i("1.1").returncode == 0
    db = machine.state("capsnap.db")
    assert machine.run("capsnap", "snapshot")[0].returncode == 0  # some pages to damage
    for leftover in ("capsnap.db-wal", "capsnap.db-shm"):
        assert not machine.state(leftover).exists() or \
            sqlite3.connect(str(db)).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if damage == "scribbled":
        _scribble(db)
    else:
        with sqlite3.connect(str(db)) as connection:
            connection.execute("DROP TABLE entries")
        sqlite3.connect(str(db)).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    for run in (lambda: machine.dpkg_i("1.0"), lambda: machine.apt_install(machine.xcap["1.1"])):
        done = run()
        assert done.returncode == 0, done.stdout + done.stderr
        assert machine.getcap() == "cap_net_raw=ep"
        well_said(done.stdout + done.stderr)
        assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
        assert any("damaged" in line for line in capsnap_lines(done.stdout + done.stderr))
        no_markers(machine)


# --- the state directory itself ----------------------------------------------

def _fill(directory: Path) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={directory}/filler", "bs=4k"],
                   capture_output=True)


@pytest.mark.parametrize("fault", ["full", "full-no-database", "read-only", "state-is-a-file",
                                   "lock-is-a-directory"])
def test_a_broken_state_directory_is_told_as_it_is(machine: Machine, fault: str) -> None:
    """B1-B7: misdiagnosed as a damaged database, "internal error", and
    errors about removing files that did not exist."""
    assert machine.dpkg_i("1.0").returncode == 0
    state = machine.state()
    mounted = False
    try:
        if fault.startswith("full"):
            shutil.copytree(state, machine.root / "tmp/state-copy")
            shutil.rmtree(state)
            state.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(state)],
                           check=True)
            mounted = True
            if fault == "full":
                for item in (machine.root / "tmp/state-copy").iterdir():
                    subprocess.run(["cp", "-a", str(item), str(state)], check=True)
            _fill(state)
        elif fault == "read-only":
            subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
            mounted = True
            subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
        elif fault == "state-is-a-file":
            shutil.rmtree(state)
            state.write_text("not a directory\n")
        else:
            lock = machine.state("capsnap.db.lock")
            lock.unlink(missing_ok=True)
            lock.mkdir()
        for version in ("1.1", "1.0"):
            done = machine.dpkg_i(version)
            assert done.returncode == 0, done.stderr
            assert machine.getcap() == "cap_net_raw=ep", done.stderr
            lines = capsnap_lines(done.stderr)
            well_said(done.stderr)
            assert "move it aside" not in done.stderr, done.stderr
            assert not [line for line in lines if "dpkg-status.before" in line
                        or "transaction-open" in line], lines
            assert len(lines) <= 6, lines
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(state)])


# --- strict mode -----------------------------------------------------------------

def test_strict_mode_does_not_fail_for_a_package_just_removed(machine: Machine) -> None:
    """H1-strict: dpkg -r failed, and every later apt run too."""
    assert machine.dpkg_i("1.0").returncode == 0
    declared = machine.run("capsnap", "declare", BIN, "cap_net_admin=ep")[0]
    assert declared.returncode == 0, declared.stderr
    machine.configure("strict = yes\n")
    removed = machine.run("dpkg", "-r", "xcap")[0]
    assert removed.returncode == 0, removed.stderr
    other = put(machine.root, mkpkg(machine.packages, "other", "1", b"", "/usr/lib/o/bin"))
    apt = machine.apt_install(other)
    assert apt.returncode == 0, apt.stdout + apt.stderr
    # The declaration is dormant, and in force again when the package returns.
    assert machine.dpkg_i("1.1").returncode == 0
    assert machine.getcap() == "cap_net_admin=ep"


# --- the flood -----------------------------------------------------------------------

def test_a_flood_of_bad_entries_is_cut_short(machine: Machine) -> None:
    """G30: 25,000 malformed entries gave 75,001 lines per apt run."""
    field = b"".join(b"\n /usr/lib/f/x%d cap_bogus%d=ep" % (i, i) for i in range(2000))
    flood = put(machine.root, mkpkg(machine.packages, "flood", "1", field, "/usr/lib/f/bin"))
    apt = machine.apt_install(flood)
    assert apt.returncode == 0, apt.stdout + apt.stderr
    lines = capsnap_lines(apt.stdout + apt.stderr)
    assert len(lines) <= 40, len(lines)
    assert any("more problems" in line for line in lines), lines[-3:]


# --- hooks killed at random points -------------------------------------------

KILLER = """#!/bin/sh
# Run capsnap, but kill the hook named in /etc/capsnap-kill at a random point
# (for dpkg-post-invoke, the background process that does its work too).
victim=$(cat /etc/capsnap-kill 2>/dev/null)
if [ "$1" = hook ] && { [ "$2" = "$victim" ] ||
        { [ "$2" = dpkg-serve ] && [ "$victim" = dpkg-post-invoke ]; }; }; then
    delay=$(shuf -i 0-250 -n 1)
    exec timeout -s KILL "0.$(printf %03d "$delay")" /usr/bin/capsnap.real "$@"
fi
exec /usr/bin/capsnap.real "$@"
"""


def _arm(machine: Machine, hook: str) -> None:
    real = machine.root / "usr/bin/capsnap.real"
    if not real.exists():
        shutil.copy2(machine.root / "usr/bin/capsnap", real)
        wrapper = machine.root / "usr/bin/capsnap"
        wrapper.write_text(KILLER)
        wrapper.chmod(0o755)
    (machine.root / "etc/capsnap-kill").write_text(hook + "\n")


@pytest.mark.parametrize("hook", ["dpkg-post-invoke", "apt-pre-invoke",
                                  "apt-pre-install-pkgs", "apt-post-invoke"])
def test_killed_hooks_never_fail_the_transaction_or_lose_a_capability(
        machine: Machine, hook: str) -> None:
    """E1-E8: 71 of 71 kills failed dpkg or apt; after some, the next normal
    run still missed the capability and recorded the wrong versions."""
    assert machine.dpkg_i("1.0").returncode == 0
    _arm(machine, hook)
    via_apt = hook.startswith("apt")
    version = "1.0"
    for _ in range(10):
        killed_to = "1.1" if version == "1.0" else "1.0"
        (machine.root / "etc/capsnap-kill").write_text(hook + "\n")
        done = machine.apt_install(machine.xcap[killed_to]) if via_apt \
            else machine.dpkg_i(killed_to)
        assert done.returncode == 0, done.stdout + done.stderr
        # The next transaction, with nothing killed, puts everything right.
        (machine.root / "etc/capsnap-kill").write_text("none\n")
        normal = machine.dpkg_i(version)
        assert normal.returncode == 0, normal.stderr
        assert machine.getcap() == "cap_net_raw=ep", normal.stderr
        transaction = machine.last_transaction()
        assert {"package": "xcap", "old": killed_to, "new": version} in \
            transaction["packages"], transaction  # type: ignore[operator]
        no_markers(machine)


# --- rpm ------------------------------------------------------------------------

ZBIN = "/usr/lib/z/bin"


class RpmMachine:
    """An overlay with capsnap's rpm, and a plain rpm package capsnap
    protects through a local declaration."""

    def __init__(self, root: Path, packages: Path) -> None:
        from tests.packaging import build_rpm

        self.root = root
        self.yplain = {v: put(root, build_rpm(packages, "yplain", v, {ZBIN: "/bin/true"}))
                       for v in ("1.0", "1.1")}

    def rpm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return inside(self.root, "timeout", "-s", "KILL", "120", "rpm", *args)

    def getcap(self) -> str:
        return subprocess.run(["getcap", str(self.root / ZBIN.lstrip("/"))],
                              capture_output=True, text=True).stdout.split(" ", 1)[-1].strip()


@pytest.fixture
def rpm_machine(tmp_path: Path, capsnap_rpm: Path) -> Iterator[RpmMachine]:
    with overlay_system(tmp_path / "ov") as root:
        assert inside(root, "rpm", "--initdb").returncode == 0
        done = inside(root, "rpm", "-i", "--nodeps", put(root, capsnap_rpm))
        assert done.returncode == 0, done.stderr
        local = root / "etc/capsnap/capabilities.d"
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        machine = RpmMachine(root, tmp_path / "rpms")
        assert machine.rpm("-i", "--nodeps", machine.yplain["1.0"]).returncode == 0
        declared = inside(root, "capsnap", "declare", ZBIN, "cap_net_admin=ep")
        assert declared.returncode == 0, declared.stderr
        assert inside(root, "capsnap", "snapshot").returncode == 0
        yield machine


@pytest.mark.parametrize("damage", ["random", "foreign", "truncated"])
def test_rpm_reapplies_whatever_the_database(rpm_machine: RpmMachine, damage: str) -> None:
    """J2-J4: rpm-post opened the store first and reapplied nothing."""
    db = rpm_machine.root / STATE / "capsnap.db"
    if damage == "random":
        db.write_bytes(random.Random(5).randbytes(53248))
    elif damage == "foreign":
        for leftover in ("capsnap.db-wal", "capsnap.db-shm"):
            (rpm_machine.root / STATE / leftover).unlink(missing_ok=True)
        db.unlink()
        with sqlite3.connect(str(db)) as connection:
            connection.execute("CREATE TABLE users (name TEXT)")
    else:
        sqlite3.connect(str(db)).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
        data = db.read_bytes()
        db.write_bytes(data[:len(data) // 2])
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    upgraded = rpm_machine.rpm("-U", "--nodeps", rpm_machine.yplain["1.1"])
    assert upgraded.returncode == 0, upgraded.stderr
    assert rpm_machine.getcap() == "cap_net_admin=ep", upgraded.stderr
    well_said(upgraded.stderr)
    assert "not recorded, capabilities put back all the same" in upgraded.stderr
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


def test_rpm_erase_closes_its_transaction(rpm_machine: RpmMachine, tmp_path: Path) -> None:
    """J1/J8: `rpm -e` left its transaction open, and the next dpkg run was
    recorded with no packages."""
    # A mixed system: dpkg's and apt's hooks too.
    wired = inside(rpm_machine.root, "capsnap", "install-hooks")
    assert wired.returncode == 0, wired.stderr
    erased = rpm_machine.rpm("-e", "yplain")
    assert erased.returncode == 0, erased.stderr
    # rpm runs no trigger after a transaction that only erases (its
    # %transfiletriggerpostun does not fire: rpm#2324, rpm#3048): the next
    # transaction closes the one rpm -e left, with what it changed.
    deb = put(rpm_machine.root, mkpkg(tmp_path / "debs", "xcap", "1.0",
                                      f"\n {BIN} cap_net_raw=ep".encode()))
    done = inside(rpm_machine.root, "dpkg", "-i", deb)
    assert done.returncode == 0, done.stderr
    assert not (rpm_machine.root / STATE / "transaction-open").exists()
    diff = json.loads(inside(rpm_machine.root, "capsnap", "diff", "--json").stdout)
    assert diff["transaction"]["manager"] == "dpkg"
    assert {"package": "xcap", "old": None, "new": "1.0"} in diff["transaction"]["packages"]
    snapshots = json.loads(inside(rpm_machine.root, "capsnap", "snapshots",
                                  "--json").stdout)
    phases = {(s["transaction"], s["phase"]) for s in snapshots if s["transaction"]}
    erase = diff["transaction"]["id"] - 1
    assert {(erase, "before"), (erase, "after")} <= phases
    removal = json.loads(inside(rpm_machine.root, "capsnap", "diff", "--json",
                                str(min(s["id"] for s in snapshots if s["transaction"] == erase)),
                                str(max(s["id"] for s in snapshots
                                        if s["transaction"] == erase))).stdout)
    assert removal["transaction"]["manager"] == "rpm"
    assert {"package": "yplain", "old": "1.0-1", "new": None} in \
        removal["transaction"]["packages"]


@pytest.mark.parametrize("hook", ["rpm-pre", "rpm-post"])
def test_killed_rpm_triggers_never_fail_rpm(rpm_machine: RpmMachine, hook: str) -> None:
    """E-cases for rpm: a trigger killed at a random point."""
    root = rpm_machine.root
    shutil.copy2(root / "usr/bin/capsnap", root / "usr/bin/capsnap.real")
    (root / "usr/bin/capsnap").write_text(KILLER)
    (root / "usr/bin/capsnap").chmod(0o755)
    version = "1.0"
    for _ in range(10):
        killed_to = "1.1" if version == "1.0" else "1.0"
        (root / "etc/capsnap-kill").write_text(hook + "\n")
        done = rpm_machine.rpm("-U", "--oldpackage", "--nodeps", rpm_machine.yplain[killed_to])
        assert done.returncode == 0, done.stderr
        (root / "etc/capsnap-kill").write_text("none\n")
        normal = rpm_machine.rpm("-U", "--oldpackage", "--nodeps", rpm_machine.yplain[version])
        assert normal.returncode == 0, normal.stderr
        assert rpm_machine.getcap() == "cap_net_admin=ep", normal.stderr
        diff = json.loads(inside(root, "capsnap", "diff", "--json").stdout)
        assert {"package": "yplain", "old": f"{killed_to}-1", "new": f"{version}-1"} in \
            diff["transaction"]["packages"], diff["transaction"]
        assert not (root / STATE / "transaction-open").exists()


# --- reading a history that cannot be written ------------------------------------

@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_history_stays_readable_where_nothing_can_be_written(tmp_path: Path, fault: str) -> None:
    """B1/B3: `snapshots` and `diff` failed on an intact database whose
    filesystem was read-only or full, and called it unusable."""
    from tests.conftest import run_capsnap

    state = tmp_path / "state"
    state.mkdir()
    db = state / "capsnap.db"
    assert run_capsnap("--db", str(db), "snapshot", "--path", "/usr/bin/true").status == 0
    assert run_capsnap("--db", str(db), "snapshot", "--path", "/usr/bin/true").status == 0
    listed = run_capsnap("--db", str(db), "snapshots").out
    subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
    try:
        if fault == "read-only":
            subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
        else:
            subprocess.run(["umount", str(state)], check=True)
            copy = tmp_path / "copy"
            shutil.copytree(state, copy)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(state)],
                           check=True)
            for item in copy.iterdir():
                shutil.copy2(item, state / item.name)
            _fill(state)
        shown = run_capsnap("--db", str(db), "snapshots")
        assert shown.status == 0, shown.err
        assert shown.out == listed
        assert run_capsnap("--db", str(db), "diff", "1", "2").status in (0, 1)
        written = run_capsnap("--db", str(db), "snapshot", "--path", "/usr/bin/true")
        assert written.status == 3
        assert len(written.err.strip().splitlines()) == 1, written.err
        assert "move it aside" not in written.err and "Traceback" not in written.err
    finally:
        subprocess.run(["umount", "-l", str(state)])
