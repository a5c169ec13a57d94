"""dpkg's hooks put back what is declared whatever their marker says: a
marker of a run that is gone, or none at all, never makes a hook skip a
declaration, and a file the run replaced at the same version is put back.

Scratch dpkg roots written by hand (status, file lists), capsnap's hooks run
in this process on them; every capability lands on copies of /bin/true
inside the scratch root.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from capsnap import hook
from capsnap.fileops import kernel_cap_bits
from capsnap.paths import SystemPaths
from tests.conftest import getxattr_or_none, needs_root, ramfs_at, run_cli
from tests.packaging import make_dpkg_root

pytestmark = needs_root

PACKAGES = {"foo": "/usr/lib/foo/helper", "bar": "/usr/lib/bar/helper"}


def paragraph(name: str, path: str, version: str = "1.0") -> str:
    return (f"Package: {name}\nStatus: install ok installed\nArchitecture: all\n"
            f"Version: {version}\nFile-Capabilities:\n {path} cap_net_raw=ep\n")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Two installed packages, each declaring a capability on a file it ships,
    put in place once; capsnap's state directory exists, as after install."""
    root = make_dpkg_root(tmp_path / "root")
    (root / "var/lib/dpkg/status").write_text(
        "\n".join(paragraph(n, p) for n, p in PACKAGES.items()))
    for name, path in PACKAGES.items():
        (root / f"var/lib/dpkg/info/{name}.list").write_text(f"{path}\n")
        helper = root / path.lstrip("/")
        helper.parent.mkdir(parents=True)
        shutil.copyfile("/bin/true", helper)
        helper.chmod(0o755)
    (root / "var/lib/capsnap").mkdir(parents=True)
    assert run_cli("--root", str(root), "reapply").status == 0
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())
    return root


def run_hook(root: Path, name: str) -> int:
    return hook.run(name, SystemPaths(root=str(root)), None, kernel_cap_bits(),
                    stdin=io.StringIO())


def strip(root: Path) -> None:
    """What dpkg's unpack does to a capability: the files lose it."""
    for path in PACKAGES.values():
        os.removexattr(root / path.lstrip("/"), "security.capability")


def marker(root: Path, pid: int, started: str) -> Path:
    """The marker dpkg's pre-invoke leaves, naming the process and its start."""
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
        boot = f.read().strip()
    path = root / "var/lib/capsnap/transaction-open"
    path.write_text(f"dpkg {pid} {started} {boot}\n")
    return path


def own_start(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        stat = f.read()
    return stat[stat.rfind(")") + 2:].split()[19]


def test_a_trigger_under_a_dead_runs_marker_still_puts_back(root: Path) -> None:
    strip(root)
    # This very pid, another start time: the process that left it is gone.
    stale = marker(root, os.getpid(), "1")
    assert run_hook(root, "dpkg-triggered") == 0
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())
    # A live run's marker: its post-invoke will do it, the trigger waits.
    strip(root)
    marker(root, os.getpid(), own_start(os.getpid()))
    assert run_hook(root, "dpkg-triggered") == 0
    assert not any(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())
    stale.unlink()


def test_post_invoke_without_its_pre_invoke_puts_back_every_declaration(root: Path) -> None:
    """No marker: what the run changed is unknown, so every declaration counts,
    not only those of packages whose version changed (none did here)."""
    strip(root)
    assert run_hook(root, "dpkg-post-invoke") == 0
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())
    assert not (root / "var/lib/capsnap/transaction-open").exists()


def test_post_invoke_never_trusts_a_marker_another_run_left(root: Path) -> None:
    """A killed dpkg's marker and status link say nothing of this run: the
    hook reapplies everything, as without them."""
    strip(root)
    os.link(root / "var/lib/dpkg/status", root / "var/lib/capsnap/dpkg-status.before")
    marker(root, os.getpid(), "1")
    assert run_hook(root, "dpkg-post-invoke") == 0
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())
    assert not (root / "var/lib/capsnap/transaction-open").exists()


