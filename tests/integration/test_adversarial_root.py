"""Adversarial tests of issue 11, items 1, 3 and 6 (security review sections 1, 3, 6).

An untrusted tree handed to `--root` or `DPKG_ROOT` must not turn capsnap's
own files (log, state, marker, status link, records, database, cache,
configuration, declarations, hook files) into a way out of the tree; a
directory or symlink an unprivileged user controls anywhere on a target's
path must not redirect `set` or `reapply`; and what capsnap creates must
not take its mode from the caller's umask.

Every victim lives in a scratch "host" directory beside the scratch root,
never on the real host: canary files of known content, a "secret" file, a
victim directory and a copy of /usr/bin/true that must never get a
capability.  Each case checks that nothing in the host directory changed
(content, metadata, capabilities, no new entry), that capsnap's output and
log hold no raw control character, no traceback and no secret, that hooks
exit 0 and that a failing command says so in one line.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    REPO,
    SRC,
    SYSTEM_PYTHON,
    Result,
    copy_binary,
    getxattr_or_none,
    needs_root,
)
from tests.packaging import build_deb, dpkg, make_dpkg_root

pytestmark = needs_root

ATTACKER_UID = 4242
AS_ATTACKER = ["setpriv", f"--reuid={ATTACKER_UID}", f"--regid={ATTACKER_UID}",
               "--clear-groups"]
CANARY = b"HOST CANARY: original content, capsnap must never write here\n"
# Lines that would be echoed as "bad entry" or "unknown setting" if read.
SECRET = (b"root:SECRET-5f3a9c-hash:20228:0:99999:7:::\n"
          b"SECRET-KEY-77d1 = SECRET-VALUE-0b2e\n")
SECRET_MARKS = (b"SECRET-5f3a9c", b"SECRET-KEY-77d1", b"SECRET-VALUE-0b2e")
HOOKS = ("apt-pre-invoke", "apt-pre-install-pkgs", "apt-post-invoke", "dpkg-post-invoke",
         "dpkg-triggered", "rpm-pre", "rpm-post", "dnf-pre-transaction",
         "dnf-post-transaction")
# apt's DPkg::Pre-Install-Pkgs protocol version 3: a header, a blank line,
# then "name old arch multi-arch cmp new arch multi-arch action".
APT_V3 = ("VERSION 3\nAPT::Architecture=amd64\n"
          "DPkg::Tools::Options::/etc/capsnap/apt-pre-install-pkgs::Version=3\n\n"
          "foo 1 all none < 2 all none /var/cache/apt/archives/foo_2_all.deb\n"
          "bar - - none < 1 all none /var/cache/apt/archives/bar_1_all.deb\n")
LOCAL_DECLARATIONS = ("/usr/bin/helper cap_net_raw=ep owner=foo\n"
                      "/usr/bin/absent cap_net_raw=ep owner=foo\n"
                      "/usr/bin/gone cap_net_bind_service=ep\n")
STATUS = ("Package: foo\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n"
          "Maintainer: x <x@example.invalid>\nDescription: foo\n")


# --- running


def capsnap(*args: str, env: dict[str, str] | None = None, stdin: str = "",
            umask: int = -1, timeout: float = 60) -> Result:
    """capsnap as the hooks run it: a separate /usr/bin/python3, bytes kept
    as they came (surrogateescape), so raw control characters show."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DPKG_")}
    environ.update(PYTHONPATH=str(SRC), LC_ALL="C.UTF-8", **(env or {}))
    proc = subprocess.run([SYSTEM_PYTHON, "-m", "capsnap", *args], input=stdin.encode(),
                          capture_output=True, env=environ, umask=umask, timeout=timeout,
                          check=False)
    return Result(proc.returncode, proc.stdout.decode("utf-8", "surrogateescape"),
                  proc.stderr.decode("utf-8", "surrogateescape"))


def _is_control(c: str) -> bool:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a raw byte that was not UTF-8
        code -= 0xDC00
    return (code < 0x20 and c != "\n") or 0x7F <= code <= 0x9F


def raw_controls(text: str) -> list[str]:
    return sorted({repr(c) for c in text if _is_control(c)})


def assert_well_behaved(result: Result, hook: bool) -> None:
    """Hooks exit 0; a command succeeds, reports drift (1) or fails in one line."""
    text = result.out + result.err
    assert "Traceback" not in text and "internal error" not in text, text
    assert not raw_controls(text), (raw_controls(text), text)
    for line in result.err.splitlines():
        assert line.startswith("capsnap: "), result.err
    if hook:
        assert result.status == 0, result
    else:
        assert result.status in (0, 1, 2, 3), result
        if result.status in (2, 3):
            assert len(result.err.splitlines()) == 1, result.err


# --- the scene


@dataclass
class World:
    root: Path  # the untrusted tree
    host: Path  # stands for the host: everything here must stay as it was

    @property
    def canary(self) -> Path:
        return self.host / "canary"

    @property
    def secret(self) -> Path:
        return self.host / "secret"

    @property
    def victim_dir(self) -> Path:
        return self.host / "dir"

    @property
    def host_helper(self) -> Path:
        return self.host / "usr/bin/helper"


def make_host(host: Path, db: Path | None = None) -> None:
    (host / "dir").mkdir(parents=True)
    (host / "canary").write_bytes(CANARY)
    (host / "secret").write_bytes(SECRET)
    (host / "secret").chmod(0o600)
    (host / "dir/keep").write_bytes(CANARY)
    # What capsnap would read as declarations and settings, and `undeclare`
    # would change, if etc/capsnap or etc/capsnap/capabilities.d led here.
    (host / "dir/capabilities.d").mkdir()
    for d in (host / "dir", host / "dir/capabilities.d"):
        (d / "victim.capabilities").write_text("/usr/bin/gone cap_net_bind_service=ep\n")
        (d / "secret.capabilities").write_bytes(SECRET)
    (host / "dir/capsnap.conf").write_bytes(SECRET)
    if db is not None:  # what `prune` and the hooks would change if the state dir led here
        shutil.copyfile(db, host / "dir/capsnap.db")
    (host / "usr/bin").mkdir(parents=True)
    copy_binary("/usr/bin/true", host / "usr/bin/helper")


