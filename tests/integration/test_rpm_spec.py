"""capsnap's spec as a Fedora reviewer reads it: rpmbuild -ba from the tarball
hooks/rpm/make-tarball makes, rpmlint with Fedora's rules, the module where
the system's python finds it, and the macros subpackage in a consumer spec."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, RpmBuild, needs_root
from tests.overlay import inside, overlay_supported, overlay_system, put
from tests.packaging import build_rpm

pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild missing")]

RPMLINT_CONFIG = REPO / "tests/fixtures/rpmlint/fedora.toml"


def query(rpmfile: Path, *args: str) -> str:
    return subprocess.run(["rpm", "-qp", *args, str(rpmfile)], capture_output=True,
                          text=True, check=True).stdout


def test_rpmbuild_ba_builds_every_package_from_the_tarball(capsnap_rpm_build: RpmBuild) -> None:
    version = re.search(r'__version__ = "(.*)"',
                        (REPO / "src/capsnap/__init__.py").read_text())
    assert version and capsnap_rpm_build.tarball.name == f"capsnap-{version[1]}.tar.gz"
    assert query(capsnap_rpm_build.srpm, "-l").split() == \
        ["capsnap-0.1.0.tar.gz", "capsnap.spec"]
    assert sorted(capsnap_rpm_build.rpms) == ["capsnap", "capsnap-dnf5-actions",
                                              "capsnap-rpm-macros",
                                              "python3-dnf-plugin-capsnap"]
    # %check ran the unit tests against the build root.
    assert re.search(r"^\d+ passed", capsnap_rpm_build.log, re.M), capsnap_rpm_build.log[-2000:]

    main = capsnap_rpm_build.rpms["capsnap"]
    files = query(main, "-l").split()
    sitelib = subprocess.run(["/usr/bin/python3", "-c", "import sysconfig; print(sysconfig."
                              "get_path('purelib', 'deb_system'))"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert f"{sitelib}/capsnap/cli.py" in files
    assert f"{sitelib}/capsnap/__pycache__/cli.cpython-311.pyc" in files
    assert "/usr/share/man/man1/capsnap.1.gz" in files
    assert "/usr/share/bash-completion/completions/capsnap" in files
    assert not [f for f in files if f.startswith("/usr/share/capsnap/hooks/rpm")]
    # (Fedora's %_docdir_fmt is %{NAME}, rpm's own %{NAME}-%{VERSION}.)
    assert re.fullmatch(r"/usr/share/licenses/capsnap(-0\.1\.0)?/COPYING\n",
                        query(main, "--licensefiles"))
    assert re.match(r"/usr/share/doc/capsnap(-0\.1\.0)?/README.md\n", query(main, "--docfiles"))
    assert "python3 >= 3.11" in query(main, "--requires").splitlines()
    macros = query(capsnap_rpm_build.rpms["capsnap-rpm-macros"], "-l").split()
    assert macros[0] == "/usr/lib/rpm/macros.d/macros.capsnap"
    assert all(f.startswith("/usr/share/licenses/capsnap-rpm-macros") for f in macros[1:])
    assert macros[-1].endswith("/COPYING")
    assert f"{sitelib}/dnf-plugins/capsnap_dnf.py" in \
        query(capsnap_rpm_build.rpms["python3-dnf-plugin-capsnap"], "-l").split()


@pytest.mark.skipif(shutil.which("rpmlint") is None, reason="rpmlint missing")
def test_rpmlint_with_fedoras_rules_finds_no_error(capsnap_rpm_build: RpmBuild) -> None:
    lint = subprocess.run(["rpmlint", "-c", str(RPMLINT_CONFIG),
                           str(REPO / "hooks/rpm/capsnap.spec"), str(capsnap_rpm_build.srpm),
                           *map(str, capsnap_rpm_build.rpms.values())],
                          capture_output=True, text=True)
    assert "5 packages and 1 specfiles checked" in lint.stdout, lint.stdout + lint.stderr
    errors = [line for line in lint.stdout.splitlines() if ": E: " in line]
    assert not errors, lint.stdout
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.skipif(not overlay_supported(), reason="no overlayfs here")
def test_the_installed_packages_work_where_they_put_things(
        tmp_path: Path, capsnap_rpm_build: RpmBuild) -> None:
    """install-hooks vouches for the module by python's own paths (with the
    module outside sys.path it needed --force); dnf finds the packaged plugin."""
    vpn = build_rpm(tmp_path / "pkgs", "vpn", "1.1", {"/usr/sbin/vpnc-ish": "/bin/true"})
    with overlay_system(tmp_path / "ov") as root:
        assert inside(root, "rpm", "--initdb").returncode == 0
        packages = [put(root, capsnap_rpm_build.rpms[name])
                    for name in ("capsnap", "python3-dnf-plugin-capsnap")]
        done = inside(root, "rpm", "-i", "--nodeps", *packages)
        assert done.returncode == 0, done.stderr
        where = inside(root, "/usr/bin/python3", "-Ic", "import capsnap; print(capsnap.__file__)")
        assert where.stdout.startswith("/usr/lib/python3/dist-packages/capsnap/"), where.stderr
        version = inside(root, "/usr/bin/python3", "-Ic", "import importlib.metadata as m; "
                         "print(m.version('capsnap'), m.distribution('capsnap').read_text("
                         "'INSTALLER'))")
        assert version.stdout.split() == ["0.1.0", "rpm"], version.stderr
        wired = inside(root, "capsnap", "install-hooks")
        assert wired.returncode == 0, wired.stderr
        assert (root / "etc/dpkg/dpkg.cfg.d/capsnap").is_file()
        decl = root / "tmp/bar.capabilities"
        decl.write_text("/usr/lib/bar/helper cap_net_raw=ep\n")
        generated = inside(root, "capsnap", "generate", "rpm", "--from", "/tmp/bar.capabilities")
        assert generated.returncode == 0, generated.stderr
        assert '%caps(cap_net_raw=ep) "/usr/lib/bar/helper"' in generated.stdout

        # No pluginpath option: dnf loads the plugin from where the rpm put it.
        installed = inside(root, "dnf", "-y", "--installroot=/tmp/scratch", "--releasever=1",
                           "--setopt=reposdir=/nonexistent", "--disablerepo=*", "install",
                           put(root, vpn))
        assert installed.returncode == 0, installed.stdout + installed.stderr
        recorded = inside(root, "capsnap", "--root", "/tmp/scratch", "diff", "--json")
        assert json.loads(recorded.stdout)["transaction"]["manager"] == "dnf", recorded.stderr


CONSUMER_SPEC = """\
%global debug_package %{nil}
%global _binaries_in_noarch_packages_terminate_build 0
Name: bar
Version: 1
Release: 1
Summary: t
License: MIT
BuildArch: noarch
AutoReqProv: no
%description
t
%package -n bar-tools
Summary: t
%description -n bar-tools
t
%install
mkdir -p %{buildroot}/usr/lib/bar
cp /bin/true %{buildroot}/usr/lib/bar/helper
cp /bin/true %{buildroot}/usr/lib/bar/ping
%files
%capsnap_caps /usr/lib/bar/helper cap_net_bind_service=ep
%files -n bar-tools
%capsnap_caps -n bar-tools /usr/lib/bar/ping cap_net_raw=ep cap_net_admin=ep
%posttrans
%capsnap_posttrans /usr/lib/bar/helper cap_net_bind_service=ep
%posttrans -n bar-tools
%capsnap_posttrans -n bar-tools /usr/lib/bar/ping cap_net_raw,cap_net_admin=ep
"""


def test_packaged_macros_serve_a_subpackage(tmp_path: Path, capsnap_rpm_build: RpmBuild) -> None:
    unpacked = tmp_path / "macros"
    unpacked.mkdir()
    subprocess.run(f"rpm2cpio {capsnap_rpm_build.rpms['capsnap-rpm-macros']} | cpio -idm",
                   shell=True, cwd=unpacked, check=True, capture_output=True)
    macros = unpacked / "usr/lib/rpm/macros.d/macros.capsnap"
    spec = tmp_path / "bar.spec"
    spec.write_text(CONSUMER_SPEC)
    top = tmp_path / "top"
    built = subprocess.run(["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {top}",
                            "--load", str(macros), str(spec)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    main = next((top / "RPMS").rglob("bar-1-*.rpm"))
    tools = next((top / "RPMS").rglob("bar-tools-1-*.rpm"))
    assert query(main, "--filecaps").strip() == "/usr/lib/bar/helper\tcap_net_bind_service=ep"
    assert query(tools, "--filecaps").strip() == "/usr/lib/bar/ping\tcap_net_admin,cap_net_raw=ep"
    assert "capsnap reapply --package 'bar' " in query(main, "--scripts")
    scripts = query(tools, "--scripts")
    assert "capsnap reapply --package 'bar-tools' " in scripts
    assert "setcap 'cap_net_raw,cap_net_admin=ep' '/usr/lib/bar/ping'" in scripts
    # rpm 4.16 (EL9) has no Lua `arg` table in parametric macros.
    assert not re.search(r"\barg\b", macros.read_text().split("\n%", 1)[1])
