"""Real Debian packages that set capabilities in their postinst, installed
before capsnap, in a throw-away overlay of this machine: every loss a dpkg
run causes is in `capsnap diff`, attributed, with exit 1.

The .debs come from Debian's archive once per test session (apt-get
download inside an overlay); the test skips when the archive cannot be
reached.  Nothing of the packages is kept in the repository.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import needs_root
from tests.overlay import inside, overlay_supported, overlay_system, put

pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("dpkg-buildpackage") is None,
                                 reason="dpkg-dev missing"),
              pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt missing")]

# Each sets cap_net_raw in its postinst (REFERENCE.md); liboping0 is oping's
# missing dependency for the dpkg -i / apt-get -f install case.
PACKAGES = ("iputils-ping", "iputils-clockdiff", "fping", "mtr-tiny", "oping", "liboping0")


@pytest.fixture(scope="session")
def archive_debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The packages' .debs from Debian's archive, downloaded once per session."""
    if not overlay_supported():
        pytest.skip("no overlayfs here")
    out = tmp_path_factory.mktemp("archive-debs")
    with overlay_system(tmp_path_factory.mktemp("download") / "ov") as root:
        inside(root, "apt-get", "update", "-q")
        got = inside(root, "sh", "-c", "mkdir -p /tmp/d && cd /tmp/d && apt-get download -q "
                     + " ".join(PACKAGES))
        if got.returncode != 0:
            pytest.skip(f"Debian's archive cannot be reached: {got.stderr[-300:]}")
        for deb in (root / "tmp/d").glob("*.deb"):
            shutil.copy(deb, out)
    return {name: next(out.glob(f"{name}_*.deb")) for name in PACKAGES}


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory, archive_debs: dict[str, Path],
            capsnap_debs: list[Path]) -> Iterator[Path]:
    """An overlay where the real packages were installed before capsnap."""
    with overlay_system(tmp_path_factory.mktemp("real") / "ov") as root:
        for deb in archive_debs.values():
            put(root, deb)
        # apt finds them in its cache (the archive, if its lists are newer).
        for deb in archive_debs.values():
            shutil.copy(deb, root / "var/cache/apt/archives")
        first = [f"/tmp/{archive_debs[n].name}" for n in
                 ("iputils-ping", "iputils-clockdiff", "fping", "mtr-tiny")]
        done = inside(root, "dpkg", "-i", *first)
        assert done.returncode == 0, done.stdout + done.stderr
        done = inside(root, "dpkg", "-i", *(put(root, deb) for deb in capsnap_debs))
        assert done.returncode == 0, done.stdout + done.stderr
        yield root


