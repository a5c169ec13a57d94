"""The capsnap.fleet collection: ansible-test's sanity tests and ansible-doc on it, and its
modules run by a real ansible-core against capsnap installed from its .deb in an overlay of
this machine, with localhost and two scratch roots standing in for hosts."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import capsnap
from tests.conftest import REPO, SRC, getxattr_or_none, needs_root
from tests.overlay import inside, overlay_supported, overlay_system, put
from tests.packaging import build_deb, dpkg_install, make_dpkg_root

VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", sys.prefix)) / "bin"


def _tool(name: str) -> str:
    return shutil.which(name) or str(VENV_BIN / name)


GALAXY = _tool("ansible-galaxy")
PLAYBOOK = _tool("ansible-playbook")
ANSIBLE_DOC = _tool("ansible-doc")
ANSIBLE_TEST = _tool("ansible-test")
HELPER = "/usr/lib/web/bind-helper"
MODULES = ("capsnap.fleet.capsnap_declare", "capsnap.fleet.capsnap_facts")

pytestmark = [needs_root,
              pytest.mark.skipif(not os.path.exists(PLAYBOOK), reason="ansible-core missing")]

PLAY = """\
- hosts: all
  gather_facts: false
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


def python_module_debs(request: pytest.FixtureRequest) -> list[Path]:
    """The .deb that puts capsnap's Python package on a host: python3-capsnap once the
    package is split (session fixture capsnap_debs), else the one capsnap .deb."""
    try:
        debs = list(request.getfixturevalue("capsnap_debs"))
    except pytest.FixtureLookupError:
        return [request.getfixturevalue("capsnap_deb")]
    return [deb for deb in debs if deb.name.startswith("python3-capsnap_")]


@contextmanager
def overlay_seeing(top: Path, base: Path) -> Iterator[Path]:
    """An overlay of this machine in which `base` (pytest's temporary directory) is bound in
    at its own path, so that scratch roots, the collection and the play's results have the
    same paths inside and outside."""
    if not overlay_supported():
        pytest.skip("no overlayfs here")
    with overlay_system(top) as root:
        if not (root / str(PLAYBOOK).lstrip("/")).exists():
            pytest.skip(f"{PLAYBOOK} is not on the root filesystem")
        view = root / str(base).lstrip("/")
        view.mkdir(parents=True)
        subprocess.run(["mount", "--bind", str(base), str(view)], check=True)
        try:
            yield root
        finally:
            subprocess.run(["umount", "-l", str(view)], check=False)