def test_a_file_replaced_at_the_same_version_is_put_back(root: Path) -> None:
    """dpkg --reinstall: no version changes, the file is a new one without
    the capability; the run's own marker and link are trusted, and the file
    it touched is put back before the run is recorded."""
    assert run_cli("--root", str(root), "snapshot").status == 0  # the tracked files, seen
    parent = os.getppid()
    marker(root, parent, own_start(parent))  # left by the process this hook runs under
    os.link(root / "var/lib/dpkg/status", root / "var/lib/capsnap/dpkg-status.before")
    helper = root / PACKAGES["foo"].lstrip("/")
    fresh = helper.with_name("helper.dpkg-new")
    shutil.copyfile("/bin/true", fresh)
    fresh.chmod(0o755)
    os.replace(fresh, helper)
    assert getxattr_or_none(helper) is None
    assert run_hook(root, "dpkg-post-invoke") == 0
    assert getxattr_or_none(helper) is not None
    # Recorded second: the after snapshot has the capability back.
    diff = run_cli("--root", str(root), "diff")
    assert diff.status in (0, 1), diff.err
    line = next(ln for ln in diff.out.splitlines() if PACKAGES["foo"] in ln)
    assert "restored by capsnap" in line
    before_and_after = line.split(PACKAGES["foo"], 1)[1].split()
    assert before_and_after[:2] == ["cap_net_raw=ep", "cap_net_raw=ep"], diff.out


def test_a_file_another_package_lost_in_the_run_is_put_back_too(root: Path) -> None:
    """foo is upgraded; bar's file is replaced without a version change (a
    shared trigger, a package's postinst): both are put back."""
    assert run_cli("--root", str(root), "snapshot").status == 0
    parent = os.getppid()
    marker(root, parent, own_start(parent))
    status = root / "var/lib/dpkg/status"
    os.link(status, root / "var/lib/capsnap/dpkg-status.before")
    new = status.with_name("status-new")  # dpkg writes the new status by rename
    new.write_text(paragraph("foo", PACKAGES["foo"], "1.1") + "\n"
                   + paragraph("bar", PACKAGES["bar"]))
    os.replace(new, status)
    for path in PACKAGES.values():
        helper = root / path.lstrip("/")
        fresh = helper.with_name("helper.dpkg-new")
        shutil.copyfile("/bin/true", fresh)
        fresh.chmod(0o755)
        os.replace(fresh, helper)
    assert run_hook(root, "dpkg-post-invoke") == 0
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())


def test_a_closing_hook_that_fails_still_puts_back(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The last resort: whatever error ends a closing hook before its reapply
    (here an internal one), what is declared is put back before it returns."""
    def explode(ctx: hook.Context) -> int:
        raise RuntimeError("boom")

    strip(root)
    monkeypatch.setitem(hook.HOOKS, "dpkg-post-invoke", explode)
    assert run_hook(root, "dpkg-post-invoke") == 0
    assert "internal error (please report it): RuntimeError: boom" in capsys.readouterr().err
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())


def test_apt_post_invoke_puts_back_when_the_store_fails_midway(
        root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """apt's transaction is open, then the store fails (locked past its wait,
    a full disk) when its post-invoke reads it: put back all the same."""
    import sqlite3

    from capsnap.store import Store

    assert run_hook(root, "apt-pre-invoke") == 0
    strip(root)

    def locked(self: Store, tid: int) -> object:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(Store, "transaction_info", locked)
    assert run_hook(root, "apt-post-invoke") == 0
    assert "not recorded, capabilities put back all the same" in capsys.readouterr().err
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())
    assert not (root / "var/lib/capsnap/transaction-open").exists()


@pytest.mark.parametrize("name", ["apt-post-invoke", "rpm-post", "dnf-post-transaction"])
def test_a_closing_hook_without_its_transaction_still_puts_back(root: Path, name: str) -> None:
    """Its opening hook could not record a transaction (no database here):
    the closing one reapplies without a record."""
    strip(root)
    assert run_hook(root, name) == 0
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())


def test_dpkg_post_invoke_between_apts_dpkg_runs_puts_back(root: Path) -> None:
    """Under apt's open transaction, each dpkg run's post-invoke reapplies
    (apt's post-invoke records it)."""
    assert run_hook(root, "apt-pre-invoke") == 0
    strip(root)
    assert run_hook(root, "dpkg-post-invoke") == 0
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())
    assert (root / "var/lib/capsnap/transaction-open").read_text().startswith("apt ")


