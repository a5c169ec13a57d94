"""Builders for real Debian and RPM packages and scratch package-manager roots.

Everything here drives the real tools (dpkg-deb, dpkg, dpkg-query, rpmbuild,
rpm), so the tests that use it exercise what dpkg and rpm actually record.

Scratch roots:

* dpkg: ``make_dpkg_root(ROOT)`` lays out ROOT/var/lib/dpkg (the admindir that
  ``dpkg --root ROOT`` uses, so the status file is ROOT/var/lib/dpkg/status);
  ``dpkg()`` runs maintainer scripts chrootless, with DPKG_ROOT=ROOT set by dpkg.
* rpm: Debian's rpm 4.18 does NOT keep its database in /var/lib/rpm.  Its
  /usr/lib/rpm/macros has ``%_dbpath %(bash -c 'echo ~/.rpmdb')``, so as root
  ``rpm --root ROOT`` keeps a sqlite database in ROOT/root/.rpmdb
  (rpmdb.sqlite, plus -wal/-shm files and .rpm.lock).  The path follows $HOME
  at the time rpm (or the python bindings) evaluate the macro; ``rpm_dbpath()``
  reports the current value.  ``rpm.TransactionSet(str(ROOT))`` from python3-rpm
  evaluates the same macro, so it finds what ``rpm_install()`` wrote as long as
  $HOME is unchanged.  The helpers here never pass --dbpath.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

__all__ = [
    "build_deb",
    "build_rpm",
    "dpkg",
    "dpkg_install",
    "dpkg_remove",
    "make_dpkg_root",
    "make_rpm_root",
    "rpm",
    "rpm_dbpath",
    "rpm_install",
]

FileContent = str | Path | bytes

MAINTAINER = "capsnap tests <capsnap-tests@example.invalid>"
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
BIN_DIRS = ("/usr/local/bin", "/usr/bin", "/bin")


def _run(cmd: list[str], check: bool, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed with status {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}")
    return proc


def _with_sbin(path: str) -> str:
    """PATH with /usr/sbin and /sbin (and the bin dirs) present."""
    parts = [p for p in path.split(":") if p]
    for directory in (*SBIN_DIRS, *BIN_DIRS):
        if directory not in parts:
            parts.append(directory)
    return ":".join(parts)


def _stage_files(tree: Path, files: dict[str, FileContent],
                 modes: dict[str, int] | None = None) -> None:
    """Put each install path of ``files`` under ``tree`` with its mode.

    A Path, or a str starting with "/", names an existing file to copy
    (symlinks followed), default mode 0755.  bytes, or any other str (as
    UTF-8 text), is the content itself, default mode 0644.
    """
    modes = modes or {}
    unknown = set(modes) - set(files)
    if unknown:
        raise ValueError(f"modes given for paths not in files: {sorted(unknown)}")
    for install_path, content in files.items():
        if not install_path.startswith("/") or install_path.rstrip("/") == "":
            raise ValueError(f"install path must be absolute: {install_path!r}")
        dest = tree / install_path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Directories made here are 0755 whatever the umask.
        for parent in dest.relative_to(tree).parents:
            (tree / parent).chmod(0o755)
        if isinstance(content, Path) or (isinstance(content, str) and content.startswith("/")):
            source = Path(content)
            if not source.is_file():
                raise FileNotFoundError(f"source file for {install_path} not found: {source}")
            shutil.copyfile(os.path.realpath(source), dest)
            default = 0o755
        else:
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            dest.write_bytes(data)
            default = 0o644
        dest.chmod(modes.get(install_path, default))


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------- dpkg


def make_dpkg_root(root: Path) -> Path:
    """Create a scratch dpkg root: root/var/lib/dpkg/{info,updates,triggers}, an empty
    root/var/lib/dpkg/status, root/var/log, root/etc/dpkg/dpkg.cfg.d, root/usr/bin, root/usr/lib.
    Returns root."""
    admindir = root / "var" / "lib" / "dpkg"
    for directory in (admindir / "info", admindir / "updates", admindir / "triggers",
                      root / "var" / "log", root / "etc" / "dpkg" / "dpkg.cfg.d",
                      root / "usr" / "bin", root / "usr" / "lib"):
        directory.mkdir(parents=True, exist_ok=True)
    (admindir / "status").touch()
    return root


def build_deb(outdir: Path, name: str, version: str, files: dict[str, str | Path | bytes],
              file_capabilities: list[str] | None = None, extra_control: str = "",
              postinst: str | None = None, modes: dict[str, int] | None = None,
              conffiles: list[str] | None = None) -> Path:
    """Build NAME_VERSION_all.deb in outdir with ``dpkg-deb --root-owner-group --build``.

    ``files`` maps an absolute install path to a source file to copy (a Path or a
    str starting with "/", default mode 0755) or to content (bytes, or any other
    str as UTF-8 text; default mode 0644).  ``modes`` overrides per install path.
    ``file_capabilities`` entries ("/path cap_x=ep") become a multi-line
    File-Capabilities field whose first line is empty.  ``extra_control`` is
    appended verbatim to the control file (a final newline is added if missing).
    ``postinst`` is written verbatim to DEBIAN/postinst, mode 0755, so it needs
    its own "#!" line.  ``conffiles`` lists install paths to mark as conffiles
    (DEBIAN/conffiles).  The staging tree is outdir/NAME_VERSION.debroot.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    bare_version = version.split(":", 1)[1] if ":" in version else version
    stage = _fresh_dir(outdir / f"{name}_{bare_version}.debroot")
    _stage_files(stage, files, modes)
    debian = stage / "DEBIAN"
    debian.mkdir()
    debian.chmod(0o755)

    control = textwrap.dedent(f"""\
        Package: {name}
        Version: {version}
        Architecture: all
        Maintainer: {MAINTAINER}
        Description: capsnap test package {name}
         Built by tests/packaging.py for capsnap's tests.
        """)
    if file_capabilities:
        control += "File-Capabilities:\n" + "".join(f" {entry}\n" for entry in file_capabilities)
    if extra_control:
        control += extra_control if extra_control.endswith("\n") else extra_control + "\n"
    (debian / "control").write_text(control, encoding="utf-8")
    (debian / "control").chmod(0o644)

    if conffiles:
        (debian / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))
        (debian / "conffiles").chmod(0o644)

    if postinst is not None:
        (debian / "postinst").write_text(postinst, encoding="utf-8")
        (debian / "postinst").chmod(0o755)

    deb = outdir / f"{name}_{bare_version}_all.deb"
    _run(["dpkg-deb", "--root-owner-group", "--build", str(stage), str(deb)], check=True)
    return deb


