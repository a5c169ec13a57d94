"""capsnap as a Python distribution: the sdist and wheel, `pip install` under every
install scheme, and install-hooks for installs that are not a .deb."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from capsnap.hookfiles import HOOK_FILES
from tests.conftest import REPO, getxattr_or_none, needs_root
from tests.packaging import build_deb, dpkg, make_dpkg_root

pytestmark = needs_root

# What a copy of the tree leaves behind: the builds write into their source.
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build",
                                     "dist", ".hypothesis", ".mypy_cache", ".ruff_cache",
                                     ".pytest_cache")
DECLARATION = "/usr/lib/foo/helper cap_net_bind_service=+ep fallback=setuid:4755\n"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("source") / "capsnap"
    shutil.copytree(REPO, copy, ignore=_NOT_SOURCE)
    return copy


@pytest.fixture(scope="module")
def dists(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, and the wheel built from it (python -m build's way), with the
    build tools at hand: no isolation, nothing downloaded."""
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                            str(out), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    return {"sdist": next(out.glob("capsnap-*.tar.gz")),
            "wheel": next(out.glob("capsnap-*-py3-none-any.whl"))}


def test_twine_check_strict_passes(dists: dict[str, Path]) -> None:
    twine = shutil.which("twine")
    assert twine, "twine is missing: tests/ensure-packages installs it"
    checked = subprocess.run([twine, "check", "--strict", str(dists["sdist"]),
                              str(dists["wheel"])], capture_output=True, text=True,
                             env=dict(os.environ, NO_COLOR="1"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout


def _tracked(top: str) -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in (REPO / top).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def test_wheel_carries_license_data_man_page_and_completion(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        data = next(n.split("/")[0] for n in names if n.endswith(".data/scripts/capsnap"))
        info = data.replace(".data", ".dist-info")
        assert wheel.read(f"{info}/COPYING") == (REPO / "COPYING").read_bytes()
        assert "License-File: COPYING" in wheel.read(f"{info}/METADATA").decode()
        wanted = {f"{data}/data/share/man/man1/capsnap.1": "src/man/capsnap.1",
                  f"{data}/data/share/bash-completion/completions/capsnap":
                      "src/completion/capsnap"}
        # Every template, and every hook file install-hooks puts in place.
        wanted |= {f"capsnap/{name}": name for name in _tracked("templates")}
        wanted |= {f"capsnap/hooks/{name}": f"hooks/{name}" for name, *_ in HOOK_FILES}
        for member, original in sorted(wanted.items()):
            assert member in names, member
            assert wheel.read(member) == (REPO / original).read_bytes(), member


def test_sdist_carries_what_a_distribution_builds_and_tests_with(
        dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for name in ("COPYING", "README.md", "MANIFEST.in", "pyproject.toml", "setup.cfg",
                 "src/man/capsnap.1", "src/completion/capsnap", "src/debhelper/dh_capsnap",
                 "tests/run", "tests/conftest.py", "tests/unit/test_captext.py",
                 "tests/fixtures/hello-caps/debian/rules", *_tracked("templates"),
                 *_tracked("hooks")):
        assert name in names, name


# How each scheme is installed, and the environment that then finds it.
SCHEMES = ("prefix", "target", "user")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A scratch directory under a short name: the capsnap a scheme installs
    goes into dpkg's configuration lines, which hold 1023 bytes, and pytest's
    own directories are too deep for a user scheme's ~/.local/bin."""
    top = Path(tempfile.mkdtemp(prefix="capsnap-", dir="/tmp"))
    yield top
    shutil.rmtree(top)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_pip_scheme_then_generate_finds_templates_and_hooks(
        scheme: str, source: Path, dists: dict[str, Path], short_tmp: Path) -> None:
    tmp_path = short_tmp
    home, where = tmp_path / "home", tmp_path / scheme
    home.mkdir()
    # No checkout on the path, caches in the scratch home, nothing pointing
    # capsnap at its data.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONUSERBASE", "CAPSNAP_TEMPLATES", "CAPSNAP_HOOKS")}
    env |= {"HOME": str(home), "LC_ALL": "C.UTF-8"}
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
           "--disable-pip-version-check"]
    if scheme == "prefix":  # from the source tree: what a user types in a checkout
        pip += ["--prefix", str(where), str(source)]
    elif scheme == "target":
        pip += ["--target", str(where), str(dists["wheel"])]
    else:
        pip += ["--user", str(dists["wheel"])]
    installed = subprocess.run(pip, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr

    if scheme == "prefix":
        site = next(where.glob("lib/python3*/site-packages"))
        env["PYTHONPATH"], bindir, share = str(site), where / "bin", where / "share"
    elif scheme == "target":
        site = where
        env["PYTHONPATH"], bindir, share = str(where), where / "bin", where / "share"
    else:
        site = next(home.glob(".local/lib/python3*/site-packages"))
        bindir, share = home / ".local/bin", home / ".local/share"
    assert (share / "man/man1/capsnap.1").is_file()
    assert (share / "bash-completion/completions/capsnap").is_file()
    imported = subprocess.run([sys.executable, "-c", "import capsnap; print(capsnap.__file__)"],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
    assert imported.stdout.strip() == str(site / "capsnap/__init__.py"), imported.stderr

    capsnap = str(bindir / "capsnap")
    (tmp_path / "foo.capabilities").write_text(DECLARATION)
    for kind in ("deb", "rpm"):
        args = ["generate", kind, "--from", "foo.capabilities"]
        generated = subprocess.run([capsnap, *args], capture_output=True, text=True, env=env,
                                   cwd=tmp_path)
        assert generated.returncode == 0, generated.stderr
        # The same bytes as the checkout's templates give.
        expected = subprocess.run([sys.executable, "-m", "capsnap", *args], capture_output=True,
                                  text=True, env=dict(env, PYTHONPATH=str(REPO / "src")),
                                  cwd=tmp_path, check=True)
        assert "/usr/lib/foo/helper" in expected.stdout
        assert generated.stdout == expected.stdout

    root = tmp_path / "root"
    (root / "etc/dpkg").mkdir(parents=True)
    # --force: the scratch install's trust is not what this test is about.
    hooked = subprocess.run([capsnap, "--root", str(root), "install-hooks", "--executable",
                             capsnap, "--force"], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert hooked.returncode == 0, hooked.stderr
    assert f"{capsnap} hook dpkg-post-invoke" in \
        (root / "etc/dpkg/dpkg.cfg.d/capsnap").read_text()


def test_pip_install_then_hooks_restore_after_dpkg_upgrade(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    installed = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--no-build-isolation",
                                "--no-deps", str(source)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    capsnap = venv / "bin/capsnap"
    assert subprocess.run([str(capsnap), "--version"], capture_output=True,
                          text=True).stdout.startswith("capsnap ")

    root = make_dpkg_root(tmp_path / "root")
    (root / "etc/apt").mkdir(parents=True)
    done = subprocess.run([str(capsnap), "--root", str(root), "install-hooks"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    cfg = (root / "etc/dpkg/dpkg.cfg.d/capsnap").read_text()
    post_invoke = next(line for line in cfg.splitlines() if line.startswith("post-invoke="))
    assert post_invoke.startswith(f'post-invoke="if [ -x {capsnap} ]; then ')
    assert post_invoke.endswith(f'{capsnap} hook dpkg-post-invoke || [ $? -ge 128 ]; fi"')
    assert "/usr/bin/capsnap" not in cfg
    assert (root / "var/lib/capsnap").is_dir()  # where dpkg's pre-invoke marks the start
    assert (root / "etc/apt/apt.conf.d/05capsnap").exists()
    assert (root / "etc/capsnap/apt-pre-install-pkgs").stat().st_mode & 0o111

    # dpkg --root reads the host's dpkg.cfg.d, not the root's: give it the
    # installed file's lines as the options they are.
    # dpkg takes what is between a value's outer quotes as it is.
    options = [f"--{name}={value[1:-1]}" for name, _, value in
               (line.partition("=") for line in cfg.splitlines()
                if line and not line.startswith("#"))]
    v1 = build_deb(tmp_path, "foo", "1", {"/usr/lib/foo/helper": "/bin/true"},
                   file_capabilities=["/usr/lib/foo/helper cap_net_raw=ep"])
    v2 = build_deb(tmp_path, "foo", "2", {"/usr/lib/foo/helper": "/bin/true"},
                   file_capabilities=["/usr/lib/foo/helper cap_net_raw=ep"])
    for deb in (v1, v2):
        dpkg(root, *options, "-i", str(deb))
        assert getxattr_or_none(root / "usr/lib/foo/helper") is not None, deb.name

    removed = subprocess.run([str(capsnap), "--root", str(root), "uninstall-hooks"],
                             capture_output=True, text=True)
    assert removed.returncode == 0
    assert not (root / "etc/dpkg/dpkg.cfg.d/capsnap").exists()
