"""The capsnap.fleet collection, run by a real ansible-core against localhost and two
scratch roots standing in for hosts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import capsnap
from tests.conftest import REPO, SRC, getxattr_or_none, needs_root
from tests.packaging import build_deb, dpkg_install, make_dpkg_root

VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
GALAXY = shutil.which("ansible-galaxy") or str(VENV_BIN / "ansible-galaxy")
PLAYBOOK = shutil.which("ansible-playbook") or str(VENV_BIN / "ansible-playbook")
HELPER = "/usr/lib/web/bind-helper"

pytestmark = [needs_root,
              pytest.mark.skipif(not os.path.exists(PLAYBOOK), reason="ansible-core missing")]

PLAY = """\
- hosts: all
  gather_facts: false
  environment:
    PYTHONPATH: "{src}"
  tasks:
    - name: Declare and apply
      capsnap.fleet.capsnap_declare:
        path: "{{{{ target }}}}"
        capabilities: "{{{{ caps }}}}"
        reason: binds port 80
        root: "{{{{ capsnap_root }}}}"
      register: declared
      ignore_errors: true
    - name: Facts
      capsnap.fleet.capsnap_facts:
        root: "{{{{ capsnap_root }}}}"
    - name: Keep the results for the test (changes nothing on the hosts)
      ansible.builtin.copy:
        content: "{{{{ {{'declared': declared, 'facts': ansible_facts.capsnap}} | to_json }}}}"
        dest: "{{{{ out }}}}/{{{{ inventory_hostname }}}}.json"
      delegate_to: localhost
      changed_when: false
      check_mode: false
"""
RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", re.MULTILINE)


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("collections")
    built = subprocess.run([GALAXY, "collection", "build", str(REPO / "ansible"),
                            "--output-path", str(top)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    tarball = top / f"capsnap-fleet-{capsnap.__version__}.tar.gz"
    assert tarball.exists(), "the collection version must follow capsnap's"
    installed = subprocess.run([GALAXY, "collection", "install", str(tarball), "-p",
                                str(top / "installed")], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    return top / "installed"


@pytest.fixture
def fleet(tmp_path: Path) -> dict[str, Path]:
    """Two scratch roots with a package shipping the helper, and a localhost file."""
    deb = build_deb(tmp_path / "debs", "web", "1.0", {HELPER: "/bin/true"})
    hosts = {}
    for name in ("host1", "host2"):
        root = make_dpkg_root(tmp_path / name)
        dpkg_install(root, deb)
        hosts[name] = root
    local_root = tmp_path / "localhost"
    (local_root / HELPER.lstrip("/")).parent.mkdir(parents=True)
    shutil.copyfile("/bin/true", local_root / HELPER.lstrip("/"))
    (local_root / HELPER.lstrip("/")).chmod(0o755)
    hosts["localhost"] = local_root
    (tmp_path / "debs" / "web.deb").symlink_to(deb)
    return hosts


def play(tmp_path: Path, collections: Path, hosts: dict[str, Path], caps: str,
         *extra: str, target: str = HELPER) -> dict[str, object]:
    """Run the play; per host: changed count, and what the modules returned."""
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("".join(
        f"{name} ansible_connection=local ansible_python_interpreter=/usr/bin/python3 "
        f"capsnap_root={root}\n" for name, root in hosts.items()))
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY.format(src=SRC))
    out = tmp_path / "results"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="False")
    done = subprocess.run([PLAYBOOK, "-i", str(inventory), str(playbook), "-e", f"caps={caps}",
                           "-e", f"target={target}", "-e", f"out={out}", *extra],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    result: dict[str, object] = {
        "changed": {m.group(1): int(m.group(2)) for m in RECAP.finditer(done.stdout)},
        "output": done.stdout,
    }
    for host in hosts:
        result[host] = json.loads((out / f"{host}.json").read_text())
    return result


def changed(result: dict[str, object]) -> dict[str, int]:
    return result["changed"]  # type: ignore[return-value]


def host(result: dict[str, object], name: str) -> dict[str, Any]:
    return result[name]  # type: ignore[return-value]


def test_idempotent_check_mode_and_drift_repair(tmp_path: Path, collections: Path,
                                                fleet: dict[str, Path]) -> None:
    checked = play(tmp_path, collections, fleet, "cap_net_bind_service=+ep", "--check",
                   "--diff")
    assert changed(checked) == {"host1": 1, "host2": 1, "localhost": 1}
    for root in fleet.values():
        assert getxattr_or_none(root / HELPER.lstrip("/")) is None
        assert not (root / "etc/capsnap/capabilities.d").exists()
    diff = host(checked, "host1")["declared"]["diff"]
    assert "on disk: none" in diff["before"]
    assert "declared: cap_net_bind_service=ep" in diff["after"]

    first = play(tmp_path, collections, fleet, "cap_net_bind_service=+ep")
    assert changed(first) == {"host1": 1, "host2": 1, "localhost": 1}
    for root in fleet.values():
        out = subprocess.run(["getcap", str(root / HELPER.lstrip("/"))], capture_output=True,
                             text=True).stdout
        assert out.endswith(" cap_net_bind_service=ep\n")

    second = play(tmp_path, collections, fleet, "cap_net_bind_service=ep")  # same set
    assert changed(second) == {"host1": 0, "host2": 0, "localhost": 0}
    facts = host(second, "host1")["facts"]
    assert facts["drifted"] is False
    assert [d["path"] for d in facts["declarations"]["local"]] == [HELPER]
    assert facts["declarations"]["local"][0]["owner"] == "web"

    # A package reinstall on host2 drops the capability: facts report drift...
    dpkg_install(fleet["host2"], tmp_path / "debs" / "web.deb")
    third = play(tmp_path, collections, fleet, "cap_net_bind_service=ep", "--check")
    host2 = host(third, "host2")["facts"]
    assert host2["drifted"] is True
    assert host2["drift"][0]["path"] == HELPER and host2["drift"][0]["status"] == "drifted"
    assert changed(third) == {"host1": 0, "host2": 1, "localhost": 0}
    # ...and rerunning the play repairs it.
    fourth = play(tmp_path, collections, fleet, "cap_net_bind_service=ep")
    assert changed(fourth) == {"host1": 0, "host2": 1, "localhost": 0}
    assert getxattr_or_none(fleet["host2"] / HELPER.lstrip("/")) is not None


@pytest.mark.parametrize(("path", "caps", "message"), [
    (HELPER, "cap_net_bind_servic=ep", "unknown capability name 'cap_net_bind_servic'"),
    ("usr/lib/web/bind-helper", "cap_net_bind_service=ep", "is not absolute"),
    ("/usr/bin/python3-copy", "cap_net_bind_service=ep", "Python interpreter"),
])
def test_bad_input_fails_with_capsnaps_message(tmp_path: Path, collections: Path,
                                               fleet: dict[str, Path], path: str, caps: str,
                                               message: str) -> None:
    root = fleet["localhost"]
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(os.path.realpath("/usr/bin/python3"), root / "usr/bin/python3-copy")
    (root / "usr/bin/python3-copy").chmod(0o755)
    result = play(tmp_path, collections, {"localhost": root}, caps, target=path)
    declared = host(result, "localhost")["declared"]
    assert declared["failed"] is True
    assert message in declared["msg"] and "\n" not in declared["msg"]
    assert changed(result) == {"localhost": 0}
    assert not (root / "etc/capsnap/capabilities.d").exists()
    assert getxattr_or_none(root / "usr/bin/python3-copy") is None
    assert getxattr_or_none(root / HELPER.lstrip("/")) is None
