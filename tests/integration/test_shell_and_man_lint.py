"""The field's own checkers over what capsnap ships and generates: ShellCheck on
every shell file of the tree, the shell one-liners of the hook files, every script
capsnap generates and the maintainer scripts and scriptlets of its built packages;
mandoc on the man pages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO, SRC, needs_root

SHELLS = {"sh": "sh", "dash": "dash", "bash": "bash"}
# Not part of the tree: checkouts of tools, caches, build output.
_SKIP_DIRS = {".git", ".venv", "__pycache__", "build", "dist", ".hypothesis", ".mypy_cache",
              ".ruff_cache", ".pytest_cache", "node_modules"}
_MAINTAINER_SCRIPT = re.compile(r"(^|\.)(preinst|postinst|prerm|postrm|config)$")
# A hostile declaration file: the generated scripts must quote all of it.
HOSTILE = """\
/usr/lib/foo/with\\040space cap_net_raw=ep
/usr/lib/foo/dollar$HOME cap_net_bind_service=+ep fallback=setuid
/usr/lib/foo/quote'q cap_net_admin,cap_net_raw=p fallback=none
/usr/lib/foo/back`tick`  cap_sys_time=ep
/usr/lib/foo/pct%{name} cap_bpf,cap_perfmon=ep
"""


def _dialect(path: Path) -> str | None:
    """The shell a file of the tree is written for, or None if it is no shell file."""
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return None
    if first.startswith(b"#!"):
        words = first[2:].decode("utf-8", "replace").split()
        if words and os.path.basename(words[0]) == "env":
            words = words[1:]
        return SHELLS.get(os.path.basename(words[0])) if words else None
    rel = path.relative_to(REPO)
    if path.suffix == ".sh" or (rel.parts[0] == "debian" and
                                _MAINTAINER_SCRIPT.search(path.name)):
        return "sh"
    if rel.parts[:2] == ("src", "completion"):
        return "bash"  # sourced by bash-completion: no #! line
    return None


def shell_files() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for directory, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(directory, name)
            if path.is_symlink():
                continue
            dialect = _dialect(path)
            if dialect:
                found.setdefault(dialect, []).append(path)
    return found


def shellcheck(dialect: str, paths: list[Path]) -> None:
    assert paths
    checked = subprocess.run(["shellcheck", "--format=gcc", "--shell", dialect,
                              *map(str, paths)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    for tool in ("shellcheck", "mandoc"):
        assert shutil.which(tool), f"{tool} is missing: tests/ensure-packages installs it"


def test_every_shell_file_of_the_tree_passes_shellcheck() -> None:
    found = shell_files()
    names = {str(p.relative_to(REPO)) for paths in found.values() for p in paths}
    # The search itself must see the files it is for.
    for name in ("tests/run", "tests/ensure-packages", ".ci/run", "demo/run",
                 "demo/seed-walkthrough", "hooks/apt/apt-pre-install-pkgs",
                 "src/completion/capsnap"):
        assert name in names, name
    assert any(n.startswith("debian/") and _MAINTAINER_SCRIPT.search(n) for n in names)
    for dialect, paths in sorted(found.items()):
        shellcheck(dialect, paths)


def hook_one_liners() -> dict[str, str]:
    """The shell commands inside the apt and dpkg configuration files."""
    commands = {}
    # dpkg.cfg: option="value"; dpkg drops the outer quotes only.
    for number, line in enumerate((REPO / "hooks/dpkg/capsnap.cfg").read_text().splitlines()):
        option, sep, value = line.partition("=")
        if sep and not line.startswith("#") and option.endswith("-invoke"):
            assert value.startswith('"') and value.endswith('"'), line
            commands[f"dpkg/capsnap.cfg:{number + 1}"] = value[1:-1]
    # apt.conf: a list of strings (which cannot hold a quote); the *-Invoke
    # lists are sh commands, Pre-Install-Pkgs names a program (checked as a file).
    apt = (REPO / "hooks/apt/05capsnap").read_text().splitlines()
    for number, line in enumerate(apt):
        if re.match(r"DPkg::(Pre|Post)-Invoke\b", line, re.IGNORECASE):
            strings = re.findall(r'"([^"]*)"', line)
            assert strings, line
            for i, command in enumerate(strings):
                commands[f"apt/05capsnap:{number + 1}.{i}"] = command
    return commands


def test_hook_one_liners_pass_shellcheck(tmp_path: Path) -> None:
    commands = hook_one_liners()
    assert sum(k.startswith("dpkg/") for k in commands) >= 2, commands
    assert sum(k.startswith("apt/") for k in commands) >= 2, commands
    paths = []
    for where, command in sorted(commands.items()):
        path = tmp_path / where.replace("/", "_").replace(":", "_")
        path.write_text(f"#!/bin/sh\n{command}\n")
        paths.append(path)
    shellcheck("sh", paths)


def _generate(tmp_path: Path, kind: str, *options: str) -> dict[str, str]:
    declarations = tmp_path / "foo.capabilities"
    declarations.write_text(HOSTILE)
    out = tmp_path / f"{kind}{''.join(options)}"
    done = subprocess.run(["/usr/bin/python3", "-m", "capsnap", "generate", kind, "--from",
                           str(declarations), "--output", str(out), *options],
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert done.returncode == 0, done.stderr
    # Named as debhelper names them: PACKAGE.postinst, ...
    return {p.name.removeprefix("foo."): p.read_text() for p in sorted(out.iterdir())}


def test_generated_scripts_pass_shellcheck(tmp_path: Path) -> None:
    """What `capsnap generate` writes, as the package would run it: the deb
    snippets inside a maintainer script, the rpm %posttrans body as rpm hands
    it to sh (its %% undone)."""
    paths = []
    for options in ((), ("--strict",)):
        deb = _generate(tmp_path, "deb", *options)
        for name in ("postinst", "postrm"):
            path = tmp_path / f"deb{''.join(options)}-{name}"
            path.write_text(f"#!/bin/sh\nset -e\n{deb[name]}")
            paths.append(path)
    posttrans = _generate(tmp_path, "rpm")["posttrans"]
    body = [line for line in posttrans.splitlines() if line.strip() != "%posttrans"]
    assert body
    path = tmp_path / "rpm-posttrans"
    path.write_text("#!/bin/sh\n" + "\n".join(body).replace("%%", "%") + "\n")
    paths.append(path)
    # The %posttrans a spec gets from capsnap's rpm macros.
    if shutil.which("rpm"):
        expanded = subprocess.run(
            ["rpm", "--load", str(REPO / "templates/rpm/macros.capsnap"), "--define",
             "name foo", "--eval", "%capsnap_posttrans /usr/lib/foo/quote'q cap_net_raw=ep"],
            capture_output=True, text=True)
        assert expanded.returncode == 0 and "setcap" in expanded.stdout, expanded.stderr
        path = tmp_path / "rpm-macro-posttrans"
        path.write_text("#!/bin/sh\n" + expanded.stdout)
        paths.append(path)
    shellcheck("sh", paths)


def _built_debs(request: pytest.FixtureRequest) -> list[Path]:
    """Every .deb of capsnap's session build, whichever fixture gives it."""
    try:
        debs = list(request.getfixturevalue("capsnap_debs"))
    except pytest.FixtureLookupError:
        debs = [request.getfixturevalue("capsnap_deb")]
    return sorted({deb for built in debs for deb in built.parent.glob("*.deb")})


