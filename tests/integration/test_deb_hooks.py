"""capsnap's own .deb: built with dpkg-buildpackage, checked by lintian, and its
apt, dpkg and trigger hooks exercised for real in an overlay of this machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, needs_root
from tests.overlay import inside, install_debs, overlay_supported, overlay_system, put
from tests.packaging import build_deb

pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("dpkg-buildpackage") is None,
                                 reason="dpkg-dev missing"),
              pytest.mark.skipif(shutil.which("dh") is None, reason="debhelper missing")]

HELPER = "/usr/lib/foo/bind-helper"


def lintian_complaints(*files: Path) -> list[str]:
    """lintian's E: and W: tags, pedantic, informational and experimental
    ones included, over the given .debs or .changes."""
    if shutil.which("lintian") is None:
        pytest.skip("lintian missing")
    lint = subprocess.run(["lintian", "-I", "-E", "--pedantic", "--tag-display-limit", "0",
                           *map(str, files)], capture_output=True, text=True)
    assert lint.returncode in (0, 2), lint.stderr
    return [line for line in lint.stdout.splitlines() if line[:2] in ("E:", "W:")]


def fields(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True,
                          check=True).stdout


def contents(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                          check=True).stdout


def test_three_packages_pass_lintian_pedantic(capsnap_debs: list[Path]) -> None:
    assert lintian_complaints(*capsnap_debs) == []
    capsnap, dh, module = capsnap_debs
    dh_fields = fields(dh)
    for line in ("Section: devel", "Multi-Arch: foreign", "Provides: dh-sequence-capsnap"):
        assert line in dh_fields
    assert "libdebhelper-perl" in dh_fields and "python3-capsnap (= " in dh_fields
    assert "Provides" not in fields(capsnap) and "perl" not in fields(capsnap)
    wanted = {
        capsnap: ("./usr/bin/capsnap", "./etc/apt/apt.conf.d/05capsnap",
                  "./etc/dpkg/dpkg.cfg.d/capsnap", "./etc/capsnap/capsnap.conf",
                  "./usr/share/man/man1/capsnap.1.gz",
                  "./usr/share/bash-completion/completions/capsnap"),
        dh: ("./usr/bin/dh_capsnap", "./usr/bin/dh_capsnap_control",
             "./usr/share/perl5/Debian/Debhelper/Sequence/capsnap.pm",
             "./usr/share/debhelper/autoscripts/postinst-capsnap",
             "./usr/share/man/man1/dh_capsnap.1.gz"),
        module: ("./usr/lib/python3/dist-packages/capsnap/cli.py",
                 "./usr/lib/python3/dist-packages/capsnap/templates/deb/postinst.j2"),
    }
    for deb, paths in wanted.items():
        listed = contents(deb)
        for path in paths:
            assert path in listed, (deb.name, path)
    # Build chroots get no hooks: nothing of the runtime in dh-capsnap.
    assert "./etc/" not in contents(dh)
    triggers = subprocess.run(["dpkg-deb", "-I", str(capsnap), "triggers"],
                              capture_output=True, text=True, check=True).stdout
    interests = [line for line in triggers.splitlines() if line.startswith("interest")]
    assert interests == ["interest-noawait capsnap-reapply"]


@pytest.fixture
def system(tmp_path: Path, capsnap_debs: list[Path]) -> Iterator[Path]:
    """An overlay of this machine with capsnap's .debs installed by dpkg."""
    if not overlay_supported():
        pytest.skip("no overlayfs here")
    with overlay_system(tmp_path / "ov") as root:
        done = install_debs(root, capsnap_debs)
        assert done.returncode == 0, done.stdout + done.stderr
        yield root


def foo(out: Path, version: str, extra: list[str] | None = None,
        files: dict[str, str | Path | bytes] | None = None) -> Path:
    return build_deb(out, "foo", version, files or {HELPER: "/bin/true"},
                     file_capabilities=[f"{HELPER} cap_net_bind_service=ep", *(extra or [])])


