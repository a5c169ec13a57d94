"""`pip install .` from setup.cfg, and install-hooks for installs that are not a .deb."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO, getxattr_or_none, needs_root
from tests.packaging import build_deb, dpkg, make_dpkg_root

pytestmark = needs_root


def test_pip_install_then_hooks_restore_after_dpkg_upgrade(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build"))
    installed = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--no-build-isolation",
                                "--no-deps", str(source)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    capsnap = venv / "bin/capsnap"
    assert subprocess.run([str(capsnap), "--version"], capture_output=True,
                          text=True).stdout.startswith("capsnap ")

    root = make_dpkg_root(tmp_path / "root")
    (root / "etc/apt").mkdir(parents=True)
    done = subprocess.run([str(capsnap), "--root", str(root), "install-hooks"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    cfg = (root / "etc/dpkg/dpkg.cfg.d/capsnap").read_text()
    assert f"if [ -x {capsnap} ]; then {capsnap} hook dpkg-post-invoke || [ $? -ge 128 ]; fi" \
        in cfg
    assert (root / "var/lib/capsnap").is_dir()  # where dpkg's pre-invoke marks the start
    assert (root / "etc/apt/apt.conf.d/05capsnap").exists()
    assert (root / "etc/capsnap/apt-pre-install-pkgs").stat().st_mode & 0o111

    # dpkg --root reads the host's dpkg.cfg.d, not the root's: give it the
    # installed file's lines as the options they are.
    options = [f"--{line.replace(chr(34), '')}" for line in cfg.splitlines()
               if line and not line.startswith("#")]
    v1 = build_deb(tmp_path, "foo", "1", {"/usr/lib/foo/helper": "/bin/true"},
                   file_capabilities=["/usr/lib/foo/helper cap_net_raw=ep"])
    v2 = build_deb(tmp_path, "foo", "2", {"/usr/lib/foo/helper": "/bin/true"},
                   file_capabilities=["/usr/lib/foo/helper cap_net_raw=ep"])
    for deb in (v1, v2):
        dpkg(root, *options, "-i", str(deb))
        assert getxattr_or_none(root / "usr/lib/foo/helper") is not None, deb.name

    removed = subprocess.run([str(capsnap), "--root", str(root), "uninstall-hooks"],
                             capture_output=True, text=True)
    assert removed.returncode == 0
    assert not (root / "etc/dpkg/dpkg.cfg.d/capsnap").exists()
