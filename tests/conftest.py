"""Shared test helpers: run the CLI in-process or as the hooks do."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass
class Result:
    status: int
    out: str
    err: str


def pytest_configure(config: pytest.Config) -> None:
    """As root, run the whole session in a mount namespace of its own.

    Overlays, ramfs and tmpfs mounts made by tests (and the /dev, /proc and
    /sys bound into overlays) then vanish with the test process, even when
    a run is killed by a timeout or a signal: nothing is left mounted on
    the machine.  Mounts stay private: none propagates back to the host.
    """
    if os.geteuid() != 0 or os.environ.get("CAPSNAP_TESTS_SHARED_MOUNTS"):
        return
    import ctypes

    clone_newns = 0x00020000
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(clone_newns) != 0:
        return  # not possible here (a container without CAP_SYS_ADMIN): as before
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)


def run_cli(*args: str) -> Result:
    """capsnap's main() in this process, with its own stdout and stderr."""
    from capsnap import cli

    out, err = io.BytesIO(), io.BytesIO()
    saved = sys.stdout, sys.stderr
    wrapped_out = io.TextIOWrapper(out, encoding="utf-8", errors="surrogateescape")
    wrapped_err = io.TextIOWrapper(err, encoding="utf-8", errors="surrogateescape")
    sys.stdout, sys.stderr = wrapped_out, wrapped_err
    try:
        try:
            status = cli.main(list(args))
        except SystemExit as exc:
            status = int(exc.code or 0)
        wrapped_out.flush()
        wrapped_err.flush()
        printed, complained = out.getvalue(), err.getvalue()
    finally:
        sys.stdout, sys.stderr = saved
    return Result(status, printed.decode("utf-8", "surrogateescape"),
                  complained.decode("utf-8", "surrogateescape"))


def capsnap_command(src: Path = SRC) -> list[str]:
    return [SYSTEM_PYTHON, "-m", "capsnap"]


def run_capsnap(*args: str, user: str | None = None, userns: bool = False,
                src: Path = SRC, check: bool = False) -> Result:
    """capsnap as a separate process under Debian's /usr/bin/python3."""
    cmd = [SYSTEM_PYTHON, "-m", "capsnap", *args]
    if userns:
        cmd = ["unshare", "-Ur", *cmd]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    env = dict(os.environ, PYTHONPATH=str(src), LC_ALL="C.UTF-8")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed {proc.returncode}: {proc.stderr}")
    return Result(proc.returncode, proc.stdout, proc.stderr)


def is_root() -> bool:
    # CAPSNAP_TESTS_UNPRIVILEGED: a package build's %check runs only what an
    # unprivileged build can, even when rpmbuild or dpkg-buildpackage is root.
    return os.geteuid() == 0 and not os.environ.get("CAPSNAP_TESTS_UNPRIVILEGED")