@pytest.fixture(scope="module")
def system(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An overlay of this machine with capsnap's Python package installed by dpkg from its .deb.

    Ansible runs chrooted in there: the modules import the capsnap that dpkg
    installed, and ansible's own temporary files stay in the overlay.
    """
    top = tmp_path_factory.mktemp("ansible-overlay") / "ov"
    with overlay_seeing(top, tmp_path_factory.getbasetemp()) as root:
        debs = [put(root, deb) for deb in python_module_debs(request)]
        assert debs
        done = inside(root, "dpkg", "-i", *debs)
        assert done.returncode == 0, done.stdout + done.stderr
        yield root


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


def play(system: Path, tmp_path: Path, collections: Path, hosts: dict[str, Path], caps: str,
         *extra: str, target: str = HELPER,
         interpreter: str = "/usr/bin/python3") -> dict[str, object]:
    """Run the play inside `system`; per host: changed count, and what the modules returned."""
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("".join(
        f"{name} ansible_connection=local ansible_python_interpreter={interpreter} "
        f"capsnap_root={root}\n" for name, root in hosts.items()))
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY.format())
    out = tmp_path / "results"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    env = {"ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "False"}
    done = inside(system, PLAYBOOK, "-i", str(inventory), str(playbook), "-e", f"caps={caps}",
                  "-e", f"target={target}", "-e", f"out={out}", *extra, env=env)
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


def test_idempotent_check_mode_and_drift_repair(system: Path, tmp_path: Path,
                                                collections: Path,
                                                fleet: dict[str, Path]) -> None:
    checked = play(system, tmp_path, collections, fleet, "cap_net_bind_service=+ep", "--check",
                   "--diff")
    assert changed(checked) == {"host1": 1, "host2": 1, "localhost": 1}
    for root in fleet.values():
        assert getxattr_or_none(root / HELPER.lstrip("/")) is None
        assert not (root / "etc/capsnap/capabilities.d").exists()
    diff = host(checked, "host1")["declared"]["diff"]
    assert "on disk: none" in diff["before"]
    assert "declared: cap_net_bind_service=ep" in diff["after"]

    first = play(system, tmp_path, collections, fleet, "cap_net_bind_service=+ep")
    assert changed(first) == {"host1": 1, "host2": 1, "localhost": 1}
    for root in fleet.values():
        out = subprocess.run(["getcap", str(root / HELPER.lstrip("/"))], capture_output=True,
                             text=True).stdout
        assert out.endswith(" cap_net_bind_service=ep\n")

    second = play(system, tmp_path, collections, fleet, "cap_net_bind_service=ep")  # same set
    assert changed(second) == {"host1": 0, "host2": 0, "localhost": 0}
    facts = host(second, "host1")["facts"]
    assert facts["drifted"] is False
    assert [d["path"] for d in facts["declarations"]["local"]] == [HELPER]
    assert facts["declarations"]["local"][0]["owner"] == "web"

    # A package reinstall on host2 drops the capability: facts report drift...
    dpkg_install(fleet["host2"], tmp_path / "debs" / "web.deb")
    third = play(system, tmp_path, collections, fleet, "cap_net_bind_service=ep", "--check")
    host2 = host(third, "host2")["facts"]
    assert host2["drifted"] is True
    assert host2["drift"][0]["path"] == HELPER and host2["drift"][0]["status"] == "drifted"
    assert changed(third) == {"host1": 0, "host2": 1, "localhost": 0}
    # ...and rerunning the play repairs it.
    fourth = play(system, tmp_path, collections, fleet, "cap_net_bind_service=ep")
    assert changed(fourth) == {"host1": 0, "host2": 1, "localhost": 0}
    assert getxattr_or_none(fleet["host2"] / HELPER.lstrip("/")) is not None


@pytest.mark.parametrize(("path", "caps", "message"), [
    (HELPER, "cap_net_bind_servic=ep", "unknown capability name 'cap_net_bind_servic'"),
    ("usr/lib/web/bind-helper", "cap_net_bind_service=ep", "is not absolute"),
    ("/usr/bin/python3-copy", "cap_net_bind_service=ep", "Python interpreter"),
])
def test_bad_input_fails_with_capsnaps_message(system: Path, tmp_path: Path,
                                               collections: Path,
                                               fleet: dict[str, Path], path: str, caps: str,
                                               message: str) -> None:
    root = fleet["localhost"]
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(os.path.realpath("/usr/bin/python3"), root / "usr/bin/python3-copy")
    (root / "usr/bin/python3-copy").chmod(0o755)
    result = play(system, tmp_path, collections, {"localhost": root}, caps, target=path)
    declared = host(result, "localhost")["declared"]
    assert declared["failed"] is True
    assert message in declared["msg"] and "\n" not in declared["msg"]
    assert changed(result) == {"localhost": 0}
    assert not (root / "etc/capsnap/capabilities.d").exists()
    assert getxattr_or_none(root / "usr/bin/python3-copy") is None
    assert getxattr_or_none(root / HELPER.lstrip("/")) is None


def test_found_where_the_packages_put_it_by_an_interpreter_that_misses_it(
        system: Path, tmp_path: Path, collections: Path, fleet: dict[str, Path]) -> None:
    # `python3 -S` has no dist-packages on sys.path: the normal import fails, as
    # for an interpreter the package was not built for, and the modules find
    # capsnap where python3-capsnap installed it.
    nosite = tmp_path / "python3-nosite"
    nosite.write_text('#!/bin/sh\nexec /usr/bin/python3 -S "$@"\n')
    nosite.chmod(0o755)
    assert inside(system, str(nosite), "-c", "import capsnap").returncode != 0
    result = play(system, tmp_path, collections, {"localhost": fleet["localhost"]},
                  "cap_net_bind_service=ep", interpreter=str(nosite))
    assert changed(result) == {"localhost": 1}
    assert host(result, "localhost")["facts"]["drifted"] is False
    assert getxattr_or_none(fleet["localhost"] / HELPER.lstrip("/")) is not None


def test_works_where_capsnap_came_from_its_rpm(tmp_path: Path, collections: Path,
                                               fleet: dict[str, Path], capsnap_rpm: Path,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    with overlay_seeing(tmp_path / "ov", tmp_path_factory.getbasetemp()) as root:
        assert inside(root, "rpm", "--initdb").returncode == 0
        done = inside(root, "rpm", "-i", "--nodeps", put(root, capsnap_rpm))
        assert done.returncode == 0, done.stdout + done.stderr
        result = play(root, tmp_path, collections, {"localhost": fleet["localhost"]},
                      "cap_net_bind_service=ep")
    assert changed(result) == {"localhost": 1}
    assert host(result, "localhost")["facts"]["drifted"] is False
    assert getxattr_or_none(fleet["localhost"] / HELPER.lstrip("/")) is not None


def test_without_capsnap_the_task_fails_with_ansibles_message(tmp_path: Path,
                                                              collections: Path) -> None:
    """On this machine itself, where capsnap is not installed for /usr/bin/python3."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(["/usr/bin/python3", "-c", "import capsnap"], env=env,
                           capture_output=True)
    spec = importlib.util.spec_from_file_location(
        "capsnap_import", REPO / "ansible/plugins/module_utils/capsnap_import.py")
    assert spec is not None and spec.loader is not None
    locate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(locate)
    if probe.returncode == 0 or any(Path(place, "capsnap").exists()
                                    for place in locate.install_locations()):
        pytest.skip("capsnap is installed on this machine")
    env.update(HOME=str(tmp_path), ANSIBLE_COLLECTIONS_PATH=str(collections),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="False")
    done = subprocess.run([_tool("ansible"), "localhost", "-c", "local", "-e",
                           "ansible_python_interpreter=/usr/bin/python3", "-m",
                           "capsnap.fleet.capsnap_facts", "-a", f"root={tmp_path}"],
                          capture_output=True, text=True, env=env)
    assert done.returncode != 0
    assert "Failed to import the required Python library (capsnap)" in done.stdout
    assert "This is required to read and set file capabilities." in done.stdout