def test_strict_mode_fails_the_run_for_what_is_not_in_place(root: Path) -> None:
    """A declared file capsnap refuses (group-writable) is not in place:
    strict = yes fails dpkg, the default does not."""
    strip(root)
    (root / PACKAGES["bar"].lstrip("/")).chmod(0o775)
    assert run_hook(root, "dpkg-triggered") == 0
    (root / "etc/capsnap").mkdir(parents=True)
    (root / "etc/capsnap/capsnap.conf").write_text("strict = yes\n")
    assert run_hook(root, "dpkg-triggered") == 1
    assert getxattr_or_none(root / PACKAGES["foo"].lstrip("/"))  # the rest put back


def test_strict_mode_fails_when_the_run_cannot_be_recorded(root: Path) -> None:
    (root / "etc/capsnap").mkdir(parents=True)
    (root / "etc/capsnap/capsnap.conf").write_text("strict = yes\n")
    (root / "var/lib/capsnap/capsnap.db").write_bytes(b"not a database\n" * 100)
    strip(root)
    assert run_hook(root, "dpkg-post-invoke") == 1
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())


def test_a_trigger_whose_record_is_lost_puts_back_and_fails_only_in_strict_mode(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The trigger's own record (no run's marker) cannot be written: the
    capabilities are back, the loss is said, and only strict mode fails the
    run for it, as the closing hooks do."""
    (root / "var/lib/capsnap/capsnap.db").write_bytes(b"not a database\n" * 100)
    strip(root)
    assert run_hook(root, "dpkg-triggered") == 0
    assert "not recorded, capabilities put back all the same" in capsys.readouterr().err
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())
    (root / "etc/capsnap").mkdir(parents=True)
    (root / "etc/capsnap/capsnap.conf").write_text("strict = yes\n")
    strip(root)
    assert run_hook(root, "dpkg-triggered") == 1
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())


def test_a_trigger_whose_record_meets_a_disk_error_says_it_was_not_recorded(
        root: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Any trouble recording the trigger's own reapply (here an I/O error)
    is said with the one wording for a lost record, after the reapply."""
    import errno

    from capsnap.store import Store

    assert run_hook(root, "apt-pre-invoke") == 0  # a database, and a transaction
    (root / "var/lib/capsnap/transaction-open").unlink()
    strip(root)

    def failing(self: Store, tid: int, actions: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Store, "record_actions", failing)
    assert run_hook(root, "dpkg-triggered") == 0
    err = capsys.readouterr().err
    assert "not recorded, capabilities put back all the same" in err, err
    assert "internal error" not in err
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())


def test_a_hook_takes_back_what_a_new_version_no_longer_declares(root: Path) -> None:
    """foo 1.1 ships the file without declaring it: the capability capsnap
    applied for foo 1.0 goes, bar's stays."""
    status = root / "var/lib/dpkg/status"
    status.write_text("Package: foo\nStatus: install ok installed\nArchitecture: all\n"
                      "Version: 1.1\n\n" + paragraph("bar", PACKAGES["bar"]))
    assert run_hook(root, "dpkg-post-invoke") == 0
    assert getxattr_or_none(root / PACKAGES["foo"].lstrip("/")) is None
    assert getxattr_or_none(root / PACKAGES["bar"].lstrip("/"))


def test_purging_a_package_forgets_its_records(root: Path) -> None:
    """foo is purged in this run (foobar stays installed): capsnap's records of
    foo go, bar's stay."""
    records = root / "var/lib/capsnap/packages"
    assert sorted(p.name for p in records.iterdir()) == ["bar", "foo"]
    parent = os.getppid()
    marker(root, parent, own_start(parent))
    status = root / "var/lib/dpkg/status"
    os.link(status, root / "var/lib/capsnap/dpkg-status.before")
    new = status.with_name("status-new")
    new.write_text(paragraph("foobar", "/usr/lib/foobar/helper") + "\n"
                   + paragraph("bar", PACKAGES["bar"]))
    os.replace(new, status)
    (root / "var/lib/dpkg/info/foo.list").unlink()
    assert run_hook(root, "dpkg-post-invoke") == 0
    assert sorted(p.name for p in records.iterdir()) == ["bar"]


