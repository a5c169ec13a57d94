"""What a package's configure sets where the script reader cannot see it (a
setcap in a helper the postinst runs, through eval, on a path read from a
file) is learned by capsnap's hooks from the run itself, with real dpkg in
an overlay of this machine where capsnap's .debs are installed: listed as
dpkg-script, enforced, withdrawn by a configure that no longer sets it,
forgotten on purge; a capability set by hand between runs is never learned."""

from __future__ import annotations

import json
import marshal
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from capsnap.declarations import scripts
from tests.conftest import needs_root
from tests.overlay import getcap_inside as getcap
from tests.overlay import install_debs, overlay_supported, overlay_system, put
from tests.overlay import run_inside as run
from tests.packaging import build_deb

pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("dpkg-buildpackage") is None,
                                 reason="dpkg-dev missing")]

HELPER = "/usr/lib/obs/helper"
OTHER = "/usr/lib/obs/other"
# The postinst runs a helper of the package's own; the helper reads the
# target's name from a file and calls setcap through eval.
POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
    /usr/lib/obs/grant
fi
"""
GRANT = """#!/bin/sh
eval "setcap cap_net_raw+ep $(cat /usr/share/obs/target)"
"""


def listed(root: Path) -> dict[str, dict[str, object]]:
    entries = json.loads(run(root, "capsnap", "list", "--source", "dpkg-script",
                             "--json").stdout)
    return {e["path"]: e for e in entries if e["package"] == "obs"}


def obs(out: Path, version: str, sets: bool) -> str:
    deb = build_deb(out, "obs", version, {
        HELPER: "/bin/true", OTHER: "/bin/true", "/usr/share/obs/target": f"{HELPER}\n".encode(),
        "/usr/lib/obs/grant": (GRANT if sets else "#!/bin/sh\n").encode()},
        modes={"/usr/lib/obs/grant": 0o755}, postinst=POSTINST)
    return deb.name


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory,
            capsnap_debs: list[Path]) -> Iterator[Path]:
    """capsnap installed, then obs 1.0 (whose configure sets the capability)
    with capsnap's hooks; obs 1.0 and 2.0 (which sets nothing) in /tmp."""
    if not overlay_supported():
        pytest.skip("no overlayfs here")
    debs = tmp_path_factory.mktemp("obs-debs")
    with overlay_system(tmp_path_factory.mktemp("obs") / "ov") as root:
        done = install_debs(root, capsnap_debs)
        assert done.returncode == 0, done.stdout + done.stderr
        for version, sets in (("1.0", True), ("2.0", False)):
            put(root, debs / obs(debs, version, sets))
        run(root, "dpkg", "-i", "/tmp/obs_1.0_all.deb")
        yield root


def test_the_reader_cannot_see_it(machine: Path) -> None:
    postinst = (machine / "var/lib/dpkg/info/obs.postinst").read_text()
    assert scripts.calls(postinst) == []


def test_a_configure_that_sets_it_is_learned_and_enforced(machine: Path) -> None:
    # One after the other, on one machine: each step starts where the last left it.
    assert getcap(machine, HELPER) == "cap_net_raw=ep"
    entry = listed(machine)[HELPER]
    assert (entry["capabilities"], entry["package"], entry["version"], entry["enforced"],
            entry["state"]) == ("cap_net_raw=ep", "obs", "1.0", True, "in force")
    assert entry["reason"] == "seen set during obs's configure"
    assert entry["origin"] == "configure of obs"
    run(machine, "capsnap", "check")

    # An unpack (hooks and all) leaves it to the configure to come: drift
    # for check, which reapply run by hand puts back.
    run(machine, "dpkg", "--unpack", "/tmp/obs_1.0_all.deb")
    assert getcap(machine, HELPER) == ""
    check = run(machine, "capsnap", "check", ok=(1,))
    line = next(ln for ln in check.stdout.splitlines() if ln.startswith(HELPER))
    assert "drifted" in line and "set by obs's postinst" in line, check.stdout
    run(machine, "capsnap", "reapply")
    assert getcap(machine, HELPER) == "cap_net_raw=ep"
    # By hand between runs, on a file of the package: the administrator's,
    # not the package's, even though the next run configures the package.
    run(machine, "setcap", "cap_net_bind_service+ep", OTHER)
    run(machine, "dpkg", "--configure", "obs")
    assert getcap(machine, OTHER) == "cap_net_bind_service=ep"
    assert set(listed(machine)) == {HELPER}
    run(machine, "capsnap", "check")

    # 2.0's configure does not set it: withdrawn, the file left as the
    # package leaves it.
    run(machine, "dpkg", "--unpack", "/tmp/obs_2.0_all.deb")
    run(machine, "dpkg", "--configure", "obs")
    assert listed(machine) == {}
    assert getcap(machine, HELPER) == ""
    run(machine, "capsnap", "check")

    # Through apt: 1.0 sets it again, 2.0 (unpacked and configured in two
    # dpkg runs) withdraws it.
    apt = ("apt-get", "install", "-y", "--allow-downgrades")
    run(machine, *apt, "/tmp/obs_1.0_all.deb")
    assert listed(machine)[HELPER]["enforced"] is True
    run(machine, *apt, "/tmp/obs_2.0_all.deb")
    assert listed(machine) == {} and getcap(machine, HELPER) == ""

    # A purge forgets it.
    run(machine, "dpkg", "-i", "/tmp/obs_1.0_all.deb")
    assert listed(machine)[HELPER]["enforced"] is True
    run(machine, "dpkg", "--purge", "obs")
    assert listed(machine) == {}
    state = marshal.loads((machine / "var/lib/capsnap/script-observed.marshal").read_bytes())
    assert state["observed"] == {}
