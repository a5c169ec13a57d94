"""dpkg's post-invoke hook handed to a capsnap started in the background
(capsnap.background): it never outlives its dpkg run, and when it is gone or
stopped post-invoke does the work itself, within its bound.

Real dpkg in one overlay of this machine with capsnap's .debs installed; the
package's preinst waits for the test, so that dpkg is caught mid-run with
the background process ready.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import needs_root
from tests.overlay import inside, install_debs, overlay_supported, overlay_system, put
from tests.packaging import build_deb

pytestmark = [needs_root,
              pytest.mark.skipif(not overlay_supported(), reason="no overlayfs here")]

BIN = "/usr/lib/held/bin"
GO = "/tmp/capsnap-test-go"
PREINST = f"""#!/bin/sh
# Hold dpkg here (for 60 s at most) until the test lets it go on.
i=0
while [ ! -e {GO} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
"""
STATE = "var/lib/capsnap"
BOUND = 30  # seconds: the post-invoke line's bound on the background process


class Machine:
    def __init__(self, root: Path, deb: str) -> None:
        self.root = root
        self.deb = deb

    def start_dpkg(self) -> subprocess.Popen[bytes]:
        """dpkg -i of the held package, stopped in its preinst once the
        background process is ready."""
        (self.root / GO.lstrip("/")).unlink(missing_ok=True)
        dpkg = subprocess.Popen(["chroot", str(self.root), "dpkg", "-i", self.deb],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                     "LC_ALL": "C.UTF-8"})
        try:
            self.wait_for(lambda: self.background() is not None, "the background process")
        except AssertionError:
            self.go()
            dpkg.kill()
            dpkg.communicate()
            raise
        return dpkg

    def go(self) -> None:
        (self.root / GO.lstrip("/")).touch()

    def background(self) -> int | None:
        """The background process the pid file names, if running."""
        try:
            pid = int((self.root / STATE / "dpkg-serve.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if running(pid) else None

    def capsnap_processes(self) -> list[int]:
        """capsnap's processes in this overlay that have not exited."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                same_root = os.readlink(f"/proc/{entry}/root") == str(self.root)
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if same_root and b"capsnap" in cmdline and running(int(entry)):
                found.append(int(entry))
        return found

    @staticmethod
    def wait_for(condition: object, what: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {within} s")
            time.sleep(0.02)

    def getcap(self) -> str:
        return subprocess.run(["getcap", str(self.root / BIN.lstrip("/"))],
                              capture_output=True, text=True).stdout.split(" ", 1)[-1].strip()

    def last_transaction(self) -> int:
        """The id of the newest transaction, which must be dpkg's and have
        put the capability back."""
        done = inside(self.root, "capsnap", "diff", "--json")
        assert done.returncode in (0, 1), done.stderr
        diff = json.loads(done.stdout)
        assert diff["transaction"]["manager"] == "dpkg", diff
        changes = {c["path"]: c for c in diff["changes"]}
        assert changes[BIN]["capsnap"] == "restored", diff
        number: int = diff["transaction"]["id"]
        return number

    def left_over(self) -> list[str]:
        return sorted(p.name for p in (self.root / STATE).iterdir()
                      if p.name.startswith(("dpkg-serve", "transaction-open", "dpkg-status")))


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited process its reaper has not collected)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X")


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory,
            capsnap_debs: list[Path]) -> Iterator[Machine]:
    top = tmp_path_factory.mktemp("background")
    deb = build_deb(top / "debs", "held", "1.0", {BIN: "/bin/true"},
                    file_capabilities=[f"{BIN} cap_net_raw=ep"])
    stage = top / "debs" / "held_1.0.debroot"
    (stage / "DEBIAN/preinst").write_text(PREINST)
    (stage / "DEBIAN/preinst").chmod(0o755)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(stage), str(deb)],
                   check=True, capture_output=True)
    with overlay_system(top / "ov") as root:
        done = install_debs(root, capsnap_debs)
        assert done.returncode == 0, done.stdout + done.stderr
        shutil.rmtree(root / "etc/capsnap/capabilities.d", ignore_errors=True)
        (root / "etc/capsnap/capabilities.d").mkdir()
        machine = Machine(root, put(root, deb))
        machine.go()
        first = inside(root, "dpkg", "-i", machine.deb)
        assert first.returncode == 0, first.stderr
        assert machine.getcap() == "cap_net_raw=ep"
        yield machine
        machine.go()


def finish(machine: Machine, dpkg: subprocess.Popen[bytes]) -> tuple[int, str, float]:
    started = time.monotonic()
    machine.go()
    out, err = dpkg.communicate(timeout=BOUND * 3)
    return dpkg.returncode, (out + err).decode(errors="replace"), time.monotonic() - started


def test_the_background_process_answers_post_invoke(machine: Machine) -> None:
    """The control: the background path itself reapplies and records."""
    before = machine.last_transaction()
    dpkg = machine.start_dpkg()
    server = machine.background()
    code, output, _ = finish(machine, dpkg)
    assert code == 0, output
    assert machine.getcap() == "cap_net_raw=ep"
    assert machine.last_transaction() > before
    assert server is not None and not running(server)
    assert machine.left_over() == [] and machine.capsnap_processes() == []


def test_no_process_outlives_a_killed_dpkg(machine: Machine) -> None:
    dpkg = machine.start_dpkg()
    server = machine.background()
    assert server is not None
    dpkg.kill()  # SIGKILL, with the package half unpacked
    dpkg.communicate(timeout=BOUND)
    machine.wait_for(lambda: not running(server), "exit of the background process", within=5)
    machine.go()  # the orphaned preinst ends too
    machine.wait_for(lambda: machine.capsnap_processes() == [], "end of capsnap's processes",
                     within=5)
    # The next run works, and records the reinstall.
    before = machine.last_transaction()
    again = inside(machine.root, "dpkg", "-i", machine.deb)
    assert again.returncode == 0, again.stderr
    assert machine.getcap() == "cap_net_raw=ep"
    assert machine.last_transaction() > before
    assert machine.left_over() == [] and machine.capsnap_processes() == []


@pytest.mark.parametrize("fault", ["killed", "stopped"])
def test_post_invoke_falls_back_when_the_background_process_is_gone_or_stopped(
        machine: Machine, fault: str) -> None:
    before = machine.last_transaction()
    dpkg = machine.start_dpkg()
    server = machine.background()
    assert server is not None
    os.kill(server, signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
    code, output, elapsed = finish(machine, dpkg)
    assert code == 0, output
    assert "Traceback" not in output and "capsnap" not in output, output
    # Told at once (neither there nor running): never the bound's wait.
    assert elapsed < BOUND, elapsed
    assert machine.getcap() == "cap_net_raw=ep"
    assert machine.last_transaction() > before
    # A stopped one is killed by the hook that did its work.
    machine.wait_for(lambda: not running(server), "end of the background process", within=5)
    assert machine.left_over() == [] and machine.capsnap_processes() == []