def getcap(root: Path, path: str) -> str:
    return subprocess.run(["getcap", str(root / path.lstrip("/"))], capture_output=True,
                          text=True).stdout.split(" ", 1)[-1].strip()


def last_diff(root: Path) -> dict[str, object]:
    result = inside(root, "capsnap", "diff", "--json")
    assert result.returncode in (0, 1), result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_dpkg_upgrade_ends_restored_and_diff_shows_it(tmp_path: Path, system: Path) -> None:
    root = system
    v1, v2 = foo(tmp_path, "1.0"), foo(tmp_path, "1.1")
    first = inside(root, "dpkg", "-i", put(root, v1))
    assert first.returncode == 0, first.stderr
    assert getcap(root, HELPER) == "cap_net_bind_service=ep"

    upgraded = inside(root, "dpkg", "-i", put(root, v2))
    assert upgraded.returncode == 0, upgraded.stderr
    assert getcap(root, HELPER) == "cap_net_bind_service=ep"  # no manual step
    assert inside(root, "capsnap", "check").returncode == 0

    diff = last_diff(root)
    assert diff["transaction"]["manager"] == "dpkg"  # type: ignore[index]
    assert {"package": "foo", "old": "1.0", "new": "1.1"} in \
        diff["transaction"]["packages"]  # type: ignore[index]
    change = {c["path"]: c for c in diff["changes"]}[HELPER]  # type: ignore[attr-defined]
    assert change["kind"] == "replaced" and change["capsnap"] == "restored"
    assert (change["before"]["version"], change["after"]["version"]) == ("1.0", "1.1")
    text = inside(root, "capsnap", "diff").stdout
    assert "replaced, caps lost, restored by capsnap" in text and "foo 1.0 -> 1.1" in text
    log = (root / "var/log/capsnap.log").read_text()
    assert f'path="{HELPER}"' in log and 'result="restored"' in log

    # A reinstall of the same version changes no version but still drops it.
    reinstalled = inside(root, "dpkg", "-i", put(root, v2))
    assert reinstalled.returncode == 0, reinstalled.stderr
    assert getcap(root, HELPER) == "cap_net_bind_service=ep"


def test_what_changed_before_a_dpkg_run_is_not_laid_to_it(tmp_path: Path,
                                                          system: Path) -> None:
    """dpkg's pre-invoke hook takes no snapshot (it is sh): post-invoke tells
    the files the run left alone by their ctime, older than its marker."""
    root = system
    assert inside(root, "dpkg", "-i", put(root, foo(tmp_path, "1.0"))).returncode == 0
    assert getcap(root, HELPER) == "cap_net_bind_service=ep"
    # The administrator strips it between two runs: not the next run's doing.
    assert subprocess.run(["setcap", "-r", str(root / HELPER.lstrip("/"))]).returncode == 0
    other = build_deb(tmp_path, "other", "2", {"/usr/bin/other": "/bin/true"})
    done = inside(root, "dpkg", "-i", put(root, other))
    assert done.returncode == 0, done.stderr
    diff = last_diff(root)
    assert {"package": "other", "old": None, "new": "2"} in \
        diff["transaction"]["packages"]  # type: ignore[index]
    assert HELPER not in {c["path"] for c in diff["changes"]}  # type: ignore[attr-defined]
    # Left alone (the run did not touch it), and check still says so.
    assert getcap(root, HELPER) == ""
    assert inside(root, "capsnap", "check").returncode == 1
    state = root / "var/lib/capsnap"
    assert not (state / "transaction-open").exists()
    assert not (state / "dpkg-status.before").exists()


