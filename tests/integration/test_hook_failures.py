"""dpkg's hooks when things go wrong: the sh pre-invoke line never fails dpkg, and
a snapshot database that cannot be used never stops capabilities being put back."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from capsnap import hook
from capsnap.fileops import kernel_cap_bits
from capsnap.paths import SystemPaths
from tests.conftest import REPO, needs_root
from tests.packaging import make_dpkg_root

HELPER = "/usr/lib/foo/helper"


def _pre_invoke_line() -> str:
    """dpkg's pre-invoke command as shipped, guarded by a program that exists here."""
    for line in (REPO / "hooks/dpkg/capsnap.cfg").read_text().splitlines():
        if line.startswith("pre-invoke="):
            return line[len('pre-invoke="'):-1].replace("/usr/bin/capsnap", "/bin/sh")
    raise AssertionError("no pre-invoke line")


def _pre_invoke(root: Path, user: list[str] | None = None) -> int:
    env = {"PATH": "/usr/bin:/bin", "DPKG_ROOT": str(root),
           "DPKG_ADMINDIR": str(root / "var/lib/dpkg")}
    return subprocess.run([*(user or []), "dash", "-c", _pre_invoke_line()], env=env,
                          capture_output=True).returncode


@pytest.mark.skipif(shutil.which("dash") is None, reason="dash missing")
def test_pre_invoke_marks_the_start_and_never_fails(tmp_path: Path) -> None:
    root = make_dpkg_root(tmp_path / "root")
    state = root / "var/lib/capsnap"
    assert _pre_invoke(root) == 0  # no state directory: nothing to do
    state.mkdir(parents=True)
    assert _pre_invoke(root) == 0
    assert (state / "transaction-open").exists()
    assert os.path.samefile(state / "dpkg-status.before", root / "var/lib/dpkg/status")
    # A marker that cannot be written (a dangling symlink: "-e" says absent).
    for name in ("transaction-open", "dpkg-status.before"):
        (state / name).unlink()
    (state / "transaction-open").symlink_to("/nonexistent/capsnap/marker")
    assert _pre_invoke(root) == 0
    if os.geteuid() == 0 and shutil.which("setpriv"):  # a directory it may not write
        (state / "transaction-open").unlink()
        assert _pre_invoke(root, ["setpriv", "--reuid=65534", "--regid=65534",
                                  "--clear-groups"]) == 0


@needs_root
def test_a_damaged_store_still_gets_the_capability_back(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) \
        -> None:
    root = make_dpkg_root(tmp_path / "root")
    (root / "var/lib/dpkg/status").write_text(
        "Package: foo\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n"
        f"File-Capabilities:\n {HELPER} cap_net_raw=ep\n")
    (root / "var/lib/dpkg/info/foo.list").write_text(f"{HELPER}\n")  # foo ships it
    helper = root / HELPER.lstrip("/")
    helper.parent.mkdir(parents=True)
    shutil.copyfile("/bin/true", helper)
    helper.chmod(0o755)
    state = root / "var/lib/capsnap"
    state.mkdir(parents=True)
    (state / "capsnap.db").write_bytes(b"this is not a SQLite database\n" * 100)
    (state / "transaction-open").touch()  # as dpkg's pre-invoke leaves it
    paths = SystemPaths(root=str(root))

    assert hook.run("dpkg-post-invoke", paths, None, kernel_cap_bits(),
                    stdin=io.StringIO()) == 0
    err = capsys.readouterr().err
    assert "not recorded, capabilities put back all the same:" in err
    assert "move it aside" in err and "internal error" not in err
    assert os.getxattr(helper, "security.capability")  # put back all the same
    assert not (state / "transaction-open").exists()  # the trigger is not silenced
    assert (state / "capsnap.db").read_bytes().startswith(b"this is not")  # left alone
