"""Real Debian packages that setcap from their postinst, installed before
capsnap in an overlay of this machine: what their scripts set is a
declaration (dpkg-script), enforced once seen; adopt, declare none, audit.

The packages come from the Debian archive through apt inside the overlay;
their .debs are kept for the session.  Their maintainer scripts are read
where dpkg installed them, at test time.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from capsnap.declarations import scripts
from tests.conftest import needs_root
from tests.overlay import getcap_inside as getcap
from tests.overlay import inside, overlay_supported, overlay_system, put
from tests.overlay import run_inside as run

pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("dpkg-buildpackage") is None,
                                 reason="dpkg-dev missing")]

# package: (file as the package's list names it, capability text as written)
REAL = {
    "iputils-ping": ("/bin/ping", "cap_net_raw+ep"),
    "iputils-arping": ("/usr/bin/arping", "cap_net_raw+ep"),
    "fping": ("/usr/bin/fping", "cap_net_raw+ep"),
    "mtr-tiny": ("/usr/bin/mtr-packet", "cap_net_raw+ep"),
    "wireshark-common": ("/usr/bin/dumpcap", "cap_net_raw,cap_net_admin=eip"),
}
EXTRA = ("tcpdump",)


def capsnap_json(root: Path, *args: str, ok: tuple[int, ...] = (0,)) -> object:
    return json.loads(run(root, "capsnap", *args, "--json", ok=ok).stdout)


@pytest.fixture(scope="session")
def deb_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the real packages' .debs are kept between overlays of a session."""
    return tmp_path_factory.mktemp("real-debs")


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory, capsnap_debs: list[Path],
            deb_cache: Path) -> Iterator[Path]:
    """The real packages installed (wireshark-common told "no"), then capsnap."""
    if not overlay_supported():
        pytest.skip("no overlayfs here")
    with overlay_system(tmp_path_factory.mktemp("real") / "ov") as root:
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        archives = root / "var/cache/apt/archives"
        for deb in deb_cache.glob("*.deb"):
            shutil.copy(deb, archives)
        preseed = inside(root, "debconf-set-selections",
                         stdin="wireshark-common wireshark-common/install-setuid boolean false\n")
        assert preseed.returncode == 0, preseed.stderr
        install = inside(root, "apt-get", "install", "-y", "--no-install-recommends",
                         *REAL, *EXTRA)
        if install.returncode != 0 and "Could not resolve" in install.stdout + install.stderr:
            pytest.skip("the Debian archive cannot be reached")
        assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
        for deb in archives.glob("*.deb"):
            if not (deb_cache / deb.name).exists():
                shutil.copy(deb, deb_cache)
        run(root, "dpkg", "-i", *(put(root, deb) for deb in capsnap_debs))
        yield root


def deb_of(root: Path, package: str) -> str:
    found = sorted((root / "var/cache/apt/archives").glob(f"{package}_*.deb"))
    assert found, package
    return f"/var/cache/apt/archives/{found[-1].name}"


def by_path(entries: object) -> dict[str, dict[str, object]]:
    assert isinstance(entries, list)
    return {e["path"]: e for e in entries}


def test_the_reader_finds_each_real_postinst_setcap(machine: Path) -> None:
    for package, (path, caps) in REAL.items():
        text = (machine / f"var/lib/dpkg/info/{package}.postinst").read_text()
        found = [(c.caps, c.path) for c in scripts.calls(text)]
        assert found == [(caps, path)], package
    # A postinst without setcap (tcpdump's) sets nothing.
    tcpdump = machine / "var/lib/dpkg/info/tcpdump.postinst"
    assert not tcpdump.exists() or scripts.calls(tcpdump.read_text()) == []


def test_list_shows_what_the_scripts_set(machine: Path) -> None:
    listed = by_path(capsnap_json(machine, "list", "--source", "dpkg-script"))
    for package, (path, _) in REAL.items():
        entry = listed.get(path) or listed[f"/usr{path}"]
        assert entry["source"] == "dpkg-script" and entry["package"] == package
        assert entry["capabilities"] == ("cap_net_admin,cap_net_raw=eip"
                                         if package == "wireshark-common" else
                                         "cap_net_raw=ep")
        # Told "no", wireshark-common's postinst set nothing: listed, not enforced.
        enforced = package != "wireshark-common"
        assert entry["enforced"] is enforced, entry
        assert (entry["state"] == "in force") is enforced, entry


def test_audit_of_packaged_capabilities_only_is_clean(machine: Path) -> None:
    report = capsnap_json(machine, "audit")
    assert isinstance(report, dict) and report["ok"] is True
    found = by_path(report["findings"])
    assert found["/usr/bin/fping"]["source"] == "dpkg-script"
    assert found["/usr/bin/fping"]["status"] == "explained"
    assert "/usr/bin/dumpcap" not in found