needs_root = pytest.mark.skipif(not is_root(), reason="needs root: sets file capabilities "
                                "and changes file ownership")


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A root-owned 0755 directory under /tmp that other users can traverse.

    pytest's tmp_path lives under a 0700 directory, where `nobody` could not
    run the test's programs.
    """
    path = Path(tempfile.mkdtemp(prefix="capsnap-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def ramfs_at(mount: Path) -> Iterator[Path]:
    """A ramfs mounted at `mount` (made here): a filesystem that cannot hold
    capabilities (EOPNOTSUPP, as NFS).  The session's own mount namespace
    (pytest_configure) drops it even when a run is killed."""
    mount.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount ramfs here")
    try:
        mount.chmod(0o755)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def copy_binary(source: str, dest: Path, mode: int = 0o755) -> Path:
    shutil.copyfile(os.path.realpath(source), dest)
    dest.chmod(mode)
    return dest


def getxattr_or_none(path: Path | str) -> bytes | None:
    try:
        return os.getxattr(path, "security.capability", follow_symlinks=False)
    except OSError:
        return None


# What a buildd gives dpkg-buildpackage: no virtual environment or pyenv
# python3 first on PATH (debian/rules takes python3 from PATH).
BUILD_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="session")
def capsnap_debs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """capsnap's own .debs (python3-capsnap, capsnap, dh-capsnap), built once
    per test run from a copy of the tree; install them together."""
    if shutil.which("dpkg-buildpackage") is None or shutil.which("dh") is None:
        pytest.skip("dpkg-dev or debhelper missing")
    top = tmp_path_factory.mktemp("debbuild")
    source = top / "capsnap"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"))
    # The unit tests ran already: nocheck.
    built = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=source,
                           capture_output=True, text=True,
                           env=dict(os.environ, PATH=BUILD_PATH, DEB_BUILD_OPTIONS="nocheck"))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    debs = sorted(top.glob("*_all.deb"))
    assert [d.name.split("_")[0] for d in debs] == ["capsnap", "dh-capsnap", "python3-capsnap"]
    return debs


def build_with_tree_addon(source: Path, capsnap: Path | None = None) \
        -> subprocess.CompletedProcess[str]:
    """dpkg-buildpackage -b of a source package using dh-sequence-capsnap,
    with this checkout's dh_capsnap, sequence, autoscripts and capsnap
    (CAPSNAP, or `capsnap` to run instead)."""
    from capsnap import generate

    work = source.parent / f"{source.name}.addon"
    (work / "autoscripts").mkdir(parents=True, exist_ok=True)
    for name, text in generate.autoscripts().items():
        (work / "autoscripts" / name).write_text(text)
    wrapper = work / "capsnap"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={SRC} exec {SYSTEM_PYTHON} -m capsnap \"$@\"\n")
    wrapper.chmod(0o755)
    env = dict(os.environ, PATH=f"{SRC / 'debhelper'}:{BUILD_PATH}",
               PERL5LIB=str(SRC / "debhelper"), DH_DATAFILES=str(work),
               CAPSNAP=str(capsnap or wrapper))
    # -d: dh-sequence-capsnap is this checkout's, not an installed package.
    return subprocess.run(["dpkg-buildpackage", "-d", "-us", "-uc", "-b"], cwd=source,
                          env=env, capture_output=True, text=True)


@dataclass
class RpmBuild:
    """What `rpmbuild -ba` made of hooks/rpm/capsnap.spec and its tarball."""
    tarball: Path
    srpm: Path
    rpms: dict[str, Path]  # by package name
    log: str


@pytest.fixture(scope="session")
def capsnap_rpm_build(tmp_path_factory: pytest.TempPathFactory) -> RpmBuild:
    """capsnap's rpms, built once per test run as a packager would: Source0
    made by hooks/rpm/make-tarball from this checkout, then rpmbuild -ba
    (%prep from the tarball, %check runs the unit tests)."""
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild missing")
    top = tmp_path_factory.mktemp("rpmbuild")
    sources = top / "SOURCES"
    sources.mkdir()
    made = subprocess.run([str(REPO / "hooks/rpm/make-tarball"), str(sources)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    tarball = Path(made.stdout.strip())
    # --nodeps: the BuildRequires carry Fedora's names, and this rpm's
    # database is empty.  __brp_compress: Debian's brp-compress is a bash
    # script with #!/bin/sh, so under dash it compresses nothing (Fedora's
    # build root gzips man pages, and rpmlint expects it).
    built = subprocess.run(["rpmbuild", "-ba", "--nodeps", "--define", f"_topdir {top}",
                            "--define", f"_sourcedir {sources}",
                            "--define", "__brp_compress /bin/bash %{_rpmconfigdir}/brp-compress "
                            "%{_prefix}", str(REPO / "hooks/rpm/capsnap.spec")],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    rpms = {}
    for rpmfile in (top / "RPMS").rglob("*.rpm"):
        name = subprocess.run(["rpm", "-qp", "--qf", "%{NAME}", str(rpmfile)],
                              capture_output=True, text=True, check=True).stdout
        rpms[name] = rpmfile
    srpm = next((top / "SRPMS").glob("capsnap-*.src.rpm"))
    return RpmBuild(tarball, srpm, rpms, built.stdout + built.stderr)


@pytest.fixture(scope="session")
def capsnap_rpm(capsnap_rpm_build: RpmBuild) -> Path:
    """capsnap's own rpm (the main package, with the file triggers)."""
    rpmfile = capsnap_rpm_build.rpms["capsnap"]
    triggers = subprocess.run(["rpm", "-qp", "--filetriggers", str(rpmfile)],
                              capture_output=True, text=True, check=True).stdout
    assert "transfiletriggerun" in triggers and "transfiletriggerin" in triggers
    assert "/usr/bin/capsnap hook rpm-pre" in triggers
    return rpmfile
