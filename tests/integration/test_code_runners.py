"""`capsnap set` refuses code runners by content, whatever they are called.

Each binary is copied under a neutral name into a root-owned scratch
directory, so only its content can give it away; the real files on the host
are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import copy_binary, getxattr_or_none, needs_root, run_capsnap

pytestmark = needs_root


def readelf(path: Path | str) -> str:
    return subprocess.run(["readelf", "-hldW", str(path)], capture_output=True, text=True,
                          check=True).stdout


def dynamic_loader() -> str:
    """The loader that the system's own programs name in PT_INTERP."""
    out = readelf("/usr/bin/true")
    marker = "Requesting program interpreter: "
    line = next(ln for ln in out.splitlines() if marker in ln)
    return os.path.realpath(line.split(marker, 1)[1].rstrip("]").strip())


def program(name: str) -> str:
    found = shutil.which(name, path="/usr/bin:/usr/sbin:/bin:/sbin")
    assert found, f"{name} is missing: run tests/ensure-packages"
    return found


# (what, how to find it, what the refusal must say)
RUNNERS = [
    ("dynamic loader", dynamic_loader, "a dynamic loader, which runs any program"),
    ("setpriv", lambda: program("setpriv"), "setpriv (or a tool like it), which passes "
     "capabilities on as ambient ones"),
    ("capsh", lambda: program("capsh"), "capsh, which passes capabilities on as ambient ones"),
    ("sqlite3", lambda: program("sqlite3"), "the SQLite shell, whose .load runs any library"),
    ("openssl", lambda: program("openssl"), "the OpenSSL command, which loads engines"),
    ("gawk", lambda: program("gawk"), "a plugin loader (gawk's @load"),
    ("zsh", lambda: program("zsh"), "a shell (zsh)"),
    ("fish", lambda: program("fish"), "a shell (fish)"),
    ("tcsh", lambda: program("tcsh"), "a shell (tcsh)"),
    ("busybox", lambda: program("busybox"), "BusyBox"),
]


def set_caps(target: Path, caps: str = "cap_net_raw=ep") -> tuple[int, list[str]]:
    result = run_capsnap("set", caps, str(target))
    assert "Traceback" not in result.err
    return result.status, [ln for ln in result.err.splitlines() if "warning:" not in ln]


@pytest.mark.parametrize(("find", "reason"), [r[1:] for r in RUNNERS],
                         ids=[r[0] for r in RUNNERS])
def test_code_runner_under_a_neutral_name_is_refused(world_dir: Path, find: Callable[[], str],
                                                     reason: str) -> None:
    target = copy_binary(find(), world_dir / "helper")
    status, lines = set_caps(target)
    assert status == 3, lines
    assert len(lines) == 1, lines
    assert f"{target}: refused: it is {reason}" in lines[0]
    assert "use --force to override" in lines[0]
    assert getxattr_or_none(target) is None


@pytest.mark.parametrize("source", ["/usr/bin/true", "/usr/bin/id", "/usr/bin/ls",
                                    "/usr/sbin/getcap", "/usr/sbin/setcap"])
def test_ordinary_programs_are_accepted(world_dir: Path, source: str) -> None:
    # getcap and setcap use libcap as capsh does, but raise nothing.
    target = copy_binary(source, world_dir / "helper")
    status, lines = set_caps(target)
    assert (status, lines) == (0, [])
    assert getxattr_or_none(target) is not None


def build(world_dir: Path, name: str, source: str, *flags: str) -> Path:
    src = world_dir / f"{name}.c"
    src.write_text(source)
    out = world_dir / name
    subprocess.run(["gcc", "-O1", "-o", str(out), str(src), *flags], check=True)
    out.chmod(0o755)
    return out


def test_a_static_pie_executable_is_not_taken_for_a_loader(world_dir: Path) -> None:
    # Self-contained, no PT_INTERP, an entry point: only DF_1_PIE tells it
    # apart from ld.so.
    exe = build(world_dir, "helper", "int main(void) { return 0; }\n", "-static-pie")
    facts = readelf(exe)
    assert "Position-Independent Executable" in facts and "Flags: PIE" in facts
    assert "INTERP" not in facts and "NEEDED" not in facts
    assert subprocess.run([str(exe)], check=False).returncode == 0
    status, lines = set_caps(exe)
    assert (status, lines) == (0, [])


def test_a_library_with_an_entry_point_is_not_taken_for_a_loader(world_dir: Path) -> None:
    # As libXau and many other libraries are linked: an entry point, no
    # PT_INTERP, but libraries in DT_NEEDED that nothing would load.
    lib = build(world_dir, "libhelper.so", "#include <stdio.h>\n"
                "void helper_entry(void) { puts(\"hi\"); }\n",
                "-shared", "-fPIC", "-Wl,-e,helper_entry")
    facts = readelf(lib)
    assert "Shared object file" in facts and "Entry point address:               0x0" not in facts
    assert "INTERP" not in facts and "(NEEDED)" in facts
    status, lines = set_caps(lib)
    assert (status, lines) == (0, [])