def test_unpack_without_capsnaps_hooks_is_drift_that_reapply_restores(machine: Path) -> None:
    hook = machine / "etc/dpkg/dpkg.cfg.d/capsnap"
    aside = machine / "root/capsnap-dpkg-hook"
    shutil.move(hook, aside)
    try:
        # Nor its trigger: what is left is what an interrupted upgrade leaves.
        run(machine, "dpkg", "--unpack", "--no-triggers", deb_of(machine, "fping"))
    finally:
        shutil.move(aside, hook)
    assert getcap(machine, "/usr/bin/fping") == ""
    check = run(machine, "capsnap", "check", ok=(1,))
    line = next(ln for ln in check.stdout.splitlines() if ln.startswith("/usr/bin/fping"))
    assert "drifted" in line and "set by fping's postinst" in line, check.stdout
    run(machine, "capsnap", "reapply")
    assert getcap(machine, "/usr/bin/fping") == "cap_net_raw=ep"
    run(machine, "capsnap", "check")
    run(machine, "dpkg", "--configure", "fping")
    assert getcap(machine, "/usr/bin/fping") == "cap_net_raw=ep"


def test_with_the_hooks_an_unpack_is_restored_at_once(machine: Path) -> None:
    run(machine, "dpkg", "--unpack", deb_of(machine, "mtr-tiny"))
    assert getcap(machine, "/usr/bin/mtr-packet") == "cap_net_raw=ep"
    run(machine, "dpkg", "--configure", "mtr-tiny")
    run(machine, "capsnap", "check")


def test_debconf_no_means_nothing_is_enforced_for_dumpcap(machine: Path) -> None:
    assert getcap(machine, "/usr/bin/dumpcap") == ""
    check = capsnap_json(machine, "check")
    assert isinstance(check, dict)
    assert all(f["path"] != "/usr/bin/dumpcap" for f in check["findings"])
    run(machine, "capsnap", "reapply")
    run(machine, "dpkg", "-i", deb_of(machine, "wireshark-common"))
    assert getcap(machine, "/usr/bin/dumpcap") == ""


def test_adopt_keeps_a_hand_set_capability_across_a_reinstall(machine: Path) -> None:
    run(machine, "setcap", "cap_net_raw,cap_net_admin=eip", "/usr/bin/tcpdump")
    dry = capsnap_json(machine, "adopt", "--all", "--dry-run")
    assert isinstance(dry, list)
    assert [(o["path"], o["status"]) for o in dry] == [("/usr/bin/tcpdump", "would-adopt")]
    adopted = capsnap_json(machine, "adopt", "/usr/bin/tcpdump")
    assert adopted == [{"path": "/usr/bin/tcpdump", "status": "adopted",
                        "capabilities": "cap_net_admin,cap_net_raw=eip", "owner": "tcpdump",
                        "detail": ""}]
    local = (machine / "etc/capsnap/capabilities.d/local.capabilities").read_text()
    assert [ln for ln in local.splitlines() if "tcpdump" in ln] == [
        ln for ln in local.splitlines() if ln.startswith("/usr/bin/tcpdump "
                                                         "cap_net_admin,cap_net_raw=eip "
                                                         "owner=tcpdump  # adopted")]
    again = capsnap_json(machine, "adopt", "/usr/bin/tcpdump")
    assert isinstance(again, list) and again[0]["status"] == "already-declared"
    run(machine, "apt-get", "install", "-y", "--reinstall", "tcpdump")
    assert getcap(machine, "/usr/bin/tcpdump") == "cap_net_admin,cap_net_raw=eip"


def test_declare_none_overrules_the_package_across_a_reinstall(machine: Path) -> None:
    run(machine, "capsnap", "declare", "/usr/bin/arping", "none")
    listed = capsnap_json(machine, "list")
    assert isinstance(listed, list)
    assert [(e["source"], e["capabilities"], e["state"]) for e in listed
            if e["path"] == "/usr/bin/arping"] == [
        ("local", "=", "wins over dpkg-script:iputils-arping 3:20221126-1+deb12u1"),
        ("dpkg-script", "cap_net_raw=ep", "overridden by local")]
    run(machine, "capsnap", "reapply")
    assert getcap(machine, "/usr/bin/arping") == ""
    run(machine, "apt-get", "install", "-y", "--reinstall", "iputils-arping")
    assert getcap(machine, "/usr/bin/arping") == ""
    run(machine, "dpkg", "-i", deb_of(machine, "iputils-arping"))
    assert getcap(machine, "/usr/bin/arping") == ""
    run(machine, "capsnap", "check")


def test_audit_flags_a_copied_python_given_cap_setuid(machine: Path) -> None:
    run(machine, "cp", "/usr/bin/python3", "/usr/local/bin/py-copy")
    run(machine, "setcap", "cap_setuid+ep", "/usr/local/bin/py-copy")
    report = capsnap_json(machine, "audit", ok=(1,))
    assert isinstance(report, dict) and report["ok"] is False
    found = by_path(report["findings"])["/usr/local/bin/py-copy"]
    assert found["status"] == "undeclared"
    assert {"root-equivalent", "interpreter", "unsafe-target", "not-packaged"} <= \
        set(found["risks"]), found
    # The same from a snapshot.
    run(machine, "capsnap", "snapshot", "--label", "incident")
    again = capsnap_json(machine, "audit", "--from", "incident", ok=(1,))
    assert isinstance(again, dict)
    assert by_path(again["findings"])["/usr/local/bin/py-copy"]["status"] == "undeclared"
    text = run(machine, "capsnap", "audit", ok=(1,)).stdout
    assert "/usr/local/bin/py-copy" in text and "undeclared" in text