def test_a_configure_at_the_same_version_is_the_packages_transaction(root: Path) -> None:
    """dpkg --configure after --unpack changes foo's paragraph, not its
    version: the run is recorded as foo's (its after snapshot looks at foo's
    files, where its postinst may have set capabilities)."""
    status = root / "var/lib/dpkg/status"
    status.write_text(paragraph("foo", PACKAGES["foo"]).replace("ok installed", "ok unpacked")
                      + "\n" + paragraph("bar", PACKAGES["bar"]))
    assert run_cli("--root", str(root), "snapshot").status == 0
    parent = os.getppid()
    marker(root, parent, own_start(parent))
    os.link(status, root / "var/lib/capsnap/dpkg-status.before")
    new = status.with_name("status-new")
    new.write_text(paragraph("foo", PACKAGES["foo"]) + "\n" + paragraph("bar", PACKAGES["bar"]))
    os.replace(new, status)
    assert run_hook(root, "dpkg-post-invoke") == 0
    diff = run_cli("--root", str(root), "diff")
    assert diff.out.startswith("transaction 1 (dpkg): foo 1.0;"), diff.out


def test_a_database_planted_as_a_dangling_link_is_said(root: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """apt's post-invoke looks for its transaction: a link at the database's
    name is a database there that cannot be used, not no database."""
    (root / "var/lib/capsnap/capsnap.db").symlink_to("/nonexistent/capsnap.db")
    strip(root)
    assert run_hook(root, "apt-post-invoke") == 0
    assert "not recorded, capabilities put back all the same" in capsys.readouterr().err
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())


APT_CONFIGURE = """VERSION 3
APT::Architecture=amd64

foo 1.0 all none = 1.0 all none **CONFIGURE**
"""


def test_a_package_apt_configures_at_the_same_version_is_put_back(root: Path) -> None:
    """apt-get -f install configures what dpkg -i left unpacked: no version
    changes, no file is replaced, yet foo's declarations are put back."""
    assert run_hook(root, "apt-pre-invoke") == 0
    assert hook.run("apt-pre-install-pkgs", SystemPaths(root=str(root)), None,
                    kernel_cap_bits(), stdin=io.StringIO(APT_CONFIGURE)) == 0
    os.removexattr(root / PACKAGES["foo"].lstrip("/"), "security.capability")
    assert run_hook(root, "apt-post-invoke") == 0
    assert getxattr_or_none(root / PACKAGES["foo"].lstrip("/"))


def test_a_closing_hook_leaves_another_managers_transaction_open(root: Path) -> None:
    """rpm's transaction is open (rpm -e has no closing trigger): apt's
    post-invoke does not close it as apt's."""
    from capsnap.store import Store

    assert hook.run("rpm-pre", SystemPaths(root=str(root)), None, kernel_cap_bits(),
                    stdin=io.StringIO("")) == 0
    db = str(root / "var/lib/capsnap/capsnap.db")
    with Store(db, paths=SystemPaths(root=str(root))) as store:
        tid = store.open_transaction()
        assert tid is not None and store.transaction_manager(tid) == "rpm"
    assert run_hook(root, "apt-post-invoke") == 0
    with Store(db, paths=SystemPaths(root=str(root))) as store:
        assert store.open_transaction() == tid


@pytest.fixture
def ramfs_root(tmp_path: Path) -> Iterator[Path]:
    """A scratch root whose /usr/lib/foo is a ramfs: no capabilities there
    (the test session has a mount namespace of its own: nothing stays mounted)."""
    root = make_dpkg_root(tmp_path / "root")
    (root / "var/lib/capsnap").mkdir(parents=True)
    with ramfs_at(root / "usr/lib/foo"):
        yield root


