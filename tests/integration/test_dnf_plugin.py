"""The dnf 4 plugin, loaded by a real dnf installing local rpms into a scratch root."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, SRC, needs_root, run_capsnap
from tests.packaging import build_rpm

pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("dnf") is None, reason="dnf missing"),
              pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild missing")]


def dnf(root: Path, confdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["dnf", "-y", f"--installroot={root}", "--releasever=1",
         "--setopt=reposdir=/nonexistent", "--disablerepo=*",
         f"--setopt=pluginpath={REPO / 'hooks/dnf'}", f"--setopt=pluginconfpath={confdir}",
         *args], capture_output=True, text=True)


def test_dnf_transactions_are_recorded_and_declarations_restored(tmp_path: Path) -> None:
    wrapper = tmp_path / "capsnap"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={SRC} exec /usr/bin/python3 -m capsnap \"$@\"\n")
    wrapper.chmod(0o755)
    confdir = tmp_path / "plugins"
    confdir.mkdir()
    conf = (REPO / "hooks/dnf/capsnap_dnf.conf").read_text()
    (confdir / "capsnap_dnf.conf").write_text(conf.replace("/usr/bin/capsnap", str(wrapper)))
    v1 = build_rpm(tmp_path / "pkgs", "vpn", "1.1", {"/usr/sbin/vpnc-ish": "/bin/true"})
    v2 = build_rpm(tmp_path / "pkgs", "vpn", "1.2", {"/usr/sbin/vpnc-ish": "/bin/true"})
    root = tmp_path / "root"

    first = dnf(root, confdir, "install", str(v1))
    assert first.returncode == 0, first.stdout + first.stderr
    r = str(root)
    assert run_capsnap("--root", r, "declare", "/usr/sbin/vpnc-ish", "cap_net_admin=ep",
                       check=True).status == 0
    assert run_capsnap("--root", r, "reapply").status == 0

    upgraded = dnf(root, confdir, "upgrade", str(v2))
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    getcap = subprocess.run(["getcap", str(root / "usr/sbin/vpnc-ish")], capture_output=True,
                            text=True).stdout
    assert getcap.endswith(" cap_net_admin=ep\n")
    diff = json.loads(run_capsnap("--root", r, "diff", "--json").out)
    assert diff["transaction"]["manager"] == "dnf"
    assert {"package": "vpn", "old": "1.1-1", "new": "1.2-1"} in diff["transaction"]["packages"]
    change = {c["path"]: c for c in diff["changes"]}["/usr/sbin/vpnc-ish"]
    assert change["capsnap"] == "restored"
