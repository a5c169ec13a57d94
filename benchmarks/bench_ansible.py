"""Comparison (issue 7): capsnap.fleet.capsnap_declare against community.general.capabilities.

The same two-task play (two files, one capability each, written as `+ep`, the
way community.general's documentation shows) is run twice against unchanged
files, and the `changed` count of the second run is reported for each module.
Needs the `ansible` bundle (for community.general), e.g. in its own venv:

    python3 -m venv /tmp/ansfull && /tmp/ansfull/bin/pip install ansible==10.7.0
    .venv/bin/python benchmarks/bench_ansible.py /tmp/ansfull/bin
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECAP = re.compile(r"^localhost\s+: ok=\d+\s+changed=(\d+)", re.MULTILINE)

COMMUNITY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - community.general.capabilities:
        path: {a}
        capability: cap_net_raw+ep
        state: present
    - community.general.capabilities:
        path: {b}
        capability: cap_net_bind_service+ep
        state: present
"""

CAPSNAP = """\
- hosts: localhost
  gather_facts: false
  environment:
    PYTHONPATH: {src}
  tasks:
    - capsnap.fleet.capsnap_declare:
        path: {a}
        capabilities: cap_net_raw+ep
        root: {root}
    - capsnap.fleet.capsnap_declare:
        path: {b}
        capabilities: cap_net_bind_service+ep
        root: {root}
"""


def run(bin_dir: Path, playbook: Path, env: dict[str, str]) -> int:
    done = subprocess.run([str(bin_dir / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=/usr/bin/python3", str(playbook)],
                          capture_output=True, text=True, env=env)
    match = RECAP.search(done.stdout)
    if done.returncode != 0 or match is None:
        sys.exit(done.stdout + done.stderr)
    return int(match.group(1))


def main() -> None:
    bin_dir = Path(sys.argv[1])
    version = subprocess.run([str(bin_dir / "ansible"), "--version"], capture_output=True,
                             text=True, check=True).stdout.splitlines()[0]
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        top.chmod(0o755)
        subprocess.run([str(bin_dir / "ansible-galaxy"), "collection", "build",
                        str(REPO / "ansible"), "--output-path", str(top)], check=True,
                       capture_output=True)
        tarball = next(top.glob("capsnap-fleet-*.tar.gz"))
        subprocess.run([str(bin_dir / "ansible-galaxy"), "collection", "install", str(tarball),
                        "-p", str(top / "collections")], check=True, capture_output=True)
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="False",
                   ANSIBLE_COLLECTIONS_PATH=f"{top / 'collections'}:{bin_dir.parent}/lib")
        rows = []
        for name, template in (("community.general.capabilities", COMMUNITY),
                               ("capsnap.fleet.capsnap_declare", CAPSNAP)):
            files = top / name
            files.mkdir()
            a, b = files / "a", files / "b"
            for f in (a, b):
                shutil.copyfile("/bin/true", f)
                f.chmod(0o755)
            # capsnap declares inside a root: the files' directory stands in for one.
            playbook = top / f"{name}.yml"
            playbook.write_text(template.format(a=a.name if name.startswith("capsnap") else a,
                                                b=b.name if name.startswith("capsnap") else b,
                                                src=REPO / "src", root=files)
                                .replace("path: a", "path: /a").replace("path: b", "path: /b"))
            first = run(bin_dir, playbook, env)
            second = run(bin_dir, playbook, env)
            rows.append((name, first, second))
        print(version)
        for name, first, second in rows:
            print(f"{name:32} first run changed={first}  second run changed={second}")


if __name__ == "__main__":
    main()
