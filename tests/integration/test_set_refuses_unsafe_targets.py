"""`capsnap set` refuses a target that someone other than root could swap,
and a code runner, whatever the way in: the directories above it (above a
--root, above the working directory), its name, its content.

Every target is a copy in a scratch directory; the host's files are only
read, to be copied.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import copy_binary, getxattr_or_none, needs_root, run_cli

pytestmark = needs_root

NOBODY = 65534
NOT_STICKY = "is writable by group or others and not sticky"


def refusal(*args: str) -> str:
    """The one line a refused `set` prints; nothing may have been written."""
    result = run_cli("set", *args)
    assert result.status == 3, result
    lines = result.err.splitlines()
    assert len(lines) == 1 and "use --force to override" in lines[0], result.err
    return lines[0]


def directory(path: Path, mode: int = 0o755, owner: int = 0) -> Path:
    path.mkdir()
    path.chmod(mode)  # whatever the umask
    os.chown(path, owner, owner)
    return path


# --- directories -----------------------------------------------------------

def test_a_group_writable_directory_is_refused_unless_sticky(world_dir: Path) -> None:
    shared = directory(world_dir / "shared", 0o775)
    tool = copy_binary("/bin/true", shared / "tool")
    assert f"directory {shared} {NOT_STICKY}" in refusal("cap_net_raw=ep", str(tool))
    assert getxattr_or_none(tool) is None
    # The sticky bit stops group members from renaming root's file away.
    shared.chmod(0o1775)
    assert run_cli("set", "cap_net_raw=ep", str(tool)).status == 0


def test_a_directory_of_another_owner_is_refused(world_dir: Path) -> None:
    theirs = directory(world_dir / "theirs", 0o755, NOBODY)
    tool = copy_binary("/bin/true", theirs / "tool")
    assert f"directory {theirs} is owned by uid {NOBODY}" in refusal("cap_net_raw=ep", str(tool))
    assert getxattr_or_none(tool) is None


@pytest.mark.parametrize(("mode", "owner", "problem"), [
    (0o777, 0, NOT_STICKY), (0o755, NOBODY, f"is owned by uid {NOBODY}")],
    ids=["writable", "owned by nobody"])
def test_a_root_under_an_unsafe_directory_is_refused(world_dir: Path, mode: int, owner: int,
                                                     problem: str) -> None:
    # Whoever can rename entries of `above` can swap the whole tree.
    above = directory(world_dir / "above", mode, owner)
    root = above / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    tool = copy_binary("/bin/true", root / "usr" / "bin" / "tool")
    line = refusal("--root", str(root), "cap_net_raw=ep", "/usr/bin/tool")
    assert f"directory {above} {problem}" in line
    assert getxattr_or_none(tool) is None


@pytest.mark.parametrize(("mode", "owner", "problem"), [
    (0o777, 0, NOT_STICKY), (0o755, NOBODY, f"is owned by uid {NOBODY}")],
    ids=["writable", "owned by nobody"])
def test_a_relative_path_under_an_unsafe_directory_is_refused(
        world_dir: Path, monkeypatch: pytest.MonkeyPatch, mode: int, owner: int,
        problem: str) -> None:
    # The working directory is safe; the one above it is not.
    above = directory(world_dir / "above", mode, owner)
    here = directory(above / "here")
    tool = copy_binary("/bin/true", here / "tool")
    monkeypatch.chdir(here)
    assert f"directory {above} {problem}" in refusal("cap_net_raw=ep", "tool")
    assert getxattr_or_none(tool) is None
    above.chmod(0o755)
    os.chown(above, 0, 0)
    assert run_cli("set", "cap_net_raw=ep", "tool").status == 0


# --- code runners ----------------------------------------------------------

# Innocent content (a copy of true) under the name of an interpreter, a
# shell or a loader, with or without a version suffix.
INTERPRETER_NAMES = ["python3", "bash", "perl", "node", "python3.11", "perl5.36.0",
                     "node-18", "ruby3.1", "lua5.4", "tclsh8.6", "ld-linux-x86-64.so.2"]


@pytest.mark.parametrize("name", INTERPRETER_NAMES)
def test_an_interpreter_is_refused_by_its_name(world_dir: Path, name: str) -> None:
    tool = copy_binary("/bin/true", world_dir / name)
    assert f"it is an interpreter ({name}, by its name)" in refusal("cap_net_raw=ep", str(tool))
    assert getxattr_or_none(tool) is None


@pytest.mark.parametrize("name", ["pythonic", "bashful", "tool3.11", "perlite-2"])
def test_a_name_that_only_looks_like_an_interpreter_is_accepted(world_dir: Path,
                                                                 name: str) -> None:
    tool = copy_binary("/bin/true", world_dir / name)
    assert run_cli("set", "cap_net_raw=ep", str(tool)).status == 0


# What a code runner carries in its binary, whatever it is called, and what
# the refusal says it is.
MARKERS = [
    (b"Py_InitializeEx", "the Python interpreter"),
    (b"Py_InitializeFromConfig", "the Python interpreter, or a program embedding it"),
    (b"perl_parse", "the Perl interpreter"),
    (b"ruby_options", "the Ruby interpreter"),
    (b"luaL_newstate", "the Lua interpreter"),
    (b"php_execute_script", "the PHP interpreter"),
    (b"Tcl_Main", "the Tcl interpreter"),
    (b"Tk_MainEx", "the Tcl/Tk interpreter"),
    (b"_ZN4node5StartEiPPc", "the Node.js runtime"),
    (b"JLI_Launch", "the Java launcher"),
    (b"BusyBox v1.36.1", "BusyBox (a shell among others)"),
    (b"GNU bash, version %s", "a shell (bash)"),
    (b"PS4=+ ", "a shell"),
    (b"@(#)MIRBSD KSH R59", "a shell (mksh)"),
    (b"ZSH_VERSION", "a shell (zsh)"),
    (b"tcsh %d.%.2d.%.2d", "a shell (tcsh)"),
    (b"fish universal variable", "a shell (fish)"),
    (b"YASH_LOADPATH", "a shell (yash)"),
    (b"QEMU_LD_PREFIX", "a user-mode emulator (qemu)"),
    (b"--addamb=", "capsh, which passes capabilities on as ambient ones"),
    (b"--ambient-caps", "setpriv (or a tool like it), which passes capabilities on"),
    (b"cap_set_ambient", "a program using libcap's cap_set_ambient"),
    (b".load FILE ?ENTRY?", "the SQLite shell, whose .load runs any library"),
    (b"Use engine, possibly a hardware device", "the OpenSSL command"),
    (b"Provider load path", "the OpenSSL command"),
    (b"plugin_is_GPL_compatible", "a plugin loader (gawk's @load"),
    (b"Load the specified plugin", "a plugin loader (binutils' --plugin"),
    (b"load the specified plugin", "a plugin loader (binutils' --plugin"),
    (b"Load named plugin", "a plugin loader (binutils' --plugin"),
    (b"could not load plugin library", "a plugin loader (binutils' --plugin"),
]


@pytest.mark.parametrize(("marker", "what"), MARKERS, ids=[m[0].decode() for m in MARKERS])
def test_a_code_runner_is_refused_by_its_content(world_dir: Path, marker: bytes,
                                                 what: str) -> None:
    # A working program (true) that also carries the runner's string, as a
    # program linking or embedding the runner would.
    tool = copy_binary("/bin/true", world_dir / "helper")
    with open(tool, "ab") as f:
        f.write(b"\0" + marker + b"\0")
    assert f"{tool}: refused: it is {what}" in refusal("cap_net_raw=ep", str(tool))
    assert getxattr_or_none(tool) is None


@pytest.mark.parametrize(("source", "what"), [
    ("/bin/bash", "a shell (bash)"), ("/usr/bin/python3", "the Python interpreter"),
    ("/usr/bin/perl", "the Perl interpreter")], ids=["bash", "python3", "perl"])
def test_a_real_interpreter_under_a_neutral_name_is_refused(world_dir: Path, source: str,
                                                            what: str) -> None:
    tool = copy_binary(source, world_dir / "helper")
    assert f"{tool}: refused: it is {what}:" in refusal("cap_net_raw=ep", str(tool))
    assert getxattr_or_none(tool) is None