def run(root: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return inside(root, *cmd)


def ok(root: Path, *cmd: str) -> str:
    done = inside(root, *cmd)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def diff(root: Path) -> tuple[int, dict[str, dict[str, object]], str]:
    """capsnap diff of the last transaction: exit code, changes by path, text."""
    text = inside(root, "capsnap", "diff")
    data = inside(root, "capsnap", "diff", "--json")
    assert text.returncode == data.returncode, text.stderr + data.stderr
    changes = {c["path"]: c for c in json.loads(data.stdout)["changes"]}
    return text.returncode, changes, text.stdout


def getcap(root: Path, path: str) -> str:
    return inside(root, "getcap", path).stdout.split(" ", 1)[-1].strip()


def version(root: Path, package: str) -> str:
    return ok(root, "dpkg-query", "-W", "-f", "${Version}", package)


def assert_lost(changes: dict[str, dict[str, object]], path: str, package: str,
                label: str) -> bool:
    """The loss is reported, with package and versions; whether capsnap put
    the capability back (a confirmed dpkg-script declaration) is returned."""
    change = changes[path]
    assert change["kind"] in ("lost", "replaced"), change
    before, after = change["before"], change["after"]
    assert isinstance(before, dict) and isinstance(after, dict)
    restored = change.get("capsnap") == "restored"
    if not restored:
        assert change["survived"] in (None, False)
        assert after["capabilities"] is None, change
    assert before["capabilities"], change
    assert (before["package"], after["package"]) == (package, package), change
    assert f"{before['version']} -> {after['version']}" == label or \
        before["version"] == after["version"] == label, change
    return restored


def test_every_loss_of_a_real_package_is_in_diff(machine: Path,
                                                 archive_debs: dict[str, Path]) -> None:
    started = time.monotonic()
    root = machine
    debs = {name: f"/tmp/{deb.name}" for name, deb in archive_debs.items()}
    ping_version, fping_version = version(root, "iputils-ping"), version(root, "fping")

    # The baseline taken when capsnap was installed counts each file once:
    # as many as getcap finds over the real directories (merged /usr).
    real = [d for d in ("/usr", "/opt", "/srv") if (root / d.lstrip("/")).is_dir()
            and not (root / d.lstrip("/")).is_symlink()]
    getcap_lines = [ln for ln in ok(root, "getcap", "-r", *real).splitlines() if ln.strip()]
    assert any(ln.startswith("/usr/bin/ping ") for ln in getcap_lines)
    snaps = json.loads(ok(root, "capsnap", "snapshots", "--json"))
    baseline = next(s for s in snaps if s["label"] == "baseline")
    assert baseline["scope"] == "full"
    assert baseline["entries"] == len(getcap_lines), (snaps, getcap_lines)
    full = ok(root, "capsnap", "snapshot")
    assert full.startswith(f"snapshot {baseline['id'] + 1}: {len(getcap_lines)} files")

    # 1a. Set before capsnap was installed, lost by dpkg --unpack.
    run(root, "dpkg", "--unpack", debs["fping"])
    status, changes, text = diff(root)
    assert status == 1, text
    # fping's postinst set it, seen on disk: capsnap puts it back at once.
    restored = assert_lost(changes, "/usr/bin/fping", "fping", fping_version)
    assert getcap(root, "/usr/bin/fping") == ("cap_net_raw=ep" if restored else "")
    assert text.startswith("transaction ") and " (dpkg): fping " in text.splitlines()[0], text
    ok(root, "dpkg", "--configure", "-a")

    # 1c. Lost and regained, then lost again: still tracked.
    clockdiff = "/usr/bin/clockdiff"
    run(root, "dpkg", "--unpack", debs["iputils-clockdiff"])
    status, changes, text = diff(root)
    assert status == 1 and clockdiff in changes, text
    restored = changes[clockdiff].get("capsnap") == "restored"
    ok(root, "dpkg", "--configure", "-a")
    if not restored:  # regained by its postinst, not by capsnap
        status, changes, text = diff(root)
        assert status == 1, text
        assert changes[clockdiff]["kind"] == "gained"
    assert getcap(root, clockdiff) == "cap_net_raw=ep"
    run(root, "dpkg", "--unpack", debs["iputils-clockdiff"])
    status, changes, text = diff(root)
    assert status == 1, text
    assert_lost(changes, clockdiff, "iputils-clockdiff", version(root, "iputils-clockdiff"))
    ok(root, "dpkg", "--configure", "-a")

    # 1b. Set by hand since the last snapshot, lost by a dpkg -i downgrade
    # to the real .deb repacked with a lower version.
    mtr_version = version(root, "mtr-tiny")
    ok(root, "setcap", "cap_net_raw=ep", "/usr/bin/mtr")
    ok(root, "dpkg-deb", "-R", debs["mtr-tiny"], "/tmp/mtr")
    control = root / "tmp/mtr/DEBIAN/control"
    control.write_text(control.read_text().replace(f"Version: {mtr_version}\n",
                                                   f"Version: {mtr_version}~old1\n"))
    ok(root, "dpkg-deb", "-b", "/tmp/mtr", "/tmp/mtr-old.deb")
    ok(root, "dpkg", "-i", "/tmp/mtr-old.deb")
    assert getcap(root, "/usr/bin/mtr") == ""
    status, changes, text = diff(root)
    assert status == 1, text
    assert_lost(changes, "/usr/bin/mtr", "mtr-tiny", f"{mtr_version} -> {mtr_version}~old1")
    assert f"mtr-tiny {mtr_version} -> {mtr_version}~old1" in text.splitlines()[0]

    # 1d. dpkg -i with a missing dependency, then apt-get -f install: the
    # capabilities oping's postinst sets then are tracked, and their loss
    # in a later dpkg --unpack is reported.
    assert run(root, "dpkg", "-i", debs["oping"]).returncode != 0
    ok(root, "apt-get", "-f", "install", "-y", "-q")
    assert getcap(root, "/usr/bin/oping") == "cap_net_raw=ep"
    status, changes, text = diff(root)
    assert status == 1 and "/usr/bin/oping" in changes, text
    run(root, "dpkg", "--unpack", debs["oping"])
    status, changes, text = diff(root)
    assert status == 1, text
    for path in ("/usr/bin/oping", "/usr/bin/noping"):
        assert_lost(changes, path, "oping", version(root, "oping"))
    ok(root, "dpkg", "--configure", "-a")

    # One file, one name: a reinstall of iputils-ping (which lists /bin/ping)
    # gives exactly one row for ping, by dpkg and by apt.
    for reinstall in (("dpkg", "-i", debs["iputils-ping"]),
                      ("apt-get", "install", "-y", "-q", "--reinstall", "iputils-ping")):
        ok(root, *reinstall)
        status, changes, text = diff(root)
        assert [p for p in changes if p.endswith("/ping")] == ["/usr/bin/ping"], text
        ping = changes["/usr/bin/ping"]
        assert ping["kind"] == "replaced" and ping["survived"] is True, text
        assert ping["before"]["package"] == ping["after"]["package"] == "iputils-ping"
        assert ping["after"]["version"] == ping_version
        assert [ln for ln in text.splitlines() if "ping" in ln and "replaced" in ln] \
            and " /bin/ping " not in text, text
    assert getcap(root, "/usr/bin/ping") == "cap_net_raw=ep"

    # dpkg -r: the loss is a removal; the path leaves tracking with its file.
    ok(root, "dpkg", "-r", "iputils-clockdiff")
    status, changes, text = diff(root)
    assert status == 1 and changes[clockdiff]["kind"] == "removed", text
    db = sqlite3.connect(root / "var/lib/capsnap/capsnap.db")
    tracked = {bytes(r[0]).decode() for r in db.execute("SELECT path FROM tracked")}
    db.close()
    assert clockdiff not in tracked
    assert {"/usr/bin/ping", "/usr/bin/fping", "/usr/bin/mtr", "/usr/bin/noping"} <= tracked

    # A transaction that changed no capability says so.
    ok(root, "dpkg", "-i", debs["liboping0"])
    status, changes, text = diff(root)
    assert status == 0 and text.splitlines()[-1] == "no capability changes", text
    # Declaring /bin/ping and /usr//bin/./ping is one declaration of /usr/bin/ping.
    ok(root, "capsnap", "declare", "/bin/ping", "cap_net_raw=ep")
    ok(root, "capsnap", "declare", "/usr//bin/./ping", "cap_net_raw=ep")
    listed = json.loads(ok(root, "capsnap", "list", "--json"))
    local = [d for d in listed if d.get("source") == "local"] if isinstance(listed, list) \
        else listed
    assert json.dumps(local).count('"/usr/bin/ping"') == 1, listed
    assert '"/bin/ping"' not in json.dumps(listed)
    ok(root, "capsnap", "undeclare", "/bin/ping")
    # What iputils-ping's postinst sets stays listed (source dpkg-script).
    after = json.loads(ok(root, "capsnap", "list", "--json"))
    entries = after if isinstance(after, list) else after.get("declarations", [])
    assert not [d for d in entries if isinstance(d, dict) and d.get("source") == "local"
                and d.get("path") == "/usr/bin/ping"], after
    print(f"real-package scenario: {time.monotonic() - started:.1f} s")
