"""Nothing raw reaches a terminal or a log (security review, section 5 and 9; issue 15 item 8).

File names, symlink targets and package fields are anyone's text: an escape
sequence in one must not drive the administrator's terminal, a newline must
not forge a line of /var/log/capsnap.log, a declaration file linked to a
secret must not echo it, and a user's namespaced capability must not pass
for a real one.  Every command and hook runs on a scratch root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from capsnap import display
from capsnap.declarations.entries import escape_path, parse_lines
from capsnap.store import Store
from tests.conftest import SRC, SYSTEM_PYTHON, copy_binary, getxattr_or_none, needs_root
from tests.packaging import build_deb, dpkg_install, make_dpkg_root

pytestmark = needs_root

FORGED_STAMP = "2026-12-01T00:00:00+0000"
FORGED = (f'{FORGED_STAMP} reapply path="/usr/bin/ping" old="none" new="cap_net_raw=ep" '
          'source="dpkg:iputils-ping 3:20221126-1" result="restored"')
TERMINAL = "\x1b[2J\x1b[H\x1b[32mNo capability changes\x1b[0m"
ADVERSARY = ["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups"]


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[bytes]) -> None:
        self.status = proc.returncode
        self.out = proc.stdout.decode("utf-8", "surrogateescape")
        self.err = proc.stderr.decode("utf-8", "surrogateescape")
        self.raw = proc.stdout + proc.stderr


def capsnap(*args: str, dpkg_root: Path | None = None) -> Run:
    """capsnap as a separate process, as an administrator or dpkg runs it."""
    env = dict(os.environ, PYTHONPATH=str(SRC), LC_ALL="C.UTF-8")
    if dpkg_root is not None:
        env.update(DPKG_ROOT=str(dpkg_root), DPKG_ADMINDIR=str(dpkg_root / "var/lib/dpkg"))
    return Run(subprocess.run([SYSTEM_PYTHON, "-m", "capsnap", *args], env=env,
                              capture_output=True, check=False))


def assert_clean(data: bytes | str, what: str) -> None:
    """Lines of printable text only: no control character, C1, or byte that is not UTF-8."""
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    bad = [line for line in text.split("\n") if not line.isprintable()]
    assert not bad, f"{what}: raw control characters in {bad!r}"


def log_of(root: Path) -> str:
    log = root / "var/log/capsnap.log"
    return log.read_bytes().decode("utf-8", "surrogateescape") if log.exists() else ""


def local_file(root: Path, name: str = "local.capabilities") -> Path:
    directory = root / "etc/capsnap/capabilities.d"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_dpkg_root(tmp_path / "root")


def test_a_symlink_target_cannot_forge_log_lines(root: Path) -> None:
    (root / "srv").mkdir()
    local_file(root).write_text("/srv/tool cap_net_raw=ep\n")
    (root / "srv/tool").symlink_to(f"x\x1b[2K\r\n{FORGED}\n")

    hook = capsnap("hook", "dpkg-triggered", dpkg_root=root)
    assert hook.status == 0
    log = log_of(root)
    assert "/srv/tool" in hook.err and "/srv/tool" in log  # reported, on one line
    for text, what in ((hook.raw, "hook output"), (log, "log")):
        assert_clean(text, what)
        assert not any(line.startswith(FORGED_STAMP) for line in
                       (text.decode() if isinstance(text, bytes) else text).splitlines()), what
    for command in ("check", "reapply"):
        result = capsnap("--root", str(root), command)
        assert result.status == 1 and "/srv/tool" in result.out
        assert_clean(result.raw, command)
        assert FORGED_STAMP not in result.out.split("\n", 1)[0]
        assert not any(line.startswith(FORGED_STAMP) for line in result.out.splitlines())


def test_control_characters_in_a_package_field_are_refused_and_never_echoed(
        tmp_path: Path, root: Path) -> None:
    dpkg_install(root, build_deb(tmp_path, "evil-esc", "1.0", {"/usr/bin/foo": "/bin/true"},
                                 file_capabilities=[
                                     "/usr/lib/\\033[1A\\033[2K\\015everything-fine "
                                     "cap_net_raw=ep",
                                     "/usr/bin/foo cap_net_raw=ep"]))
    listed = capsnap("--root", str(root), "list")
    assert "/usr/lib/" not in listed.out and "/usr/bin/foo" in listed.out
    assert ("package evil-esc 1.0: File-Capabilities entry 1: the path holds a control "
            "character") in listed.err
    reapplied = capsnap("--root", str(root), "reapply")
    assert getxattr_or_none(root / "usr/bin/foo") is not None  # the good entry still counts
    hook = capsnap("hook", "dpkg-triggered", dpkg_root=root)
    for result, what in ((listed, "list"), (reapplied, "reapply"), (hook, "hook")):
        assert_clean(result.raw, what)
        assert "everything-fine" not in result.out + result.err, what
    assert_clean(log_of(root), "log")
    assert "everything-fine" not in log_of(root)
    assert "entry 1: the path holds a control character" in log_of(root)


def test_control_characters_in_a_local_file_are_refused_by_line(root: Path) -> None:
    local_file(root).write_text("# mine\n/srv/a\\033b cap_net_raw=ep\n"
                                f"/srv/raw{TERMINAL} cap_net_raw=ep\n/srv/ok cap_net_raw=ep\n")
    listed = capsnap("--root", str(root), "list")
    assert [line.split()[0] for line in listed.out.splitlines()[1:]] == ["/srv/ok"]
    for number in (2, 3):
        assert (f"local.capabilities:{number}: the path holds a control character"
                in listed.err), listed.err
    assert_clean(listed.raw, "list")
    assert "No capability" not in listed.err


def test_a_declaration_file_linked_to_a_secret_never_shows_it(root: Path) -> None:
    canary = "SECRET-CANARY-7f3a"
    # Inside the root (relative, so never the host's): confinement lets it be read.
    secret = root / "etc/shadow"
    content = (f"root:{canary}:19000:0:99999:7:::\n/{canary} cap_bogus=ep\n/x {canary}\n"
               f"/x cap_net_raw=ep fallback={canary}\n/x cap_net_raw=ep,{canary}\n")
    secret.write_text(content)
    local_file(root, "zz.capabilities").symlink_to("../../shadow")
    outputs = [capsnap("--root", str(root), command) for command in
               ("list", "check", "reapply", "check")]
    outputs.append(capsnap("--root", str(root), "list", "--json"))
    outputs.append(capsnap("hook", "dpkg-triggered", dpkg_root=root))
    assert "zz.capabilities:1: the path is not absolute" in outputs[0].err  # it was read
    for result in outputs:
        assert canary not in result.out + result.err
    assert canary not in log_of(root)
    assert secret.read_text() == content


def _walked_tree(root: Path) -> tuple[Path, str]:
    pub = root / "srv/pub"
    pub.mkdir(parents=True)
    name = f"x{TERMINAL}"
    copy_binary("/bin/true", pub / name)
    subprocess.run(["setcap", "cap_net_raw=ep", str(pub / name)], check=True)
    return pub, name


def test_file_names_with_escape_sequences_are_shown_escaped(tmp_path: Path,
                                                            root: Path) -> None:
    pub, name = _walked_tree(root)
    shown = display.escape(f"/srv/pub/{name}")
    assert "\\033[2J" in shown
    db = str(tmp_path / "capsnap.db")
    got = capsnap("--root", str(root), "get", "-r", "/srv/pub")
    assert got.out == f"{shown} cap_net_raw=ep\n"
    snap = capsnap("--root", str(root), "--db", db, "snapshot", "--path", "/srv/pub")
    one = capsnap("--root", str(root), "--db", db, "snapshot", "--path", f"/srv/pub/{name}")
    assert shown in one.out
    snaps = capsnap("--root", str(root), "--db", db, "snapshots")
    assert shown in snaps.out
    os.removexattr(pub / name, "security.capability")
    changed = capsnap("--root", str(root), "--db", db, "diff", "1")
    assert changed.status == 1 and shown in changed.out and "lost" in changed.out
    as_json = capsnap("--root", str(root), "--db", db, "diff", "--json", "1")
    assert json.loads(as_json.out)["changes"][0]["path"] == f"/srv/pub/{name}"
    for result, what in ((got, "get"), (snap, "snapshot"), (one, "snapshot --path"),
                         (snaps, "snapshots"), (changed, "diff"), (as_json, "diff --json")):
        assert_clean(result.raw, what)
        assert result.status in (0, 1), (what, result.err)


@pytest.fixture
def world_root() -> Iterator[Path]:
    """A scratch root that uid 4242 can reach (pytest's tmp_path is 0700)."""
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="capsnap-esc-", dir="/tmp"))
    top.chmod(0o755)
    try:
        yield make_dpkg_root(top / "root")
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _namespaced(path: Path) -> None:
    """Capabilities an unprivileged user gives a file of theirs in a namespace of their own."""
    done = subprocess.run([*ADVERSARY, "unshare", "-Ur", "/usr/sbin/setcap",
                           "cap_sys_admin=ep", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"no unprivileged user namespace here: {done.stderr.strip()}")


def test_namespaced_capabilities_are_shown_as_such_and_not_tracked(world_root: Path) -> None:
    root = world_root
    pub = root / "srv/pub"
    pub.mkdir(parents=True)
    os.chown(pub, 4242, 4242)
    name = f"tool{TERMINAL}"
    tool = copy_binary("/bin/true", pub / name)
    os.chown(tool, 4242, 4242)
    _namespaced(tool)
    shown = display.escape(f"/srv/pub/{name}")

    got = capsnap("--root", str(root), "get", "-r", "/srv/pub")
    assert got.out == f"{shown} cap_sys_admin=ep [rootid=4242]\n"
    assert_clean(got.raw, "get")
    db = str(root.parent / "capsnap.db")
    capsnap("--root", str(root), "--db", db, "snapshot", "--path", "/srv/pub")
    with Store(db) as store:
        assert store.tracked() == []
    # The next snapshot of anything else does not probe it.
    (root / "srv/empty").mkdir()
    capsnap("--root", str(root), "--db", db, "snapshot", "--path", "/srv/empty")
    with Store(db) as store:
        assert all(b"tool" not in row.path for row in store.rows(2))
    os.removexattr(tool, "security.capability")
    changed = capsnap("--root", str(root), "--db", db, "diff", "1")
    assert "cap_sys_admin=ep [rootid=4242]" in changed.out, changed.out
    assert_clean(changed.raw, "diff")


@pytest.mark.parametrize("name", ["a\u3000b", os.fsdecode(b"a\xffb")], ids=["u3000", "xff"])
def test_any_file_name_is_declared_listed_checked_and_generated(tmp_path: Path, root: Path,
                                                                name: str) -> None:
    """Issue 15: every command handles a Unicode space and a byte that is not UTF-8."""
    path = f"/opt/{name}"
    (root / "opt").mkdir()
    tool = copy_binary("/bin/true", root / "opt" / name)
    r = ["--root", str(root)]
    shown = display.escape(path)
    declared = capsnap(*r, "declare", path, "cap_net_raw=ep", "--no-apply")
    assert declared.status == 0, declared.err
    written = local_file(root).read_text(encoding="utf-8")
    assert f"{escape_path(path)} cap_net_raw=ep" in written.splitlines()
    assert_clean(declared.raw, "declare")

    listed = capsnap(*r, "list")
    assert listed.out.splitlines()[1].split()[0] == shown
    assert [d["path"] for d in json.loads(capsnap(*r, "list", "--json").out)] == [path]
    drift = capsnap(*r, "check")
    assert drift.status == 1 and shown in drift.out
    assert capsnap(*r, "reapply").status == 0
    assert getxattr_or_none(tool) is not None
    assert capsnap(*r, "check").status == 0
    assert_clean(log_of(root), "log")

    out = tmp_path / "generated"
    for kind in ("deb", "rpm"):
        made = capsnap("generate", kind, "--from", str(local_file(root)), "--package", "foo",
                       "--output", str(out))
        assert made.status == 0, made.err
    control = (out / "foo.control").read_text(encoding="ascii").splitlines()[1:]
    entries, bad = parse_lines(control)
    assert not bad and [e.path for e in entries] == [path]
    raw = os.fsencode(path)
    assert raw in (out / "foo.postinst").read_bytes()
    assert b'%caps(cap_net_raw=ep) "' + raw + b'"' in (out / "foo.files").read_bytes()

    # The field that generate wrote, in a real package, declares the same file.
    dpkg_root = make_dpkg_root(tmp_path / "dpkg-root")
    dpkg_install(dpkg_root, build_deb(tmp_path, "foo", "1.0", {path: "/bin/true"},
                                      file_capabilities=[e.format() for e in entries]))
    assert capsnap("--root", str(dpkg_root), "reapply").status == 0
    assert getxattr_or_none(dpkg_root / "opt" / name) is not None

    assert capsnap(*r, "undeclare", path).status == 0
    assert capsnap(*r, "list").out == ""
    assert escape_path(path) not in local_file(root).read_text(encoding="utf-8")


def test_declare_refuses_a_path_with_a_control_character(root: Path) -> None:
    refused = capsnap("--root", str(root), "declare", f"/srv/x{TERMINAL}", "cap_net_raw=ep")
    assert refused.status == 2
    assert refused.err == ("capsnap: /srv/x\\033[2J\\033[H\\033[32mNo capability "
                           "changes\\033[0m: the path holds a control character (C0, DEL "
                           "or C1); capsnap refuses such paths\n")
    assert not local_file(root).exists()
    missing = capsnap("--root", str(root), "undeclare", "/srv/a b\\c")
    assert missing.err == ("capsnap: /srv/a b\\134c has no local declaration (see 'capsnap "
                           "list --source local')\n")