def test_local_declaration_on_another_packages_file(tmp_path: Path, system: Path) -> None:
    root = system
    v1 = build_deb(tmp_path, "nodeish", "18.1", {"/usr/bin/nodeish": "/bin/true"})
    v2 = build_deb(tmp_path, "nodeish", "18.2", {"/usr/bin/nodeish": "/bin/true"})
    assert inside(root, "dpkg", "-i", put(root, v1)).returncode == 0
    declared = inside(root, "capsnap", "declare", "/usr/bin/nodeish",
                      "cap_net_bind_service=+ep", "--reason", "serves port 443")
    assert declared.returncode == 0, declared.stderr
    assert inside(root, "capsnap", "reapply").returncode == 0
    upgraded = inside(root, "dpkg", "-i", put(root, v2))
    assert upgraded.returncode == 0, upgraded.stderr
    assert getcap(root, "/usr/bin/nodeish") == "cap_net_bind_service=ep"
    change = {c["path"]: c for c in last_diff(root)["changes"]}[  # type: ignore[attr-defined]
        "/usr/bin/nodeish"]
    assert change["capsnap"] == "restored"
    assert (change["before"]["version"], change["after"]["version"]) == ("18.1", "18.2")


def test_apt_get_install_of_an_upgrade(tmp_path: Path, system: Path) -> None:
    root = system
    v1, v2 = foo(tmp_path, "1.0"), foo(tmp_path, "1.1")
    assert inside(root, "dpkg", "-i", put(root, v1)).returncode == 0
    apt = inside(root, "apt-get", "install", "-y", put(root, v2))
    assert apt.returncode == 0, apt.stdout[-2000:] + apt.stderr
    assert getcap(root, HELPER) == "cap_net_bind_service=ep"
    diff = last_diff(root)
    transaction = diff["transaction"]
    assert transaction["manager"] == "apt"  # type: ignore[index]
    assert {"package": "foo", "old": "1.0", "new": "1.1"} in \
        transaction["packages"]  # type: ignore[index]
    change = {c["path"]: c for c in diff["changes"]}[HELPER]  # type: ignore[attr-defined]
    assert change["capsnap"] == "restored"
    # One transaction for apt's several dpkg runs, not one per dpkg run.
    snapshots = json.loads(inside(root, "capsnap", "snapshots", "--json").stdout)
    apt_tid = [s for s in snapshots if s["transaction"] == diff["to"]["transaction"]]  # type: ignore[index]
    assert {s["phase"] for s in apt_tid} == {"before", "after"}


def test_failures_never_fail_dpkg_or_apt_unless_strict(tmp_path: Path, system: Path) -> None:
    root = system
    # Unsafe (group-writable), unknown capability name, and a missing file.
    bad = build_deb(tmp_path, "bad", "1", {"/usr/lib/bad/helper": "/bin/true"},
                    file_capabilities=["/usr/lib/bad/helper cap_net_raw=ep",
                                       "/usr/lib/bad/other cap_nonsense=ep",
                                       "/usr/lib/bad/missing cap_net_raw=ep"],
                    modes={"/usr/lib/bad/helper": 0o775})
    done = inside(root, "dpkg", "-i", put(root, bad))
    assert done.returncode == 0, done.stderr
    assert "capsnap: hook dpkg-post-invoke:" in done.stderr
    # The bad entry by number, never quoted: a field's text is anyone's.
    assert "package bad 1: File-Capabilities entry 2: invalid capability text" in done.stderr
    apt = inside(root, "apt-get", "install", "-y", "--reinstall",
                 put(root, bad))
    assert apt.returncode == 0, apt.stderr
    assert getcap(root, "/usr/lib/bad/helper") == ""

    (root / "etc/capsnap").mkdir(parents=True, exist_ok=True)
    (root / "etc/capsnap/capsnap.conf").write_text("strict = yes\n")
    strict = inside(root, "dpkg", "-i", put(root, bad))
    assert strict.returncode != 0
    assert "strict = yes" in strict.stderr


def test_removed_but_not_purged_capsnap_leaves_apt_working(tmp_path: Path,
                                                          system: Path) -> None:
    root = system
    assert inside(root, "dpkg", "-r", "capsnap").returncode == 0
    assert (root / "etc/apt/apt.conf.d/05capsnap").exists()  # a conffile: kept
    apt = inside(root, "apt-get", "install", "-y",
                 put(root, foo(tmp_path, "1.0")))
    assert apt.returncode == 0, apt.stderr
    assert inside(root, "dpkg", "-P", "capsnap").returncode == 0
    assert not (root / "etc/apt/apt.conf.d/05capsnap").exists()
    assert not os.path.exists(root / "var/lib/capsnap")