@needs_root
def test_maintainer_scripts_of_capsnaps_debs_pass_shellcheck(request: pytest.FixtureRequest,
                                                            tmp_path: Path) -> None:
    """As debhelper assembled them: capsnap's own code and dh's snippets."""
    debs = _built_debs(request)
    assert debs
    found = {}
    for deb in debs:
        control = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True,
                                 check=True).stdout
        out = tmp_path / deb.name
        out.mkdir()
        (out / "control.tar").write_bytes(control)
        with tarfile.open(out / "control.tar") as tar:
            for member in tar.getmembers():
                name = os.path.basename(member.name)
                if member.isfile() and _MAINTAINER_SCRIPT.search(name):
                    data = tar.extractfile(member)
                    assert data is not None
                    (out / name).write_bytes(data.read())
                    found[f"{deb.name}/{name}"] = out / name
    assert any(name.endswith("/postinst") for name in found), sorted(found)
    for name, path in sorted(found.items()):
        dialect = _dialect_of_script(path)
        assert dialect, f"{name}: no sh or bash #! line"
        shellcheck(dialect, [path])


def _dialect_of_script(path: Path) -> str | None:
    first = path.read_bytes().split(b"\n", 1)[0]
    words = first[2:].decode().split() if first.startswith(b"#!") else []
    return SHELLS.get(os.path.basename(words[0])) if words else None


_SCRIPTLET = re.compile(r"^(\S+) scriptlet \(using (\S+)\)")


@needs_root
def test_scriptlets_of_capsnaps_rpm_pass_shellcheck(capsnap_rpm: Path, tmp_path: Path) -> None:
    rpms = sorted(capsnap_rpm.parent.glob("*.rpm"))
    paths = []
    for rpmfile in rpms:
        listed = subprocess.run(["rpm", "-qp", "--scripts", "--filetriggers", str(rpmfile)],
                                capture_output=True, text=True, check=True).stdout
        current: list[str] | None = None
        scriptlets: list[tuple[str, str, list[str]]] = []
        for line in listed.splitlines():
            match = _SCRIPTLET.match(line)
            if match:
                current = []
                scriptlets.append((match.group(1), match.group(2), current))
            elif current is not None:
                current.append(line)
        for i, (kind, interpreter, body) in enumerate(scriptlets):
            dialect = SHELLS.get(os.path.basename(interpreter))
            if dialect is None:
                continue  # <lua> and other interpreters
            path = tmp_path / f"{rpmfile.name}-{i}-{kind}"
            path.write_text(f"#!{interpreter}\n" + "\n".join(body) + "\n")
            paths.append(path)
    assert any("transfiletriggerin" in p.name for p in paths), [p.name for p in paths]
    shellcheck("sh", paths)


def man_pages(tmp_path: Path) -> list[Path]:
    """capsnap(1), and a page per debhelper program from its POD, made as
    debian/rules makes it."""
    pages = [SRC / "man/capsnap.1"]
    for program in sorted((SRC / "debhelper").glob("dh_*")):
        page = tmp_path / f"{program.name}.1"
        subprocess.run(["pod2man", "--section=1", "--center=Debhelper", "--release=0",
                        f"--name={program.name.upper()}", "--utf8", str(program), str(page)],
                       check=True)
        pages.append(page)
    assert len(pages) >= 2
    return pages


def test_man_pages_pass_mandoc_lint(tmp_path: Path) -> None:
    pages = man_pages(tmp_path)
    # Hand-written: nothing at all, style notes included.
    strict = subprocess.run(["mandoc", "-Tlint", "-W", "all", str(pages[0])],
                            capture_output=True, text=True)
    assert strict.returncode == 0 and not strict.stdout + strict.stderr, strict.stderr
    # pod2man's output: warnings and worse.  (Its style notes are about POD
    # paragraph lines longer than 80 bytes.)
    for page in pages[1:]:
        linted = subprocess.run(["mandoc", "-Tlint", "-W", "warning", str(page)],
                                capture_output=True, text=True)
        assert linted.returncode == 0, linted.stdout + linted.stderr