def make_root(root: Path, db: Path | None = None) -> Path:
    """A scratch dpkg root that capsnap has been used on, with a local
    declaration that is always reported (a missing file) and one that is
    restored (helper), so that every command writes its log and records."""
    make_dpkg_root(root)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    for d in ("etc/capsnap/capabilities.d", "etc/apt/apt.conf.d", "etc/dpkg/dpkg.cfg.d",
              "var/lib/capsnap/packages", "var/cache/capsnap", "var/log", "usr/bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/capsnap/capabilities.d/a.capabilities").write_text(LOCAL_DECLARATIONS)
    # A setting capsnap does not know: every hook reports it, so every hook logs.
    (root / "etc/capsnap/capsnap.conf").write_text("strict = no\nno-such-setting = 1\n")
    copy_binary("/usr/bin/true", root / "usr/bin/helper")
    if db is not None:
        shutil.copyfile(db, root / "var/lib/capsnap/capsnap.db")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            os.chmod(path, 0o755 if name == "helper" else 0o644)
    root.chmod(0o755)
    return root


def make_world(top: Path, db: Path | None = None) -> World:
    world = World(root=top / "root", host=top / "host")
    make_host(world.host, db)
    make_root(world.root, db)
    return world


def fingerprint(top: Path) -> dict[str, tuple[object, ...]]:
    """Everything about a tree that a write, create, chmod or setcap changes."""
    state: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [".", *dirnames, *filenames]:
            path = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                content: object = Path(path).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            state[path] = (st.st_mode, st.st_uid, st.st_gid, st.st_ino, st.st_mtime_ns,
                           st.st_ctime_ns, content, getxattr_or_none(path))
    return state


def assert_unchanged(before: dict[str, tuple[object, ...]], top: Path) -> None:
    after = fingerprint(top)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert not changed, f"outside the root, changed or new: {changed}"


def files_under(top: Path) -> Iterator[Path]:
    for dirpath, _, filenames in os.walk(top):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def assert_no_leak(world: World, *results: Result) -> None:
    """The secret is in no output and in no file of the tree (its log included)."""
    for result in results:
        text = os.fsencode(result.out + result.err)
        assert not [m for m in SECRET_MARKS if m in text], result
    for path in files_under(world.root):
        data = path.read_bytes()
        assert not [m for m in SECRET_MARKS if m in data], f"the secret was copied to {path}"


def assert_logs_clean(world: World) -> None:
    for path in files_under(world.root):
        if path.name.endswith(".log") and path.name != "dpkg.log":
            text = path.read_bytes().decode("utf-8", "surrogateescape")
            assert "Traceback" not in text, text
            assert not raw_controls(text), (path, raw_controls(text))


def assert_confined(world: World, before: dict[str, tuple[object, ...]],
                    *results: Result, hook: bool) -> None:
    assert_unchanged(before, world.host)
    assert getxattr_or_none(world.host_helper) is None
    for result in results:
        assert_well_behaved(result, hook)
    assert_logs_clean(world)
    assert_no_leak(world, *results)


def link_target(world: World, link: Path, kind: str, form: str) -> str:
    target = {"file": world.canary, "dangling": world.host / f"planted-{link.name}",
              "dir": world.victim_dir, "secret": world.secret,
              "db": world.victim_dir / "capsnap.db"}[kind]
    return str(target) if form == "abs" else os.path.relpath(target, link.parent)


def plant(world: World, relative: str, kind: str, form: str) -> Path:
    """Replace ROOT/relative by a symlink out of the root."""
    link = world.root / relative
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(link_target(world, link, kind, form))
    return link