def test_installed_addon_builds_a_package_lintian_accepts(system: Path) -> None:
    """The sample package as an adopter builds it, with the installed
    dh-capsnap: Build-Depends: dh-sequence-capsnap, an arch-dependent helper
    (so a -dbgsym package) and an override_dh_gencontrol."""
    root = system
    source = root / "tmp/hello-caps"
    shutil.copytree(REPO / "tests/fixtures/hello-caps", source)
    built = inside(root, "sh", "-c", "cd /tmp/hello-caps && dpkg-buildpackage -us -uc -b")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-2000:]
    assert "dh_capsnap" in built.stdout and "dh_capsnap_control" in built.stdout
    assert "override_dh_gencontrol" in built.stdout
    deb = next((root / "tmp").glob("hello-caps_*_amd64.deb"))
    dbgsym = next((root / "tmp").glob("hello-caps-dbgsym_*_amd64.deb"))
    assert ("File-Capabilities:\n /usr/lib/hello-caps/bind-helper cap_net_bind_service=ep "
            "fallback=setuid:4755\n") in fields(deb)
    assert "Recommends: libcap2-bin" in fields(deb)
    assert "File-Capabilities" not in fields(dbgsym)
    assert lintian_complaints(*(root / "tmp").glob("hello-caps_*.changes")) == []
    man = inside(root, "man", "-w", "dh_capsnap")
    assert man.returncode == 0 and "dh_capsnap.1" in man.stdout


def test_a_package_gets_nothing_for_another_packages_file_and_loses_what_it_had(
        tmp_path: Path, system: Path) -> None:
    """The security review's reproducer (a data-only package naming
    coreutils' tail), and its removal: nothing capsnap applied stays."""
    root = system
    tool = "/etc/evil/tool"  # a conffile: dpkg -r leaves the file, with its xattr
    evil = build_deb(tmp_path, "evil-data", "1.0",
                     {"/usr/share/doc/evil-data/README": "x\n", HELPER: "/bin/true",
                      tool: "/bin/true"},
                     modes={tool: 0o755}, conffiles=[tool],
                     file_capabilities=["/usr/bin/tail cap_dac_read_search=ep",
                                        f"{HELPER} cap_net_bind_service=ep",
                                        f"{tool} cap_net_raw=ep"])
    done = inside(root, "dpkg", "-i", put(root, evil))
    assert done.returncode == 0, done.stderr
    assert getcap(root, "/usr/bin/tail") == ""
    assert getcap(root, HELPER) == "cap_net_bind_service=ep"
    assert getcap(root, tool) == "cap_net_raw=ep"
    refused = ("package evil-data 1.0: File-Capabilities entry /usr/bin/tail refused: "
               "the package does not ship that file")
    assert refused in done.stderr  # on dpkg's terminal, from its hook
    check = inside(root, "capsnap", "check")
    assert check.returncode == 1
    assert refused in check.stderr and "/usr/bin/tail" not in check.stdout
    assert refused in (root / "var/log/capsnap.log").read_text()

    removed = inside(root, "dpkg", "-r", "evil-data")
    assert removed.returncode == 0, removed.stderr
    assert not (root / HELPER.lstrip("/")).exists()
    assert (root / tool.lstrip("/")).exists()
    assert getcap(root, tool) == ""
    assert getcap(root, "/usr/bin/tail") == ""
    lines = [line for line in (root / "var/log/capsnap.log").read_text().splitlines()
             if 'result="removed"' in line]
    assert len(lines) == 1 and f'path="{tool}"' in lines[0], lines
    assert 'source="dpkg:evil-data 1.0"' in lines[0]
    assert inside(root, "capsnap", "check").returncode == 0
    records = root / "var/lib/capsnap/packages"
    assert not any('"applied"' in p.read_text() for p in records.iterdir())
