"""capsnap's rpm: its spec builds, and its file triggers run in a root where
scriptlets can run (a copy-on-write overlay of this machine, with rpm inside)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import needs_root
from tests.overlay import inside, overlay_supported, overlay_system, put
from tests.packaging import build_rpm

pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild missing"),
              pytest.mark.skipif(not overlay_supported(), reason="no overlayfs here")]


def test_file_triggers_restore_a_local_declaration_after_rpm_upgrade(
        tmp_path: Path, capsnap_rpm: Path) -> None:
    v1 = build_rpm(tmp_path / "pkgs", "vpn", "1.1", {"/usr/sbin/vpnc-ish": "/bin/true"})
    v2 = build_rpm(tmp_path / "pkgs", "vpn", "1.2", {"/usr/sbin/vpnc-ish": "/bin/true"})
    with overlay_system(tmp_path / "ov") as root:
        assert inside(root, "rpm", "--initdb").returncode == 0
        done = inside(root, "rpm", "-i", "--nodeps", put(root, capsnap_rpm))
        assert done.returncode == 0, done.stderr
        assert inside(root, "rpm", "-i", "--nodeps", put(root, v1)).returncode == 0
        declared = inside(root, "capsnap", "declare", "/usr/sbin/vpnc-ish", "cap_net_admin=ep",
                          "--reason", "the VPN client sets up its tunnel")
        assert declared.returncode == 0, declared.stderr
        assert "file of package vpn 1.1-1" in declared.stderr
        assert inside(root, "capsnap", "reapply").returncode == 0

        upgraded = inside(root, "rpm", "-U", "--nodeps", put(root, v2))
        assert upgraded.returncode == 0, upgraded.stderr
        getcap = subprocess.run(["getcap", str(root / "usr/sbin/vpnc-ish")],
                                capture_output=True, text=True).stdout
        assert getcap.endswith(" cap_net_admin=ep\n"), (getcap, upgraded.stderr)

        snapshots = json.loads(inside(root, "capsnap", "snapshots", "--json").stdout)
        phases = [(s["phase"], s["transaction"]) for s in snapshots if s["transaction"]]
        assert ("before", phases[0][1]) in phases and ("after", phases[0][1]) in phases
        diff = json.loads(inside(root, "capsnap", "diff", "--json").stdout)
        assert diff["transaction"]["manager"] == "rpm"
        assert {"package": "vpn", "old": "1.1-1", "new": "1.2-1"} in \
            diff["transaction"]["packages"]
        change = {c["path"]: c for c in diff["changes"]}["/usr/sbin/vpnc-ish"]
        assert change["kind"] == "replaced" and change["capsnap"] == "restored"


def test_a_reapply_that_cannot_succeed_never_fails_rpm(tmp_path: Path, capsnap_rpm: Path) -> None:
    pkg = build_rpm(tmp_path / "pkgs", "odd", "1", {"/usr/bin/odd-tool": "/bin/true"})
    with overlay_system(tmp_path / "ov") as root:
        assert inside(root, "rpm", "--initdb").returncode == 0
        assert inside(root, "rpm", "-i", "--nodeps", put(root, capsnap_rpm)).returncode == 0
        local = root / "etc/capsnap/capabilities.d"
        local.mkdir(parents=True)
        # An unknown capability and a missing file: both reported, neither fatal.
        (local / "admin.capabilities").write_text("/usr/bin/odd-tool cap_net_raw=ep\n"
                                                  "/usr/bin/other cap_bogus=ep\n")
        installed = inside(root, "rpm", "-i", "--nodeps", put(root, pkg))
        assert installed.returncode == 0, installed.stderr
        reinstalled = inside(root, "rpm", "-i", "--replacepkgs", "--nodeps", put(root, pkg))
        assert reinstalled.returncode == 0, reinstalled.stderr
        assert "capsnap: hook rpm-post:" in reinstalled.stderr
        # By file and line, never quoted: a declaration file may be a link to a secret.
        assert "admin.capabilities:2: invalid capability text" in reinstalled.stderr
