"""install-hooks wires only a capsnap that nobody but root can change into root's hooks.

Every case installs into a scratch --root; the executables live in scratch
directories whose ownership and modes the test sets (uid 4242 is a user with
no passwd entry).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SRC, needs_root, run_cli

pytestmark = needs_root

USER = 4242
REFUSED = 3  # EXIT_FAILED: capsnap's exit code for refusals


def chown_tree(top: Path, uid: int = USER) -> None:
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            os.lchown(os.path.join(directory, name), uid, uid)
    os.lchown(top, uid, uid)


def files_under(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


def contents_under(top: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(top)): None if p.is_dir() else p.read_bytes()
            for p in top.rglob("*")}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "root"
    for sub in ("etc/apt", "etc/dpkg", "etc/dnf/plugins"):
        (top / sub).mkdir(parents=True)
    return top


@pytest.fixture
def plain() -> Iterator[Path]:
    """A root-owned 0755 directory for the executables of one test, under a
    short name: the executable's path goes into dpkg's configuration lines,
    which hold 1023 bytes (pytest's own directories are too deep for that)."""
    top = Path(tempfile.mkdtemp(prefix="capsnap-", dir="/tmp"))
    top.chmod(0o755)
    yield top
    shutil.rmtree(top)


def script(path: Path, interpreter: str, body: str = "") -> Path:
    path.write_text(f"#!{interpreter}\n{body}")
    path.chmod(0o755)
    return path


def install_hooks(root: Path, executable: Path | str, *options: str) -> tuple[int, str]:
    before = contents_under(root)
    done = run_cli("--root", str(root), "install-hooks", "--executable", str(executable),
                   *options)
    if done.status != 0:
        assert contents_under(root) == before, "a refused install-hooks wrote something"
        assert done.err.count("\n") == 1, done.err
    return done.status, done.err


def hooked(root: Path, executable: Path | str) -> bool:
    cfg = root / "etc/dpkg/dpkg.cfg.d/capsnap"
    return cfg.exists() and f"{executable} hook dpkg-post-invoke" in cfg.read_text()


def refused_unless_forced(root: Path, executable: Path | str, reason: str) -> None:
    status, err = install_hooks(root, executable)
    assert status == REFUSED, err
    assert reason in err, err
    assert "use --force to override" in err
    status, err = install_hooks(root, executable, "--force")
    assert status == 0, err
    assert hooked(root, executable)
    assert (root / "etc/dnf/plugins/capsnap_dnf.conf").read_text().count(str(executable)) == 1


@pytest.fixture(scope="module")
def pristine_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root-made virtual environment with capsnap's package in its site-packages."""
    venv = tmp_path_factory.mktemp("venvs") / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(glob.glob(str(venv / "lib/python3*/site-packages"))[0])
    shutil.copytree(SRC / "capsnap", site / "capsnap",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return venv


@pytest.fixture
def venv(pristine_venv: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "venv"
    shutil.copytree(pristine_venv, copy, symlinks=True)
    copy.chmod(0o755)
    # The venv's python links to /usr/bin/python3; the copy's pyvenv.cfg
    # names the same home, so it is the same installation at another place.
    return copy


def venv_capsnap(venv: Path, where: Path) -> Path:
    """The console script pip writes, run by the venv's python."""
    return script(where / "capsnap", str(venv / "bin/python3"),
                  "import sys\nfrom capsnap.cli import main\nsys.exit(main())\n")


def site_packages(venv: Path) -> Path:
    return Path(glob.glob(str(venv / "lib/python3*/site-packages"))[0])


def test_the_reviews_case_user_owned_directory(root: Path, tmp_path: Path) -> None:
    userbin = tmp_path / "userbin"
    userbin.mkdir()
    os.chown(userbin, USER, USER)
    refused_unless_forced(root, script(userbin / "capsnap", "/bin/sh"),
                          f"directory {userbin} is owned by uid {USER}")


def test_user_owned_executable(root: Path, plain: Path) -> None:
    capsnap = script(plain / "capsnap", "/bin/sh")
    os.chown(capsnap, USER, USER)
    refused_unless_forced(root, capsnap, f"{capsnap} is owned by uid {USER}")


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_group_or_world_writable_directory(root: Path, plain: Path, mode: int) -> None:
    shared = plain / "shared"
    shared.mkdir()
    shared.chmod(mode)
    refused_unless_forced(root, script(shared / "capsnap", "/bin/sh"),
                          f"directory {shared} is writable by group or others (mode {mode:04o})")


def test_world_writable_executable(root: Path, plain: Path) -> None:
    capsnap = script(plain / "capsnap", "/bin/sh")
    capsnap.chmod(0o757)
    refused_unless_forced(root, capsnap, "is writable by group or others (mode 0757)")


def test_sticky_directory_counts_only_for_roots_entries(root: Path, plain: Path) -> None:
    """/tmp's rule: others can add names to a sticky directory, not replace root's."""
    sticky = plain / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    mine = script(sticky / "capsnap", "/bin/sh")
    status, err = install_hooks(root, mine)
    assert status == 0, err
    theirs = script(sticky / "capsnap-theirs", "/bin/sh")
    os.chown(theirs, USER, USER)
    refused_unless_forced(root, theirs, f"{theirs} is owned by uid {USER}")


def test_user_owned_symlink_on_the_way(root: Path, plain: Path) -> None:
    real = script(plain / "capsnap-real", "/bin/sh")
    link = plain / "capsnap"
    link.symlink_to(real.name)
    status, err = install_hooks(root, link)
    assert status == 0, err
    os.lchown(link, USER, USER)
    refused_unless_forced(root, link, f"symlink {link} is owned by uid {USER}")


def test_symlink_target_in_a_user_directory(root: Path, plain: Path, tmp_path: Path) -> None:
    userbin = tmp_path / "userbin"
    userbin.mkdir()
    real = script(userbin / "capsnap", "/bin/sh")
    os.chown(userbin, USER, USER)
    (plain / "capsnap").symlink_to(real)
    refused_unless_forced(root, plain / "capsnap", f"directory {userbin} is owned by uid {USER}")


def test_directory_left_by_dotdot_counts(root: Path, plain: Path) -> None:
    """The kernel walks through user/ to reach user/..: its owner could make it a symlink."""
    user = plain / "user"
    user.mkdir()
    os.chown(user, USER, USER)
    script(plain / "capsnap", "/bin/sh")
    refused_unless_forced(root, f"{user}/../capsnap", f"directory {user} is owned by uid {USER}")


def test_user_owned_interpreter(root: Path, plain: Path) -> None:
    interpreter = plain / "sh"
    shutil.copyfile("/bin/dash", interpreter)
    interpreter.chmod(0o755)
    capsnap = script(plain / "capsnap", str(interpreter))
    status, err = install_hooks(root, capsnap)
    assert status == 0, err
    os.chown(interpreter, USER, USER)
    refused_unless_forced(root, capsnap, f"its interpreter {interpreter} ({interpreter} is owned "
                          f"by uid {USER})")


def test_interpreter_found_through_env(root: Path, plain: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    userbin = tmp_path / "userbin"
    userbin.mkdir()
    shutil.copyfile("/bin/dash", userbin / "capsnap-sh")
    (userbin / "capsnap-sh").chmod(0o755)
    os.chown(userbin, USER, USER)
    monkeypatch.setenv("PATH", f"{userbin}:/usr/bin:/bin")
    refused_unless_forced(root, script(plain / "capsnap", "/usr/bin/env capsnap-sh"),
                          f"its interpreter {userbin}/capsnap-sh (directory {userbin} is owned")


def test_root_owned_venv_capsnap_is_accepted(root: Path, venv: Path, plain: Path) -> None:
    status, err = install_hooks(root, venv_capsnap(venv, plain))
    assert status == 0, err
    status, err = install_hooks(root, venv_capsnap(venv, venv / "bin"))
    assert status == 0, err
    # ... and the same with one file of its capsnap package given to a user.
    cli = site_packages(venv) / "capsnap/cli.py"
    os.chown(cli, USER, USER)
    refused_unless_forced(root, venv / "bin/capsnap", f"in the capsnap package its interpreter "
                          f"{venv}/bin/python3 imports, {cli} is owned by uid {USER}")


def test_capsnap_in_a_user_owned_venv(root: Path, venv: Path) -> None:
    capsnap = venv_capsnap(venv, venv / "bin")
    chown_tree(venv)
    refused_unless_forced(root, capsnap, f"directory {venv} is owned by uid {USER}")


def test_root_script_run_by_a_user_owned_venv(root: Path, venv: Path, plain: Path) -> None:
    capsnap = venv_capsnap(venv, plain)
    chown_tree(venv)
    refused_unless_forced(root, capsnap, f"its interpreter {venv}/bin/python3 (")


@pytest.mark.parametrize("change", ["venv-dir", "site-packages", "package-dir", "pth"])
def test_venv_parts_a_user_can_change(root: Path, venv: Path, plain: Path,
                                      change: str) -> None:
    """Each of these alone hands the hooks to a user, the interpreter being root's."""
    site = site_packages(venv)
    capsnap = venv_capsnap(venv, plain)
    status, err = install_hooks(root, capsnap)
    assert status == 0, err
    if change == "venv-dir":
        os.chown(venv, USER, USER)
        reason = f"directory {venv} is owned by uid {USER}"
    elif change == "site-packages":
        site.chmod(0o777)
        reason = f"searches {site}, where directory {site} is writable by group or others"
    elif change == "package-dir":
        os.chown(site / "capsnap", USER, USER)
        reason = f"directory {site}/capsnap is owned by uid {USER}"
    else:
        (site / "evil.pth").write_text("import os\n")
        os.chown(site / "evil.pth", USER, USER)
        reason = f"runs the .pth files of {site}, where {site}/evil.pth is owned by uid {USER}"
    refused_unless_forced(root, capsnap, reason)


def test_python_whose_capsnap_cannot_be_found(root: Path, venv: Path, plain: Path) -> None:
    shutil.rmtree(site_packages(venv) / "capsnap")
    refused_unless_forced(root, venv_capsnap(venv, plain),
                          "cannot tell which capsnap package its interpreter")


def test_capsnap_added_by_a_pth_file_is_the_one_checked(root: Path, venv: Path,
                                                        plain: Path, tmp_path: Path) -> None:
    """An editable install: a .pth names the source tree, which must be root's too."""
    site = site_packages(venv)
    source = tmp_path / "source"
    shutil.move(site / "capsnap", source / "capsnap")
    (site / "__editable__.capsnap-0.pth").write_text(f"{source}\n")
    capsnap = venv_capsnap(venv, plain)
    status, err = install_hooks(root, capsnap)
    assert status == 0, err
    os.chown(source / "capsnap/__init__.py", USER, USER)
    refused_unless_forced(root, capsnap, f"{source}/capsnap/__init__.py is owned by uid {USER}")


@pytest.mark.parametrize("name", ["cap snap", "cap'snap", 'cap"snap', "cap$snap", "cap;snap",
                                  "cap\\snap", "cap%snap", "capsnap\n", "cap\tsnap", "capsnäp"])
def test_paths_that_need_quoting_are_refused_even_with_force(root: Path, plain: Path,
                                                             name: str) -> None:
    capsnap = script(plain / name, "/bin/sh")
    for options in ((), ("--force",)):
        status, err = install_hooks(root, capsnap, *options)
        assert status == REFUSED, err
        assert "a hook file cannot hold this path unquoted" in err
        assert "--force does not override" in err
    assert files_under(root) == ["etc", "etc/apt", "etc/dnf", "etc/dnf/plugins", "etc/dpkg"]


@pytest.mark.parametrize("site", ["lib/python3/dist-packages", "lib/python3.11/site-packages",
                                  "local/lib/python3.11/dist-packages"])
def test_python_installation_outside_a_venv(root: Path, tmp_path: Path, plain: Path,
                                            site: str) -> None:
    """A python with its own prefix (as /usr, or /opt/python): its site
    directories are found from where the real interpreter lives."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    interpreter = prefix / "bin/python3.11"
    shutil.copyfile(os.path.realpath("/usr/bin/python3"), interpreter)
    interpreter.chmod(0o755)
    (prefix / "bin/python3").symlink_to("python3.11")
    shutil.copytree(SRC / "capsnap", prefix / site / "capsnap",
                    ignore=shutil.ignore_patterns("__pycache__"))
    capsnap = script(plain / "capsnap", str(prefix / "bin/python3"),
                     "from capsnap.cli import main\nmain()\n")
    status, err = install_hooks(root, capsnap)
    assert status == 0, err
    (prefix / site).chmod(0o777)
    refused_unless_forced(root, capsnap, f"searches {prefix / site}, where directory "
                          f"{prefix / site} is writable by group or others (mode 0777)")


def test_a_path_too_long_for_dpkgs_configuration_lines_is_refused(root: Path,
                                                                   plain: Path) -> None:
    """dpkg reads its configuration into 1024 bytes a line (a longer line is
    "unbalanced quotes" and every dpkg command fails): the longest path that
    fits is accepted, one byte more is refused, and nothing is written."""
    source = (SRC.parent / "hooks/dpkg/capsnap.cfg").read_text()
    longest = max(len(line) for line in source.splitlines() if "/usr/bin/capsnap" in line)
    room = 1023 - longest + len("/usr/bin/capsnap")  # the longest executable path that fits
    deep = plain
    while len(str(deep)) < room - 20:
        deep = deep / ("d" * min(40, room - 20 - len(str(deep)) - 1 or 1))
        deep.mkdir(mode=0o755)
    fits = deep / ("c" * (room - len(str(deep)) - 1))
    too_long = deep / ("c" * (room - len(str(deep))))
    for executable in (fits, too_long):
        shutil.copyfile("/bin/true", executable)
        executable.chmod(0o755)
    assert len(str(fits)) == room
    status, err = install_hooks(root, too_long)
    assert status == REFUSED and "over the 1023 dpkg reads" in err, err
    assert not (root / "etc/dpkg/dpkg.cfg.d/capsnap").exists()
    status, err = install_hooks(root, fits)
    assert status == 0, err
    cfg = (root / "etc/dpkg/dpkg.cfg.d/capsnap").read_bytes()
    assert max(len(line) for line in cfg.splitlines()) == 1023
    assert hooked(root, fits)
