"""capsnap writes its own files (log, records) only where nobody but root can
write, and only into plain files of root's with one name: in an image or a
chroot handed to --root, a group that can write capsnap's state directory,
or a hard link planted at its log, must not make root write elsewhere.

Scratch roots; the files an attack would aim at are canaries inside them.
"""

from __future__ import annotations

import grp
import os
import shutil
import stat
from pathlib import Path

from tests.conftest import getxattr_or_none, needs_root, run_cli
from tests.packaging import make_dpkg_root

pytestmark = needs_root

HELPER = "/usr/lib/foo/helper"


def make_root(top: Path) -> Path:
    """A root with one local declaration that reapply restores, so that it
    writes its log and its records."""
    root = make_dpkg_root(top / "root")
    local = root / "etc/capsnap/capabilities.d"
    local.mkdir(parents=True)
    (local / "foo.capabilities").write_text(f"{HELPER} cap_net_raw=ep owner=foo\n")
    helper = root / HELPER.lstrip("/")
    helper.parent.mkdir(parents=True)
    shutil.copyfile("/bin/true", helper)
    helper.chmod(0o755)
    (root / "var/lib/capsnap").mkdir(parents=True)
    return root


def test_a_state_directory_a_group_can_write_is_not_used(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    state = root / "var/lib/capsnap"
    os.chown(state, 0, grp.getgrnam("nogroup").gr_gid)
    state.chmod(0o775)
    result = run_cli("--root", str(root), "reapply")
    assert getxattr_or_none(root / HELPER.lstrip("/"))  # the capability is put back
    assert "writable by group or others" in result.err, result.err
    assert os.listdir(state) == []  # and nothing is recorded there


def test_a_log_with_another_name_is_not_written(tmp_path: Path) -> None:
    """var/log/capsnap.log hard-linked to another file of the tree: the log
    line would land in that file."""
    root = make_root(tmp_path)
    canary = root / "etc/canary"
    canary.write_text("unchanged\n")
    os.link(canary, root / "var/log/capsnap.log")
    result = run_cli("--root", str(root), "reapply")
    assert getxattr_or_none(root / HELPER.lstrip("/"))
    assert "has other names" in result.err, result.err
    assert canary.read_text() == "unchanged\n"


def test_a_log_someone_else_owns_is_not_written(tmp_path: Path) -> None:
    """Their file at the log's name: what root appends, they read (and a
    FIFO or a link they swap in later would follow)."""
    root = make_root(tmp_path)
    log = root / "var/log/capsnap.log"
    log.write_text("theirs\n")
    os.chown(log, 4242, 4242)
    result = run_cli("--root", str(root), "reapply")
    assert getxattr_or_none(root / HELPER.lstrip("/"))
    assert "another owner (uid 4242)" in result.err, result.err
    assert log.read_text() == "theirs\n"


def test_a_records_directory_a_group_can_write_is_not_used(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    records = root / "var/lib/capsnap/packages"
    records.mkdir()
    os.chown(records, 0, grp.getgrnam("nogroup").gr_gid)
    records.chmod(0o775)
    result = run_cli("--root", str(root), "reapply")
    assert "writable by group or others" in result.err, result.err
    assert os.listdir(records) == []


def test_a_log_that_is_no_plain_file_is_not_written(tmp_path: Path) -> None:
    """A device node at the log's name (here the null device: harmless)."""
    root = make_root(tmp_path)
    log = root / "var/log/capsnap.log"
    os.mknod(log, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    result = run_cli("--root", str(root), "reapply")
    assert getxattr_or_none(root / HELPER.lstrip("/"))
    assert "not a regular file" in result.err, result.err


def test_a_database_file_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    """SQLite opens the database's -wal and -journal by name: a link planted
    there would have root write its pages elsewhere."""
    root = make_root(tmp_path)
    canary = root / "etc/canary"
    canary.write_text("unchanged\n")
    (root / "var/lib/capsnap/capsnap.db-wal").symlink_to(canary)
    result = run_cli("--root", str(root), "snapshot")
    assert result.status != 0
    assert "capsnap.db-wal: not a regular file" in result.err, result.err
    assert canary.read_text() == "unchanged\n"


def test_directories_made_for_capsnap_have_their_mode_whatever_the_umask(
        tmp_path: Path) -> None:
    """A caller under umask 077 (a library user, a hook's odd parent) still
    makes var/lib/capsnap/packages 0755, which unprivileged readers need."""
    from capsnap import confine
    from capsnap.paths import SystemPaths

    root = make_dpkg_root(tmp_path / "root")
    old = os.umask(0o077)
    try:
        confine.write_atomically(SystemPaths(root=str(root)),
                                 str(root / "var/lib/capsnap/packages/foo"), b"{}\n")
    finally:
        os.umask(old)
        confine.release()
    for d in ("var/lib/capsnap", "var/lib/capsnap/packages"):
        assert stat.S_IMODE((root / d).stat().st_mode) == 0o755, d