def test_module_utils_appends_an_install_location_only_when_it_holds_capsnap(
        tmp_path: Path) -> None:
    """capsnap where the rpm of capsnap 0.1.0 put it, outside sys.path."""
    location = tmp_path / "usr/share/capsnap/python"
    shutil.copytree(SRC / "capsnap", location / "capsnap")
    script = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location(
    "capsnap_import", {str(REPO / "ansible/plugins/module_utils/capsnap_import.py")!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
before = list(sys.path)
missing = mod.find_capsnap([{str(tmp_path / "empty")!r}])
unchanged = sys.path == before
found = mod.find_capsnap([{str(tmp_path / "empty")!r}, {str(location)!r}])
import capsnap
print(json.dumps({{"missing": missing, "unchanged": unchanged, "found": found,
                  "file": capsnap.__file__, "last": sys.path[-1]}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(VENV_BIN / "python"), "-c", script], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert "No module named 'capsnap'" in got["missing"] and got["unchanged"]
    assert got["found"] is None
    assert got["file"] == str(location / "capsnap/__init__.py")
    assert got["last"] == str(location)


def test_ansible_doc_renders_both_modules(collections: Path) -> None:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1")
    for module in MODULES:
        text = subprocess.run([ANSIBLE_DOC, module], capture_output=True, text=True, env=env)
        assert text.returncode == 0 and not text.stderr, text.stderr
        assert f"MODULE {module} " in text.stdout
    listed = subprocess.run([ANSIBLE_DOC, "--json", *MODULES], capture_output=True, text=True,
                            env=env, check=True)
    docs = json.loads(listed.stdout)
    declare = docs[MODULES[0]]["doc"]
    assert declare["options"]["path"]["type"] == "path"
    assert declare["options"]["root"]["type"] == "path"
    assert declare["attributes"]["check_mode"]["support"] == "full"
    assert declare["attributes"]["diff_mode"]["support"] == "full"
    facts = docs[MODULES[1]]["doc"]
    assert facts["options"]["root"]["type"] == "path"
    assert facts["attributes"]["facts"]["support"] == "full"
    for module in MODULES:
        doc = docs[module]["doc"]
        assert {"module": "community.general.capabilities"}.items() <= next(
            s for s in doc["seealso"] if s.get("module") == "community.general.capabilities"
        ).items()
        returned = docs[module]["return"]
        leaves = _return_leaves(returned)
        assert leaves and all("sample" in value for value in leaves), module


def _return_leaves(returned: dict[str, Any]) -> list[dict[str, Any]]:
    """Documented return values without a `contains:` (those must show a sample)."""
    leaves = []
    for value in returned.values():
        if "contains" in value:
            leaves += _return_leaves(value["contains"])
        else:
            leaves.append(value)
    return leaves


def test_the_collection_carries_its_licence(collections: Path) -> None:
    tarball = next(collections.parent.glob("capsnap-fleet-*.tar.gz"))
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        licence = tar.extractfile("LICENSES/GPL-2.0-or-later.txt")
        assert licence is not None
        text = licence.read()
        listing = tar.extractfile("MANIFEST.json")
        assert listing is not None
        manifest = json.loads(listing.read())
    assert b"GNU GENERAL PUBLIC LICENSE\n                       Version 2, June 1991" in text
    if (REPO / "COPYING").exists():
        assert text == (REPO / "COPYING").read_bytes()
    assert "plugins/module_utils/capsnap_import.py" in names
    assert manifest["collection_info"]["license"] == ["GPL-2.0-or-later"]


def test_ansible_test_sanity_passes(tmp_path: Path) -> None:
    """All of ansible-test's sanity tests for this ansible-core (the one requires_ansible names
    as the lowest), in venvs ansible-test makes and fills from the package index."""
    if not os.path.exists(ANSIBLE_TEST):
        pytest.skip("ansible-test missing")
    collection = tmp_path / "ansible_collections/capsnap/fleet"
    shutil.copytree(REPO / "ansible", collection,
                    ignore=shutil.ignore_patterns("*.tar.gz", "__pycache__"))
    cache = tmp_path / "home/.ansible/test/cache"
    cache.mkdir(parents=True)
    # ansible-test looks for get-pip under this name before it tries to download it.
    shutil.copyfile(REPO / "tests/fixtures/ansible-test/get_pip.py", cache / "get_pip_23_1_2.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HOME=str(tmp_path / "home"), ANSIBLE_NOCOLOR="1")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    started = time.monotonic()
    done = subprocess.run([ANSIBLE_TEST, "sanity", "--local", "--python", version,
                           "--requirements", "--color", "no"], cwd=collection,
                          capture_output=True, text=True, env=env)
    took = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    ran = re.findall(r'^Running sanity test "([^"]+)"', output, re.MULTILINE)
    assert {"ansible-doc", "validate-modules", "yamllint", "import", "compile", "pylint",
            "pep8", "runtime-metadata", "use-argspec-type-path"} <= set(ran), ran
    assert "ERROR" not in output
    print(f"ansible-test sanity: {len(ran)} tests in {took:.0f} s")
    runtime = (collection / "meta/runtime.yml").read_text()
    from ansible.release import __version__

    claimed = re.search(r'requires_ansible: ">=(\d+\.\d+)\.\d+"', runtime)
    assert claimed is not None
    assert __version__.startswith(claimed.group(1) + "."), \
        "requires_ansible must name the ansible-core these sanity tests ran on"