def dpkg(root: Path, *args: str, check: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``dpkg --root ROOT --force-script-chrootless --force-not-root
    --log=ROOT/var/log/dpkg.log ARGS``, capturing text output.

    ``env`` is added to the current environment.  PATH always includes /usr/sbin
    and /sbin: dpkg refuses to run without ldconfig and start-stop-daemon on PATH.
    With ``check``, a failure raises AssertionError carrying stdout and stderr.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    full_env["PATH"] = _with_sbin(full_env.get("PATH", ""))
    cmd = ["dpkg", "--root", str(root), "--force-script-chrootless", "--force-not-root",
           f"--log={root / 'var' / 'log' / 'dpkg.log'}", *args]
    return _run(cmd, check=check, env=full_env)


def dpkg_install(root: Path, deb: Path) -> None:
    """``dpkg -i DEB`` into the scratch root."""
    dpkg(root, "-i", str(deb))


def dpkg_remove(root: Path, package: str, purge: bool = False) -> None:
    """``dpkg -r PACKAGE`` (or ``-P`` with purge) in the scratch root."""
    dpkg(root, "-P" if purge else "-r", package)


# --------------------------------------------------------------------------- rpm


def _spec_path(path: str) -> str:
    """An install path as a %files entry: % doubled, quoted if it has blanks."""
    escaped = path.replace("%", "%%")
    if any(c.isspace() for c in path):
        if '"' in path:
            raise ValueError(f"cannot put a path with blanks and quotes in %files: {path!r}")
        return f'"{escaped}"'
    return escaped


def build_rpm(outdir: Path, name: str, version: str, files: dict[str, str | Path | bytes],
              caps: dict[str, str] | None = None, release: str = "1") -> Path:
    """Build NAME-VERSION-RELEASE.noarch.rpm with ``rpmbuild -bb`` and move it to outdir.

    The private _topdir is outdir/NAME-VERSION-RELEASE.rpmbuild; ``files`` is
    staged (as in build_deb: copies 0755, contents 0644) under its SOURCES/tree,
    which %install copies into the buildroot.  Every file is owned by root.
    ``caps`` maps install paths to capability text, listed as ``%caps(TEXT) /path``.
    """
    caps = caps or {}
    unknown = set(caps) - set(files)
    if unknown:
        raise ValueError(f"caps given for paths not in files: {sorted(unknown)}")
    outdir.mkdir(parents=True, exist_ok=True)
    topdir = _fresh_dir(outdir / f"{name}-{version}-{release}.rpmbuild")
    for sub in ("BUILD", "BUILDROOT", "RPMS", "SOURCES", "SPECS", "SRPMS"):
        (topdir / sub).mkdir()
    tree = topdir / "SOURCES" / "tree"
    tree.mkdir()
    _stage_files(tree, files)

    file_lines = []
    for install_path in files:
        entry = _spec_path(install_path)
        if install_path in caps:
            file_lines.append(f"%caps({caps[install_path]}) {entry}")
        else:
            file_lines.append(entry)
    spec = "\n".join([
        "%define _binaries_in_noarch_packages_terminate_build 0",
        "%define debug_package %{nil}",
        "%define _build_id_links none",
        "%define __os_install_post %{nil}",
        f"Name: {name}",
        f"Version: {version}",
        f"Release: {release}",
        f"Summary: capsnap test package {name}",
        "License: GPL-2.0-or-later",
        "BuildArch: noarch",
        "AutoReqProv: no",
        "",
        "%description",
        "Built by tests/packaging.py for capsnap's tests.",
        "",
        "%install",
        "mkdir -p %{buildroot}",
        "cp -a %{_sourcedir}/tree/. %{buildroot}/",
        "",
        "%files",
        "%defattr(-,root,root,-)",
        *file_lines,
        "",
    ])
    specfile = topdir / "SPECS" / f"{name}.spec"
    specfile.write_text(spec, encoding="utf-8")
    _run(["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {topdir}", str(specfile)],
         check=True)
    built = topdir / "RPMS" / "noarch" / f"{name}-{version}-{release}.noarch.rpm"
    if not built.is_file():
        found = sorted(str(p) for p in (topdir / "RPMS").rglob("*.rpm"))
        raise AssertionError(f"rpmbuild did not produce {built}; found {found}")
    return Path(shutil.move(built, outdir / built.name))


def make_rpm_root(root: Path) -> Path:
    """``rpm --root ROOT --initdb`` (database in ROOT + rpm_dbpath()).  Returns root."""
    root.mkdir(parents=True, exist_ok=True)
    rpm(root, "--initdb")
    return root


def rpm(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``rpm --root ROOT ARGS``, capturing text output; AssertionError on failure
    when ``check``."""
    return _run(["rpm", "--root", str(root), *args], check=check)


def rpm_install(root: Path, rpmfile: Path, reinstall: bool = False) -> None:
    """``rpm --root ROOT -i --nodeps RPM`` (``--reinstall`` instead of -i with reinstall).
    Scriptlets run (no --noscripts)."""
    rpm(root, "--reinstall" if reinstall else "-i", "--nodeps", str(rpmfile))


def rpm_dbpath() -> str:
    """The database path rpm uses inside a --root, as rpm itself evaluates it now
    ("/root/.rpmdb" on Debian as root with HOME=/root)."""
    return _run(["rpm", "--eval", "%{_dbpath}"], check=True).stdout.strip()