def test_a_setuid_fallback_is_said_by_the_hook(ramfs_root: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = ramfs_root
    local = root / "etc/capsnap/capabilities.d"
    local.mkdir(parents=True)
    (local / "foo.capabilities").write_text(
        f"{PACKAGES['foo']} cap_net_raw=ep fallback=setuid\n")
    helper = root / PACKAGES["foo"].lstrip("/")
    shutil.copyfile("/bin/true", helper)
    helper.chmod(0o755)
    assert run_hook(root, "dpkg-triggered") == 0
    assert helper.stat().st_mode & 0o7777 == 0o4755
    assert f"{PACKAGES['foo']}: fallback:" in capsys.readouterr().err


def test_a_dead_apts_marker_does_not_take_dpkgs_run(root: Path) -> None:
    """apt was killed with its transaction open: dpkg run by hand afterwards
    records its own run (apt's post-invoke will never come)."""
    path = marker(root, os.getpid(), "1")
    path.write_text(path.read_text().replace("dpkg ", "apt ", 1))
    strip(root)
    assert run_hook(root, "dpkg-post-invoke") == 0
    assert all(getxattr_or_none(root / p.lstrip("/")) for p in PACKAGES.values())
    diff = run_cli("--root", str(root), "diff")
    assert diff.out.startswith("transaction 1 (dpkg)"), diff.out + diff.err


def test_a_removed_packages_record_stays_while_its_capability_could_not_go(
        root: Path) -> None:
    """dpkg -r foo (its configuration files stay): capsnap takes back what it
    applied for foo; where that fails (the file is immutable here), foo's
    record stays, to be tried again, and only a purge forgets it."""
    import subprocess

    helper = root / PACKAGES["foo"].lstrip("/")
    records = root / "var/lib/capsnap/packages"
    parent = os.getppid()
    marker(root, parent, own_start(parent))
    status = root / "var/lib/dpkg/status"
    os.link(status, root / "var/lib/capsnap/dpkg-status.before")
    new = status.with_name("status-new")
    new.write_text(paragraph("foo", PACKAGES["foo"]).replace(
        "install ok installed", "deinstall ok config-files") + "\n"
        + paragraph("bar", PACKAGES["bar"]))
    os.replace(new, status)
    if subprocess.run(["chattr", "+i", str(helper)], capture_output=True).returncode != 0:
        pytest.skip("no immutable files here")
    try:
        assert run_hook(root, "dpkg-post-invoke") == 0
    finally:
        subprocess.run(["chattr", "-i", str(helper)], check=True)
    assert getxattr_or_none(helper)
    assert sorted(p.name for p in records.iterdir()) == ["bar", "foo"]


def test_a_run_that_begins_leaves_a_live_runs_transaction_open(root: Path) -> None:
    """apt's transaction is open and apt is alive (it runs this very test):
    an rpm run beginning meanwhile does not close apt's transaction."""
    assert run_hook(root, "apt-pre-invoke") == 0
    assert hook.run("rpm-pre", SystemPaths(root=str(root)), None, kernel_cap_bits(),
                    stdin=io.StringIO("")) == 0
    listed = run_cli("--root", str(root), "snapshots")
    assert "after #1" not in listed.out, listed.out


def test_retention_keeps_the_run_just_recorded(root: Path) -> None:
    """keep = 1: after each dpkg run, that run is the one transaction kept."""
    (root / "etc/capsnap").mkdir(parents=True)
    (root / "etc/capsnap/capsnap.conf").write_text("keep = 1\n")
    for _ in range(2):
        strip(root)
        assert run_hook(root, "dpkg-post-invoke") == 0
    listed = run_cli("--root", str(root), "snapshots").out
    assert "#2" in listed and "#1" not in listed, listed


def test_a_statoverride_file_that_cannot_be_read_keeps_the_mode(ramfs_root: Path) -> None:
    """Where capabilities cannot be stored, the setuid fallback is never
    applied over a dpkg-statoverride; one that cannot be read may say what
    the mode must be, so the mode stays."""
    root = ramfs_root
    local = root / "etc/capsnap/capabilities.d"
    local.mkdir(parents=True)
    (local / "foo.capabilities").write_text(
        f"{PACKAGES['foo']} cap_net_raw=ep fallback=setuid\n")
    helper = root / PACKAGES["foo"].lstrip("/")
    shutil.copyfile("/bin/true", helper)
    helper.chmod(0o755)
    (root / "var/lib/dpkg/statoverride").mkdir()  # cannot be read as a file
    result = run_cli("--root", str(root), "reapply")
    assert "a dpkg-statoverride sets its mode" in result.err, result.err
    assert helper.stat().st_mode & 0o7777 == 0o755
