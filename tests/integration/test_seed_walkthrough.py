"""The seed's setcap/getcap walkthrough (shared/seed/setcap-howto.txt), done by capsnap.

A root-owned copy of python3 binds 127.0.0.1:80 as `nobody` only while it
carries cap_net_bind_service.  capsnap runs as the hooks will: a separate
process under Debian's /usr/bin/python3.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import copy_binary, needs_root, run_capsnap

PROBE = """\
import socket
import sys

sock = socket.socket()
try:
    sock.bind(("127.0.0.1", 80))
except PermissionError as exc:
    print(f"bind failed: {exc}")
    sys.exit(1)
print("bound 127.0.0.1:80")
"""


def _unprivileged_port_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())


pytestmark = [
    needs_root,
    pytest.mark.skipif(_unprivileged_port_start() <= 80,
                       reason="net.ipv4.ip_unprivileged_port_start lets anyone bind port 80 "
                              "here, so the capability would prove nothing"),
]


def probe(binary: Path, script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "nobody", "--", str(binary), str(script)],
                          capture_output=True, text=True)


def test_walkthrough(world_dir: Path) -> None:
    web = copy_binary("/usr/bin/python3", world_dir / "python-web")
    script = world_dir / "bind-low-port.py"
    script.write_text(PROBE)
    script.chmod(0o644)

    before = probe(web, script)
    assert before.returncode == 1, before
    assert "bind failed" in before.stdout and "Permission denied" in before.stdout

    refused = run_capsnap("set", "cap_net_bind_service=+ep", str(web))
    assert refused.status == 3
    assert "Python interpreter" in refused.err and "--force" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert run_capsnap("get", str(web)).out == ""

    forced = run_capsnap("set", "--force", "cap_net_bind_service=+ep", str(web))
    assert forced.status == 0, forced.err
    got = run_capsnap("get", str(web))
    assert got.out == f"{web} cap_net_bind_service=ep\n"
    assert subprocess.run(["getcap", str(web)], capture_output=True,
                          text=True).stdout == got.out

    after = probe(web, script)
    assert after.returncode == 0, after
    assert after.stdout == "bound 127.0.0.1:80\n"

    ok = run_capsnap("verify", "cap_net_bind_service=+ep", str(web))
    assert (ok.status, ok.out) == (0, f"{web}: OK\n")
    other = run_capsnap("verify", "cap_net_raw=ep", str(web))
    assert other.status == 1
    assert other.out == f"{web} differs in [pe]\n"

    removed = run_capsnap("remove", str(web))
    assert removed.status == 0, removed.err
    assert run_capsnap("get", str(web)).out == ""
    assert subprocess.run(["getcap", str(web)], capture_output=True, text=True).stdout == ""

    again = probe(web, script)
    assert again.returncode == 1
    assert "bind failed" in again.stdout