# --- fixtures


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A root-owned 0755 directory for what every test shares (the capsnap
    wrapper, a seeded database), outside the 0700 pytest tree so the
    hooks' sh and an unprivileged user can reach it."""
    top = Path(tempfile.mkdtemp(prefix="capsnap-adv-", dir="/tmp"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def executable(shared: Path) -> str:
    """What the hook files run in place of /usr/bin/capsnap: this checkout's
    capsnap, as `capsnap install-hooks --executable` would write it in."""
    wrapper = shared / "bin/capsnap"
    wrapper.parent.mkdir(mode=0o755)
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={SRC} exec {SYSTEM_PYTHON} -m capsnap "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture(scope="module")
def seeded_db(shared: Path) -> Path:
    """A capsnap database with two snapshots, as in a tree capsnap was used on."""
    root = make_root(shared / "template")
    for _ in range(2):
        done = capsnap("--root", str(root), "snapshot", "--path", "/usr")
        assert done.status == 0, done
    db = root / "var/lib/capsnap/capsnap.db"
    assert db.is_file()
    return db


def dpkg_hook_lines(executable: str) -> dict[str, str]:
    """hooks/dpkg/capsnap.cfg as dpkg reads it (name="value", the quotes
    stripped), with the executable put in as install-hooks does."""
    lines = {}
    for line in (REPO / "hooks/dpkg/capsnap.cfg").read_text().splitlines():
        name, sep, value = line.partition("=")
        if line.startswith("#") or not sep:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        # The first pre-invoke opens the transaction; the second notes
        # capabilities outside a --root only (nothing to do in these roots).
        lines.setdefault(name.strip(), value.replace("/usr/bin/capsnap", executable))
    assert "pre-invoke" in lines and "post-invoke" in lines, lines
    return lines


def run_pre_invoke(world: World, executable: str) -> subprocess.CompletedProcess[bytes]:
    """dpkg's pre-invoke hook as dpkg runs it: `sh -c VALUE`, umask 022,
    DPKG_ROOT and DPKG_ADMINDIR set."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DPKG_ROOT": str(world.root),
           "DPKG_ADMINDIR": str(world.root / "var/lib/dpkg"), "DPKG_HOOK_ACTION": "install",
           "LC_ALL": "C.UTF-8"}
    return subprocess.run(["sh", "-c", dpkg_hook_lines(executable)["pre-invoke"]], env=env,
                          capture_output=True, umask=0o022, timeout=60, check=False)


# --- item 1: every state path


@dataclass(frozen=True)
class Plant:
    name: str
    path: str  # relative to the root
    kinds: tuple[str, ...]  # what the symlink points at, one per variant in turn
    commands: tuple[str, ...]  # the commands that write (or read) it


ALL_HOOKS = tuple(f"hook:{h}" for h in HOOKS)
CLOSING = ("hook:apt-post-invoke", "hook:dpkg-post-invoke", "hook:rpm-post",
           "hook:dnf-post-transaction")
REAPPLYING = ("reapply", *CLOSING, "hook:dpkg-triggered")
DB_LOCK = ("snapshot", "prune", "hook:apt-pre-invoke", "hook:dpkg-post-invoke",
           "hook:rpm-post")
# SQLite itself opens its -wal and -shm files with O_NOFOLLOW (3.40 here).
DB_SIBLING = ("snapshot", "hook:apt-pre-invoke")
FILE = ("file", "dangling")

PLANTS = (
    Plant("log", "var/log/capsnap.log", FILE, ("reapply", *ALL_HOOKS)),
    Plant("log-dir", "var/log", ("dir",), ("reapply", *ALL_HOOKS)),
    Plant("state-dir", "var/lib/capsnap", ("dir",),
          ("reapply", "snapshot", "prune", "install-hooks", *ALL_HOOKS)),
    Plant("marker", "var/lib/capsnap/transaction-open", FILE, ALL_HOOKS),
    Plant("status-link", "var/lib/capsnap/dpkg-status.before", FILE, CLOSING),
    Plant("records-dir", "var/lib/capsnap/packages", ("dir",), REAPPLYING),
    Plant("record", "var/lib/capsnap/packages/foo", ("file",), REAPPLYING),
    Plant("record-new", "var/lib/capsnap/packages/foo.new", FILE, REAPPLYING),
    # The host's own database, or a new file beside it.
    Plant("db", "var/lib/capsnap/capsnap.db", ("db", "dangling"),
          ("snapshot", "prune", *ALL_HOOKS)),
    Plant("db-wal", "var/lib/capsnap/capsnap.db-wal", FILE, DB_SIBLING),
    Plant("db-shm", "var/lib/capsnap/capsnap.db-shm", FILE, DB_SIBLING),
    Plant("db-lock", "var/lib/capsnap/capsnap.db.lock", FILE, DB_LOCK),
    Plant("cache-dir", "var/cache/capsnap", ("dir",), ("reapply", "snapshot", *ALL_HOOKS)),
    Plant("cache-file", "var/cache/capsnap/dpkg-declarations.marshal", FILE,
          ("reapply", "hook:apt-post-invoke")),
    Plant("declarations", "etc/capsnap/capabilities.d/x.capabilities", ("secret",),
          ("reapply", "snapshot", "declare", "undeclare", *ALL_HOOKS)),
    Plant("declare-target", "etc/capsnap/capabilities.d/local.capabilities",
          ("secret",), ("declare", "undeclare", "reapply")),
    Plant("declarations-dir", "etc/capsnap/capabilities.d", ("dir",),
          ("declare", "undeclare", "reapply")),
    Plant("etc-dir", "etc/capsnap", ("dir",),
          ("declare", "undeclare", "reapply", "snapshot", "install-hooks",
           "hook:apt-post-invoke")),
    Plant("config", "etc/capsnap/capsnap.conf", ("secret",), ("snapshot", *ALL_HOOKS)),
    Plant("apt-conf", "etc/apt/apt.conf.d/05capsnap", FILE, ("install-hooks",)),
    Plant("apt-conf-new", "etc/apt/apt.conf.d/05capsnap.capsnap-new", FILE,
          ("install-hooks",)),
    Plant("apt-conf-dir", "etc/apt/apt.conf.d", ("dir",), ("install-hooks",)),
    Plant("apt-helper", "etc/capsnap/apt-pre-install-pkgs", FILE, ("install-hooks",)),
    Plant("dpkg-cfg", "etc/dpkg/dpkg.cfg.d/capsnap", FILE, ("install-hooks",)),
    Plant("dpkg-cfg-new", "etc/dpkg/dpkg.cfg.d/capsnap.capsnap-new", FILE,
          ("install-hooks",)),
    Plant("dpkg-cfg-dir", "etc/dpkg/dpkg.cfg.d", ("dir",), ("install-hooks",)),
)

# Each pair is tried twice: through DPKG_ROOT with an absolute symlink, and
# through --root with a relative one climbing out with "..".
VARIANTS = (("env", "abs"), ("opt", "rel"))


def _cases() -> list[Any]:
    cases = []
    for p in PLANTS:
        for command in p.commands:
            for n, (mechanism, form) in enumerate(VARIANTS):
                kind = p.kinds[n % len(p.kinds)]
                cases.append(pytest.param(p, command, mechanism, form, kind,
                                          id=f"{p.name}-{kind}-{form}-{mechanism}-{command}"))
    return cases


def command_args(command: str) -> list[str]:
    if command.startswith("hook:"):
        return ["hook", command[5:]]
    return {"reapply": ["reapply"],
            # A file the world lacks: recorded (forced), never applied.
            "declare": ["declare", "/usr/bin/helper2", "cap_net_raw=ep", "--force",
                        "--no-apply"],
            "undeclare": ["undeclare", "/usr/bin/gone"],
            "snapshot": ["snapshot"],
            "prune": ["prune", "--keep", "1"],
            # A root-owned executable in root's directories: one install-hooks
            # accepts whatever its own checks are.
            "install-hooks": ["install-hooks", "--executable", "/usr/bin/true"]}[command]


def run_command(world: World, command: str, mechanism: str, umask: int = -1) -> Result:
    args = command_args(command)
    env: dict[str, str] = {}
    if mechanism == "env":
        env["DPKG_ROOT"] = str(world.root)
        if command.startswith("hook:dpkg-"):
            env["DPKG_ADMINDIR"] = str(world.root / "var/lib/dpkg")
    else:
        args = ["--root", str(world.root), *args]
    return capsnap(*args, env=env, umask=umask,
                   stdin=APT_V3 if command == "hook:apt-pre-install-pkgs" else "")


@pytest.mark.parametrize("command", ["reapply", "declare", "undeclare", "snapshot", "prune",
                                     "install-hooks", *ALL_HOOKS])
def test_each_command_works_in_a_clean_root(tmp_path: Path, seeded_db: Path,
                                            command: str) -> None:
    """The control: without a planted link every command does its work, so
    the cases below fail or pass because of the link, not of the setup."""
    world = make_world(tmp_path, seeded_db)
    before = fingerprint(world.host)
    result = run_command(world, command, "env")
    assert_confined(world, before, result, hook=command.startswith("hook:"))
    assert result.status in (0, 1), result
    if command.startswith("hook:") or command == "reapply":
        assert (world.root / "var/log/capsnap.log").is_file()
    if command == "reapply":
        assert (world.root / "var/lib/capsnap/packages/foo").is_file()
        assert getxattr_or_none(world.root / "usr/bin/helper") is not None


@pytest.mark.parametrize(("spot", "command", "mechanism", "form", "kind"), _cases())
def test_state_path_symlinked_out_of_the_root(tmp_path: Path, seeded_db: Path, spot: Plant,
                                              command: str, mechanism: str, form: str,
                                              kind: str) -> None:
    world = make_world(tmp_path, seeded_db)
    plant(world, spot.path, kind, form)
    before = fingerprint(world.host)
    result = run_command(world, command, mechanism)
    assert_confined(world, before, result, hook=command.startswith("hook:"))


def test_dpkg_pre_invoke_line_marks_a_clean_root(tmp_path: Path, executable: str) -> None:
    """The control: in a clean tree the line does leave its marker and link."""
    world = make_world(tmp_path)
    done = run_pre_invoke(world, executable)
    assert done.returncode == 0, done
    state = world.root / "var/lib/capsnap"
    assert (state / "transaction-open").is_file()
    assert (state / "dpkg-status.before").is_file()


PRE_INVOKE_PLANTS = (
    ("var/lib/capsnap", "dir"),
    ("var/lib/capsnap/transaction-open", "dangling"),
    ("var/lib/capsnap/dpkg-status.before", "file"),
    ("var/lib/capsnap/dpkg-status.before", "dangling"),
)


@pytest.mark.parametrize("form", ["abs", "rel"])
@pytest.mark.parametrize(("relative", "kind"), PRE_INVOKE_PLANTS)
def test_dpkg_pre_invoke_line_never_writes_out_of_the_root(
        tmp_path: Path, executable: str, relative: str, kind: str, form: str) -> None:
    world = make_world(tmp_path)
    plant(world, relative, kind, form)
    before = fingerprint(world.host)
    done = run_pre_invoke(world, executable)
    assert done.returncode == 0, done
    assert b"Traceback" not in done.stdout + done.stderr
    assert_unchanged(before, world.host)


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs: `ln` into it fails with EXDEV, so the pre-invoke line's `cp` runs."""
    mount = tmp_path / "otherfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=4m", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_pre_invoke_line_across_filesystems_never_copies_through_a_link(
        tmp_path: Path, executable: str, other_filesystem: Path) -> None:
    """The state directory is a mount point (another filesystem than dpkg's
    status file): the status link is copied, and the copy must not go
    through a symlink planted in its place."""
    world = make_world(tmp_path / "w")
    state = world.root / "var/lib/capsnap"
    shutil.rmtree(state)
    state.mkdir()
    subprocess.run(["mount", "--bind", str(other_filesystem), str(state)], check=True)
    try:
        (state / "dpkg-status.before").symlink_to(world.canary)
        before = fingerprint(world.host)
        done = run_pre_invoke(world, executable)
        assert done.returncode == 0, done
        assert_unchanged(before, world.host)
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


# --- item 1: the review's reproducers


@pytest.fixture(scope="module")
def trivial_deb(shared: Path) -> Path:
    return build_deb(shared / "debs", "triv", "1", {"/usr/share/doc/triv/README": "x\n"})


def dpkg_with_hooks(world: World, executable: str, deb: Path) \
        -> subprocess.CompletedProcess[str]:
    """`dpkg --root ROOT -i DEB` with capsnap's dpkg hooks, given on dpkg's
    command line as dpkg.cfg.d/capsnap gives them: dpkg itself runs them."""
    lines = dpkg_hook_lines(executable)
    return dpkg(world.root, f"--pre-invoke={lines['pre-invoke']}",
                f"--post-invoke={lines['post-invoke']}", "-i", str(deb), check=False)


PRELOAD_DECLARATION = "/x\\040/tmp/evil.so:y cap_net_raw=ep\n"


@pytest.mark.parametrize("form", ["abs", "rel"])
@pytest.mark.parametrize("preexisting", [True, False], ids=["preload-exists", "no-preload"])
def test_reproducer_a_log_link_to_ld_so_preload(tmp_path: Path, form: str,
                                                preexisting: bool) -> None:
    """`capsnap --root IMG reapply` with IMG/var/log/capsnap.log pointing at
    the host's /etc/ld.so.preload and a declared path naming a library."""
    world = make_world(tmp_path)
    preload = world.host / "ld.so.preload"
    if preexisting:
        preload.write_bytes(CANARY)
    (world.root / "etc/capsnap/capabilities.d/x.capabilities").write_text(PRELOAD_DECLARATION)
    log = world.root / "var/log/capsnap.log"
    log.symlink_to(preload if form == "abs" else os.path.relpath(preload, log.parent))
    before = fingerprint(world.host)
    result = capsnap("--root", str(world.root), "reapply")
    assert_confined(world, before, result, hook=False)
    assert preload.exists() == preexisting


def test_reproducer_b_dpkg_root_hooks_and_log_link(tmp_path: Path, executable: str,
                                                  trivial_deb: Path) -> None:
    world = make_world(tmp_path)
    preload = world.host / "ld.so.preload"
    # A directory where the status link goes: post-invoke reapplies everything.
    (world.root / "var/lib/capsnap/dpkg-status.before").mkdir()
    (world.root / "etc/capsnap/capabilities.d/x.capabilities").write_text(PRELOAD_DECLARATION)
    (world.root / "var/log/capsnap.log").symlink_to(preload)
    before = fingerprint(world.host)
    done = dpkg_with_hooks(world, executable, trivial_deb)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not raw_controls(done.stderr)
    assert_unchanged(before, world.host)
    assert not preload.exists()


def test_reproducer_c_pre_invoke_cp_through_state_dir_link(
        tmp_path: Path, executable: str, trivial_deb: Path, other_filesystem: Path) -> None:
    """IMG/var/lib/capsnap is a link to a directory on another filesystem
    holding dpkg-status.before -> a root-owned host file: `ln` fails, `cp`
    wrote the tree's status file over the host file."""
    world = make_world(tmp_path / "w")
    victim = world.host / "victim.conf"
    victim.write_bytes(CANARY)
    shutil.rmtree(world.root / "var/lib/capsnap")
    (world.root / "var/lib/capsnap").symlink_to(other_filesystem)
    (other_filesystem / "dpkg-status.before").symlink_to(victim)
    before = fingerprint(world.host), fingerprint(other_filesystem)
    done = dpkg_with_hooks(world, executable, trivial_deb)
    assert done.returncode == 0, done.stdout + done.stderr
    assert victim.read_bytes() == CANARY
    assert_unchanged(before[0], world.host)
    assert_unchanged(before[1], other_filesystem)


def test_reproducer_d_shadow_disclosed_through_declaration_link(
        tmp_path: Path, executable: str, trivial_deb: Path) -> None:
    world = make_world(tmp_path)
    (world.root / "etc/capsnap/capabilities.d/x.capabilities").symlink_to(world.secret)
    leak = world.host / "leak"
    leak.write_bytes(b"")
    os.chown(leak, ATTACKER_UID, ATTACKER_UID)
    leak.chmod(0o666)
    (world.root / "var/log/capsnap.log").symlink_to(leak)
    before = fingerprint(world.host)
    done = dpkg_with_hooks(world, executable, trivial_deb)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_unchanged(before, world.host)
    assert leak.read_bytes() == b""
    assert_no_leak(world, Result(done.returncode, done.stdout, done.stderr))


def test_reproducer_e_records_and_marker_links(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    record, marker = world.host / "victim-record", world.host / "victim-marker"
    record.write_bytes(CANARY)
    marker.write_bytes(CANARY)
    (world.root / "etc/capsnap/capabilities.d/b.capabilities").write_text(
        "/usr/bin/helper cap_net_raw=ep owner=foo\n")
    (world.root / "var/lib/capsnap/packages/foo.new").symlink_to(record)
    (world.root / "var/lib/capsnap/transaction-open").symlink_to(marker)
    before = fingerprint(world.host)
    reapplied = capsnap("--root", str(world.root), "reapply")
    hooked = capsnap("hook", "apt-pre-invoke", env={"DPKG_ROOT": str(world.root)})
    assert_well_behaved(hooked, hook=True)
    assert_confined(world, before, reapplied, hook=False)
    assert record.read_bytes() == CANARY and marker.read_bytes() == CANARY


@pytest.fixture
def host_caps(tmp_path: Path) -> Path:
    """A directory beside the root holding a file with a capability."""
    hostcaps = tmp_path / "host/hostcaps"
    hostcaps.mkdir(parents=True)
    tool = copy_binary("/usr/bin/true", hostcaps / "secret-tool")
    os.setxattr(tool, "security.capability", _net_raw_xattr())
    return hostcaps


def _net_raw_xattr() -> bytes:
    # vfs_cap_data revision 2, effective, permitted = cap_net_raw (13).
    return (0x02000001).to_bytes(4, "little") + (1 << 13).to_bytes(4, "little") + \
        bytes(4) + bytes(8)


def snapshot_entries(db: Path, root: Path, *scope: str) -> Result | int:
    """Take a snapshot into `db` (outside the root); how many files with
    capabilities it recorded, or the result of a command that refused."""
    import json

    result = capsnap("--root", str(root), "--db", str(db), "snapshot", *scope)
    assert_well_behaved(result, hook=False)
    if result.status != 0:
        return result
    listed = capsnap("--db", str(db), "snapshots", "--json")
    assert listed.status == 0, listed
    entries: int = json.loads(listed.out)[0]["entries"]
    return entries


def _escape_by_dots(root: Path, target: Path) -> str:
    return "/" + "../" * len(root.parts) + str(target).lstrip("/")


@pytest.mark.parametrize("how", ["symlink-dot", "symlink", "dotdot"])
def test_reproducer_e_snapshot_path_stays_in_the_root(tmp_path: Path, host_caps: Path,
                                                     how: str) -> None:
    world = make_world(tmp_path)
    (world.root / "usr/h").symlink_to(host_caps)
    spelled = {"symlink-dot": "/usr/h/.", "symlink": "/usr/h/secret-tool",
               "dotdot": _escape_by_dots(world.root, host_caps)}[how]
    entries = snapshot_entries(tmp_path / "s.db", world.root, "--path", spelled)
    assert entries == 0 or isinstance(entries, Result), entries


@pytest.mark.parametrize("how", ["conf-dotdot", "conf-symlink", "default-root-symlink"])
def test_full_snapshot_stays_in_the_root(tmp_path: Path, host_caps: Path, how: str) -> None:
    """--full walks the roots of the tree's own capsnap.conf, or the default
    ones (/srv among them): none of them leads out of the tree."""
    world = make_world(tmp_path)
    conf = world.root / "etc/capsnap/capsnap.conf"
    if how == "conf-dotdot":
        conf.write_text(f"roots = /usr {_escape_by_dots(world.root, host_caps)}\n")
    elif how == "conf-symlink":
        (world.root / "h").symlink_to(host_caps)
        conf.write_text("roots = /usr /h /h/\n")
    else:
        conf.unlink()
        (world.root / "srv").symlink_to(host_caps)
    entries = snapshot_entries(tmp_path / "s.db", world.root, "--full")
    assert entries == 0 or isinstance(entries, Result), entries


# --- item 3: the directory rule


@dataclass
class Trap:
    top: Path
    safe_helper: Path  # root-owned, in root-owned directories
    att: Path  # owned by the attacker


@pytest.fixture
def trap(world_dir: Path) -> Trap:
    """The review's layout: safe/helper (root's) and att/ (uid 4242's) with
    att/lnk -> TOP/safe, att/rel -> ../safe and att/bin/helper, all made by
    the attacker except the helper copies."""
    safe, att = world_dir / "safe", world_dir / "att"
    safe.mkdir(mode=0o755)
    att.mkdir(mode=0o755)
    helper = copy_binary("/usr/bin/true", safe / "helper")
    os.chown(att, ATTACKER_UID, ATTACKER_UID)
    made = subprocess.run([*AS_ATTACKER, "sh", "-c",
                           f"mkdir {att}/bin && ln -s {safe} {att}/lnk && ln -s ../safe "
                           f"{att}/rel"], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    copy_binary("/usr/bin/true", att / "bin/helper")
    return Trap(world_dir, helper, att)


def assert_refused(result: Result, *untouched: Path) -> None:
    assert result.status == 3, result
    assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err, result.err
    for path in untouched:
        assert getxattr_or_none(path) is None, path


def test_set_in_the_attackers_directory_is_refused(trap: Trap) -> None:
    """Already so on main: the baseline the redirections below must match."""
    result = capsnap("set", "cap_net_raw=ep", str(trap.att / "bin/helper"))
    assert_refused(result, trap.att / "bin/helper")


def test_set_on_the_safe_helper_itself_is_allowed(trap: Trap) -> None:
    """The control: the helper is a fine target when reached directly."""
    result = capsnap("set", "cap_net_raw=ep", str(trap.safe_helper))
    assert result.status == 0, result
    assert getxattr_or_none(trap.safe_helper) is not None


@pytest.mark.parametrize("through", ["lnk", "rel"])
def test_set_through_the_attackers_symlinks_is_refused(trap: Trap, through: str) -> None:
    """att/lnk (absolute) and att/rel (../safe): att was traversed, and the
    attacker chose where the path goes next."""
    result = capsnap("set", "cap_net_raw=ep", str(trap.att / through / "helper"))
    assert_refused(result, trap.safe_helper)


def test_set_through_an_attackers_symlink_in_a_sticky_directory_is_refused(
        trap: Trap) -> None:
    """/tmp-like: root's sticky 1777 directory, a link the attacker planted."""
    pub = trap.top / "pub"
    pub.mkdir()
    pub.chmod(0o1777)
    made = subprocess.run([*AS_ATTACKER, "ln", "-s", str(trap.safe_helper.parent),
                           str(pub / "s")], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    result = capsnap("set", "cap_net_raw=ep", str(pub / "s/helper"))
    assert_refused(result, trap.safe_helper)


def test_set_through_a_symlink_owned_by_another_user_is_refused(trap: Trap) -> None:
    """A link owned neither by root nor by its directory's owner."""
    plain = trap.top / "plain"
    plain.mkdir(mode=0o755)
    (plain / "s").symlink_to(trap.safe_helper.parent)
    os.lchown(plain / "s", ATTACKER_UID, ATTACKER_UID)
    result = capsnap("set", "cap_net_raw=ep", str(plain / "s/helper"))
    assert_refused(result, trap.safe_helper)


def test_root_reached_through_the_attackers_symlink_is_refused(trap: Trap) -> None:
    """--root att/img where img is the attacker's link to a root-owned tree:
    the root's own path went through att."""
    hostlike = trap.top / "hostlike"
    (hostlike / "usr/bin").mkdir(parents=True)
    helper = copy_binary("/usr/bin/true", hostlike / "usr/bin/helper")
    made = subprocess.run([*AS_ATTACKER, "ln", "-s", str(hostlike), str(trap.att / "img")],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    result = capsnap("--root", str(trap.att / "img"), "set", "cap_net_raw=ep",
                     "/usr/bin/helper")
    assert_refused(result, helper)


# --- races

RACE_SECONDS = 6.0


@contextmanager
def flipper(script: str, where: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `script` as the unprivileged attacker; always killed on the way out."""
    path = where / "flip.py"
    path.write_text(script)
    path.chmod(0o644)
    # setpriv execs python: the pid is the flipper's own.
    proc = subprocess.Popen([*AS_ATTACKER, SYSTEM_PYTHON, str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
        assert time.monotonic() < deadline, "the flipper never started"
        time.sleep(0.01)


ROOT_FLIP = """
import os, sys, time
d, hostlike = sys.argv[1], sys.argv[2]
os.symlink(hostlike, d + "/link")
os.rename(d + "/img", d + "/real")
os.symlink("real", d + "/reallink")
end = time.time() + 60
while time.time() < end:
    os.rename(d + "/link", d + "/img"); os.symlink(hostlike, d + "/link")
    os.rename(d + "/reallink", d + "/img"); os.symlink("real", d + "/reallink")
"""


def test_root_swapped_for_a_symlink_during_reapply_never_wins(world_dir: Path) -> None:
    """The review's --root race: the attacker owns the directory above the
    image and swaps the image for a link to a root-owned tree between the
    declarations' load and the write.  No run may put the capability on the
    root-owned tree's helper (nor on the image's: the image is under att)."""
    att, hostlike = world_dir / "att", world_dir / "hostlike"
    (hostlike / "usr/bin").mkdir(parents=True)
    host_helper = copy_binary("/usr/bin/true", hostlike / "usr/bin/helper")
    img = make_dpkg_root(att / "img")
    (img / "etc/capsnap/capabilities.d").mkdir(parents=True)
    (img / "etc/capsnap/capabilities.d/a.capabilities").write_text(
        "/usr/bin/helper cap_net_raw=ep\n")
    image_helper = copy_binary("/usr/bin/true", img / "usr/bin/helper")
    for dirpath, dirnames, _ in os.walk(world_dir):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
    os.chown(att, ATTACKER_UID, ATTACKER_UID)
    baseline = capsnap("--root", str(img), "reapply")
    assert baseline.status == 1 and getxattr_or_none(image_helper) is None, baseline

    script = ROOT_FLIP.replace("sys.argv[1], sys.argv[2]", f"{str(att)!r}, {str(hostlike)!r}")
    runs = 0
    with flipper(script, world_dir) as proc:
        wait_for(lambda: (att / "real").exists(), proc)
        end = time.monotonic() + RACE_SECONDS
        while time.monotonic() < end:
            result = capsnap("--root", str(att / "img"), "reapply", timeout=30)
            runs += 1
            assert "Traceback" not in result.err, result.err
            assert getxattr_or_none(host_helper) is None, f"won after {runs} runs"
            assert getxattr_or_none(att / "real/usr/bin/helper") is None, \
                f"image helper under the attacker's directory set after {runs} runs"
    assert runs >= 10, runs


STATE_FLIP = """
import os, time
var, hostlog, hostlib = VAR, HOSTLOG, HOSTLIB
os.symlink(hostlog, var + "/log.evil")
os.symlink(hostlib, var + "/lib.evil")
open(var + "/started", "w").close()
end = time.time() + 60
while time.time() < end:
    for name in ("log", "lib"):
        os.rename(f"{var}/{name}", f"{var}/{name}.real")
        os.rename(f"{var}/{name}.evil", f"{var}/{name}")
        time.sleep(0.002)
        os.rename(f"{var}/{name}", f"{var}/{name}.evil")
        os.rename(f"{var}/{name}.real", f"{var}/{name}")
        time.sleep(0.002)
"""


def test_state_directories_swapped_for_symlinks_during_runs_never_win(
        world_dir: Path) -> None:
    """Reproducer A as a race: the attacker owns the image's var/ and keeps
    swapping var/log and var/lib for links to host directories holding the
    log, marker and record files root would write."""
    world = make_world(world_dir)
    var = world.root / "var"
    os.chown(var, ATTACKER_UID, ATTACKER_UID)
    hostlog, hostlib = world.host / "log", world.host / "lib"
    hostlog.mkdir()
    (hostlog / "capsnap.log").write_bytes(CANARY)
    (hostlib / "capsnap/packages").mkdir(parents=True)
    (hostlib / "capsnap/transaction-open").write_bytes(CANARY)
    (hostlib / "capsnap/packages/foo.new").write_bytes(CANARY)
    (hostlib / "capsnap/packages/foo").write_bytes(CANARY)
    for d in (world.host, hostlog, hostlib, hostlib / "capsnap", hostlib / "capsnap/packages"):
        d.chmod(0o755)
    before = fingerprint(world.host)
    script = STATE_FLIP.replace("VAR, HOSTLOG, HOSTLIB",
                                f"{str(var)!r}, {str(hostlog)!r}, {str(hostlib)!r}")
    runs = 0
    with flipper(script, world_dir) as proc:
        wait_for(lambda: (var / "started").exists(), proc)
        end = time.monotonic() + RACE_SECONDS
        while time.monotonic() < end:
            if runs % 2:
                result = capsnap("hook", "apt-post-invoke",
                                 env={"DPKG_ROOT": str(world.root)}, timeout=30)
                assert result.status == 0, result
            else:
                result = capsnap("--root", str(world.root), "reapply", timeout=30)
            runs += 1
            assert "Traceback" not in result.err, result.err
            assert_unchanged(before, world.host)
    assert runs >= 10, runs


WALK_FLIP = """
import os, time
d, hostcaps = PUB, HOSTCAPS
for i in range(300):  # time between reading the directory and descending
    os.mkdir(f"{d}/a{i}")
os.mkdir(d + "/d")
os.symlink("nowhere", d + "/started")
end = time.time() + 60
while time.time() < end:
    os.rename(d + "/d", d + "/dd"); os.symlink(hostcaps, d + "/d"); time.sleep(0.003)
    os.unlink(d + "/d"); os.rename(d + "/dd", d + "/d"); time.sleep(0.003)
"""


def test_walk_with_a_directory_swapped_for_a_symlink_never_leaves_the_root(
        world_dir: Path) -> None:
    """The review's walk race (section 9, fixed by item 1's walk by fd): a
    user swaps a directory of a world-writable one in the tree for a link to
    a host directory between readdir and the descent.  No snapshot may
    record the host's file with a capability."""
    import json

    root = make_dpkg_root(world_dir / "wroot")
    pub = root / "srv/pub"
    pub.mkdir(parents=True)
    for dirpath, dirnames, _ in os.walk(world_dir):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
    pub.chmod(0o1777)
    hostcaps = world_dir / "hostcaps"
    hostcaps.mkdir(mode=0o755)
    tool = copy_binary("/usr/bin/true", hostcaps / "secret-tool")
    os.setxattr(tool, "security.capability", _net_raw_xattr())
    db = world_dir / "walk.db"
    script = WALK_FLIP.replace("PUB, HOSTCAPS", f"{str(pub)!r}, {str(hostcaps)!r}")
    runs = 0
    with flipper(script, world_dir) as proc:
        wait_for(lambda: (pub / "started").is_symlink(), proc)
        end = time.monotonic() + RACE_SECONDS
        while time.monotonic() < end:
            result = capsnap("--root", str(root), "--db", str(db), "snapshot", "--path",
                             "/srv/pub", timeout=60)
            assert_well_behaved(result, hook=False)
            runs += result.status == 0
    listed = capsnap("--db", str(db), "snapshots", "--json")
    assert listed.status == 0, listed
    escaped = [s for s in json.loads(listed.out) if s["entries"]]
    assert not escaped, f"{len(escaped)} of {runs} snapshots recorded the host's file"
    assert runs >= 5, runs


# Symlink text a planted link shows if a message quotes it: escape
# sequences, a carriage return, a forged log line and a raw C1 byte.
NASTY = b"planted-\x1b[2J\x1b[H\rforged\n2026-12-01T00:00:00+0000 reapply result=\"restored\"\x9b"


@pytest.mark.parametrize(("relative", "command", "mechanism"), [
    ("var/log/capsnap.log", "reapply", "opt"),
    ("var/log/capsnap.log", "hook:apt-post-invoke", "env"),
    ("var/lib/capsnap/transaction-open", "hook:apt-pre-invoke", "env"),
    ("var/lib/capsnap/packages/foo.new", "hook:dpkg-post-invoke", "env"),
    ("var/lib/capsnap/capsnap.db", "hook:apt-pre-invoke", "opt"),
    ("etc/capsnap/capabilities.d/x.capabilities", "hook:apt-post-invoke", "env"),
    ("etc/capsnap/capsnap.conf", "hook:dpkg-triggered", "env"),
    ("var/cache/capsnap", "reapply", "env"),
    ("usr/bin/helper", "hook:apt-post-invoke", "env"),
])
def test_link_text_never_reaches_output_or_log_raw(tmp_path: Path, seeded_db: Path,
                                                   relative: str, command: str,
                                                   mechanism: str) -> None:
    """Whatever capsnap says about a planted link (refused, skipped, not
    followed), the link's text reaches stderr and the log escaped."""
    world = make_world(tmp_path, seeded_db)
    link = world.root / relative
    if link.is_dir():
        shutil.rmtree(link)
    elif link.exists():
        link.unlink()
    os.symlink(os.fsencode(world.host) + b"/" + NASTY, link)
    before = fingerprint(world.host)
    result = run_command(world, command, mechanism)
    assert_confined(world, before, result, hook=command.startswith("hook:"))


# --- item 6: modes


def inodes(top: Path) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            out[path] = os.lstat(path).st_ino
    return out


UMASK_CASES = [("hook:apt-post-invoke", "env"), ("hook:apt-pre-invoke", "env"),
               ("hook:dpkg-post-invoke", "opt"), ("reapply", "opt"), ("reapply", "env"),
               ("snapshot", "opt"), ("declare", "opt")]


@pytest.mark.parametrize(("command", "mechanism"), UMASK_CASES)
def test_umask_000_makes_nothing_writable_by_others(tmp_path: Path, command: str,
                                                    mechanism: str) -> None:
    """apt's hooks inherit the caller's umask: whatever capsnap creates has
    no group or other write bit all the same."""
    world = make_world(tmp_path)
    for d in ("var/lib/capsnap", "var/cache/capsnap", "var/log"):
        shutil.rmtree(world.root / d)
    if command == "declare":
        shutil.rmtree(world.root / "etc/capsnap")
    existing = inodes(world.root)
    result = run_command(world, command, mechanism, umask=0)
    assert_well_behaved(result, hook=command.startswith("hook:"))
    created = {p: os.lstat(p).st_mode for p, ino in inodes(world.root).items()
               if existing.get(p) != ino and not os.path.islink(p)}
    assert created, "the command created nothing: nothing was tested"
    loose = {p: oct(stat.S_IMODE(m)) for p, m in created.items() if m & 0o022}
    assert not loose, loose


def test_reproducer_umask_000_then_a_planted_record_link(world_dir: Path,
                                                         seeded_db: Path) -> None:
    """Section 6 as the review ran it: a hook under umask 000 first, then
    the local user plants packages/foo.new -> a root file, then the next hook."""
    world = make_world(world_dir, seeded_db)
    for d in ("var/lib/capsnap", "var/cache/capsnap"):
        shutil.rmtree(world.root / d)
    for dirpath, dirnames, _ in os.walk(world_dir):  # the attacker may reach the tree
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
    important = world.host / "important.conf"
    important.write_bytes(CANARY)
    first = run_command(world, "hook:apt-post-invoke", "env", umask=0)
    assert_well_behaved(first, hook=True)
    packages = world.root / "var/lib/capsnap/packages"
    planted = subprocess.run([*AS_ATTACKER, "ln", "-s", str(important),
                              str(packages / "foo.new")], capture_output=True, check=False)
    before = fingerprint(world.host)
    second = run_command(world, "hook:apt-post-invoke", "env")
    assert_confined(world, before, second, hook=True)
    assert important.read_bytes() == CANARY
    assert planted.returncode != 0, "a local user could write the records directory"


INSECURE = [(how, *run) for how in ("records-0777", "records-of-4242")
            for run in (("hook:apt-post-invoke", "env"), ("hook:dpkg-triggered", "env"),
                        ("reapply", "opt"))] + \
           [(how, *run) for how in ("state-0777", "state-of-4242")
            for run in (("hook:apt-pre-invoke", "env"), ("hook:apt-post-invoke", "env"),
                        ("reapply", "opt"))]


@pytest.mark.parametrize(("how", "command", "mechanism"), INSECURE)
def test_state_directory_others_can_write_is_refused(tmp_path: Path, seeded_db: Path,
                                                     how: str, command: str,
                                                     mechanism: str) -> None:
    """A records or state directory a local user can write (left 0777 by an
    earlier run under umask 000, or theirs): root never writes through the
    links they plant there, and records nothing in it."""
    world = make_world(tmp_path, seeded_db)
    state = world.root / "var/lib/capsnap"
    weak = state / "packages" if how.startswith("records") else state
    if how.endswith("0777"):
        weak.chmod(0o777)
    else:
        os.chown(weak, ATTACKER_UID, ATTACKER_UID)
    # The attacker's links: the marker only where it is written (a marker
    # present would make dpkg-triggered skip its reapply).
    for name in ("packages/foo.new", *(["transaction-open"] if "pre" in command else [])):
        link = state / name
        link.symlink_to(world.canary)
        os.lchown(link, ATTACKER_UID, ATTACKER_UID)
    (state / "packages/foo").symlink_to(world.host / "planted-foo")
    os.lchown(state / "packages/foo", ATTACKER_UID, ATTACKER_UID)
    names = sorted(os.listdir(weak))
    before = fingerprint(world.host)
    result = run_command(world, command, mechanism)
    assert_confined(world, before, result, hook=command.startswith("hook:"))
    assert sorted(os.listdir(weak)) == names, "something was written into " + str(weak)
