"""Generated maintainer scripts, rpm snippets and dh_capsnap, checked by running them."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from capsnap import generate
from capsnap.declarations.entries import parse_lines
from tests.conftest import REPO, SRC, build_with_tree_addon, getxattr_or_none, needs_root, run_cli
from tests.packaging import dpkg, make_dpkg_root

pytestmark = needs_root

DECLARATION_SETS = {
    "one": ["/usr/lib/foo/helper cap_net_bind_service=+ep"],
    "several": ["/usr/lib/foo/ping cap_net_raw=ep fallback=setuid",
                "/usr/bin/foo-bpf cap_bpf,cap_perfmon=ep",
                "/opt/odd\\040name/tool cap_net_admin,cap_net_raw=p  # a path with a space"],
    "fallback-none": ["/usr/sbin/foo-time cap_sys_time=ep fallback=none"],
}


def entries_of(name: str) -> list[generate.Entry]:  # type: ignore[name-defined]
    entries, bad = parse_lines(DECLARATION_SETS[name])
    assert not bad
    return sorted(entries, key=lambda e: e.path)


def full_script(snippet: str) -> str:
    return "#!/bin/sh\nset -e\n" + snippet


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PATH directories: real tools minus setcap, a failing setcap, and capsnap."""
    top = tmp_path_factory.mktemp("tools")
    no_setcap = top / "no-setcap"
    no_setcap.mkdir()
    for tool in ("dpkg-divert", "dpkg-statoverride", "chmod", "head", "cat", "stat"):
        (no_setcap / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    failing = top / "failing-setcap"
    failing.mkdir()
    (failing / "setcap").write_text(
        "#!/bin/sh\n# A test double of libcap's setcap on a filesystem without xattrs.\n"
        "echo \"Failed to set capabilities on file '$2': Operation not supported\" >&2\n"
        "exit 1\n")
    (failing / "setcap").chmod(0o755)
    with_capsnap = top / "capsnap"
    with_capsnap.mkdir()
    (with_capsnap / "capsnap").write_text(
        f"#!/bin/sh\nPYTHONPATH={SRC} exec /usr/bin/python3 -m capsnap \"$@\"\n")
    (with_capsnap / "capsnap").chmod(0o755)
    # EPERM, as in a container without CAP_SETFCAP: no fallback for that.
    eperm = top / "eperm-setcap"
    eperm.mkdir()
    (eperm / "setcap").write_text(
        "#!/bin/sh\n# A test double of libcap's setcap without CAP_SETFCAP.\n"
        "echo 'unable to set CAP_SETFCAP effective capability: Operation not permitted' >&2\n"
        "exit 1\n")
    (eperm / "setcap").chmod(0o755)
    return {"no-setcap": no_setcap, "failing": failing, "capsnap": with_capsnap,
            "eperm": eperm}


def install_files(root: Path, entries: list[generate.Entry]) -> None:  # type: ignore[name-defined]
    make_dpkg_root(root)
    for entry in entries:
        target = root / entry.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile("/bin/true", target)
        target.chmod(0o755)


def run_postinst(script: Path, root: Path, path: str, action: str = "configure",
                 shell: str = "/bin/dash") -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "DPKG_ROOT": str(root),
           "DPKG_ADMINDIR": str(root / "var/lib/dpkg"), "LC_ALL": "C"}
    return subprocess.run([shell, str(script), action, ""], capture_output=True, text=True,
                          env=env)


@pytest.mark.parametrize("name", sorted(DECLARATION_SETS))
def test_every_artifact_passes_sh_n_and_shellcheck(tmp_path: Path, name: str) -> None:
    for kind in ("deb",):
        produced = generate.artifacts(kind, entries_of(name), "foo")
        for script in ("postinst", "postrm"):
            path = tmp_path / f"{kind}-{script}"
            path.write_text(full_script(produced[script]))
            assert subprocess.run(["sh", "-n", str(path)]).returncode == 0
            assert subprocess.run(["dash", "-n", str(path)]).returncode == 0
            if shutil.which("shellcheck"):
                check = subprocess.run(["shellcheck", "-s", "sh", str(path)],
                                       capture_output=True, text=True)
                assert check.returncode == 0, check.stdout
    posttrans = generate.artifacts("rpm", entries_of(name), "foo")["posttrans"]
    body = "\n".join(line for line in posttrans.splitlines() if line != "%posttrans")
    path = tmp_path / "posttrans"
    path.write_text(full_script(body + "\n"))
    assert subprocess.run(["dash", "-n", str(path)]).returncode == 0
    if shutil.which("shellcheck"):
        check = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout


def test_output_is_reproducible_and_sorted() -> None:
    entries = entries_of("several")
    first = generate.artifacts("deb", entries, "foo")
    second = generate.artifacts("deb", list(reversed(entries)), "foo")
    assert first == second
    assert first["postinst"].startswith("# Automatically added by capsnap\n")
    assert first["postinst"].rstrip().endswith("# End automatically added section")
    assert "capsnap_apply /usr/bin/foo-bpf 38,39=ep ''  # cap_bpf,cap_perfmon=ep" in \
        first["postinst"]
    assert first["control"] == (
        "File-Capabilities:\n"
        " /opt/odd\\040name/tool cap_net_admin,cap_net_raw=p\n"
        " /usr/bin/foo-bpf cap_perfmon,cap_bpf=ep\n"
        " /usr/lib/foo/ping cap_net_raw=ep fallback=setuid:4755\n")


def test_postinst_sets_caps_with_setcap_under_dash(tmp_path: Path, tools: dict[str, Path]) -> None:
    entries = entries_of("several")
    root = tmp_path / "root"
    install_files(root, entries)
    script = tmp_path / "postinst"
    script.write_text(full_script(generate.artifacts("deb", entries, "foo")["postinst"]))
    done = run_postinst(script, root, "/usr/sbin:/usr/bin:/sbin:/bin")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for entry in entries:
        out = subprocess.run(["getcap", str(root / entry.path.lstrip("/"))],
                             capture_output=True, text=True).stdout
        assert out.strip().endswith(generate.captext.format_text(entry.caps)), entry.path
    # Nothing happens on other actions.
    for entry in entries:
        os.removexattr(root / entry.path.lstrip("/"), "security.capability")
    assert run_postinst(script, root, "/usr/sbin:/usr/bin", action="triggered").returncode == 0
    assert all(getxattr_or_none(root / e.path.lstrip("/")) is None for e in entries)


@pytest.mark.parametrize("double", ["failing", "no-setcap"])
def test_postinst_falls_back_and_never_fails(tmp_path: Path, tools: dict[str, Path],
                                             double: str) -> None:
    entries = entries_of("several")
    root = tmp_path / "root"
    install_files(root, entries)
    script = tmp_path / "postinst"
    script.write_text(full_script(generate.artifacts("deb", entries, "foo")["postinst"]))
    path = f"{tools[double]}:{tools['no-setcap']}"
    done = run_postinst(script, root, path)
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.splitlines()
    assert len(warnings) == 3
    reason = "Operation not supported" if double == "failing" else "setcap is missing"
    assert all(w.startswith("foo: warning: cannot give ") and reason in w for w in warnings)
    ping = root / "usr/lib/foo/ping"
    assert stat.S_IMODE(ping.stat().st_mode) == 0o4755
    assert "falling back to mode 4755" in done.stderr
    assert stat.S_IMODE((root / "usr/bin/foo-bpf").stat().st_mode) == 0o755

    strict = tmp_path / "postinst-strict"
    strict.write_text(full_script(generate.artifacts("deb", entries, "foo",
                                                     strict=True)["postinst"]))
    failed = run_postinst(strict, root, path)
    assert failed.returncode == 1
    assert "error: file capabilities could not be applied (strict mode)" in failed.stderr


def test_postinst_honours_statoverride_and_diversions(tmp_path: Path) -> None:
    entries = entries_of("one")
    root = tmp_path / "root"
    install_files(root, entries)
    admin = root / "var/lib/dpkg"
    script = tmp_path / "postinst"
    script.write_text(full_script(generate.artifacts("deb", entries, "foo")["postinst"]))
    env_path = "/usr/sbin:/usr/bin:/sbin:/bin"

    # The override owns the mode, not the capability: capsnap reapply too
    # sets it and leaves the mode.
    (admin / "statoverride").write_text("root root 0750 /usr/lib/foo/helper\n")
    done = run_postinst(script, root, env_path)
    assert done.returncode == 0 and done.stderr == ""
    assert getxattr_or_none(root / "usr/lib/foo/helper") is not None
    assert stat.S_IMODE((root / "usr/lib/foo/helper").stat().st_mode) == 0o755
    os.removexattr(root / "usr/lib/foo/helper", "security.capability")
    (admin / "statoverride").write_text("")

    # Another package diverted the helper: the postinst acts on the real file.
    (admin / "diversions").write_text("/usr/lib/foo/helper\n/usr/lib/foo/helper.real\n:\n")
    shutil.copyfile("/bin/true", root / "usr/lib/foo/helper.real")
    done = run_postinst(script, root, env_path)
    assert done.returncode == 0, done.stderr
    assert getxattr_or_none(root / "usr/lib/foo/helper.real") is not None
    assert getxattr_or_none(root / "usr/lib/foo/helper") is None


def test_postinst_prefers_capsnap_when_installed(tmp_path: Path,
                                                  tools: dict[str, Path]) -> None:
    from tests.packaging import build_deb

    deb = build_deb(tmp_path, "foo", "1", {"/usr/lib/foo/helper": "/bin/true"},
                    file_capabilities=["/usr/lib/foo/helper cap_net_bind_service=ep"],
                    postinst=full_script(generate.artifacts("deb", entries_of("one"),
                                                            "foo")["postinst"]))
    root = make_dpkg_root(tmp_path / "root")
    env = {"PATH": f"{tools['capsnap']}:{tools['no-setcap']}:/usr/bin:/bin"}
    dpkg(root, "-i", str(deb), env=env)
    helper = root / "usr/lib/foo/helper"
    assert getxattr_or_none(helper) is not None  # set by capsnap, not setcap
    log = (root / "var/log/capsnap.log").read_text()
    assert 'result="restored"' in log and 'source="dpkg:foo 1"' in log


def test_rpm_macros_and_generated_spec_lines_give_filecaps(tmp_path: Path) -> None:
    if shutil.which("rpmbuild") is None:
        pytest.skip("rpmbuild missing")
    macros = REPO / "templates/rpm/macros.capsnap"
    topdir = tmp_path / "rpmbuild"
    for sub in ("SPECS", "SOURCES", "BUILD", "RPMS", "SRPMS", "BUILDROOT"):
        (topdir / sub).mkdir(parents=True)
    entries = entries_of("one")
    generated = generate.artifacts("rpm", entries, "bar")
    spec = topdir / "SPECS/bar.spec"
    spec.write_text(f"""\
%define _binaries_in_noarch_packages_terminate_build 0
%define debug_package %{{nil}}
Name: bar
Version: 1
Release: 1
Summary: capsnap macros test
License: GPL-2.0-or-later
BuildArch: noarch
AutoReqProv: no

%description
Uses capsnap's macros.

%install
mkdir -p %{{buildroot}}/usr/lib/foo %{{buildroot}}/usr/bin
cp /bin/true %{{buildroot}}/usr/lib/foo/helper
cp /bin/true %{{buildroot}}/usr/bin/bar-ping
chmod 0755 %{{buildroot}}/usr/lib/foo/helper %{{buildroot}}/usr/bin/bar-ping

%files
{generated["files"]}
%capsnap_caps /usr/bin/bar-ping cap_net_raw=ep cap_net_admin=ep

{generated["posttrans"]}
%capsnap_posttrans /usr/bin/bar-ping cap_net_raw,cap_net_admin=ep
""")
    built = subprocess.run(["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {topdir}",
                            "--load", str(macros), str(spec)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    rpmfile = next((topdir / "RPMS").rglob("*.rpm"))
    caps = subprocess.run(["rpm", "-qp", "--filecaps", str(rpmfile)], capture_output=True,
                          text=True, check=True).stdout
    assert "/usr/lib/foo/helper\tcap_net_bind_service=ep" in caps
    assert "/usr/bin/bar-ping\tcap_net_admin,cap_net_raw=ep" in caps
    script = subprocess.run(["rpm", "-qp", "--scripts", str(rpmfile)], capture_output=True,
                            text=True, check=True).stdout
    assert "capsnap reapply --package bar" in script
    assert "setcap 'cap_net_raw,cap_net_admin=ep' '/usr/bin/bar-ping'" in script


@pytest.fixture(scope="module")
def hello_caps(tmp_path_factory: pytest.TempPathFactory,
               tools: dict[str, Path]) -> Path:
    """The sample source package, built with dpkg-buildpackage and dh --with capsnap."""
    if shutil.which("dh") is None or shutil.which("dpkg-buildpackage") is None:
        pytest.skip("debhelper or dpkg-dev missing")
    top = tmp_path_factory.mktemp("build")
    source = top / "hello-caps"
    shutil.copytree(REPO / "tests/fixtures/hello-caps", source)
    built = build_with_tree_addon(source)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "dh_capsnap" in built.stdout
    return next(top.glob("hello-caps_*_amd64.deb"))


def test_dh_capsnap_builds_field_and_snippet(hello_caps: Path) -> None:
    fields = subprocess.run(["dpkg-deb", "-f", str(hello_caps)], capture_output=True,
                            text=True, check=True).stdout
    assert ("File-Capabilities:\n /usr/lib/hello-caps/bind-helper cap_net_bind_service=ep "
            "fallback=setuid:4755\n") in fields
    postinst = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(hello_caps)],
                              capture_output=True, check=True).stdout
    assert b"capsnap reapply --package hello-caps" in postinst
    assert b"# Automatically added by dh_capsnap/0.1.0" in postinst
    assert b"activate-noawait capsnap-reapply" in postinst
    if shutil.which("lintian"):
        lint = subprocess.run(["lintian", "--no-tag-display-limit", str(hello_caps)],
                              capture_output=True, text=True)
        errors = [line for line in lint.stdout.splitlines() if line.startswith("E:")]
        assert not errors, lint.stdout


def test_dh_capsnap_rejects_bad_declarations(tmp_path: Path, tools: dict[str, Path]) -> None:
    source = tmp_path / "hello-caps"
    shutil.copytree(REPO / "tests/fixtures/hello-caps", source)
    (source / "debian/hello-caps.capabilities").write_text(
        "# fine\n/usr/lib/hello-caps/bind-helper cap_net_bind_servise=ep\n")
    built = build_with_tree_addon(source)
    assert built.returncode != 0
    assert ("debian/hello-caps.capabilities:2: invalid capability text "
            "'cap_net_bind_servise=ep': unknown capability name 'cap_net_bind_servise'") in \
        built.stderr
    (source / "debian/hello-caps.capabilities").write_text("/usr/lib/nowhere cap_kill=ep\n")
    built = build_with_tree_addon(source)
    assert built.returncode != 0
    assert "/usr/lib/nowhere is not in debian/hello-caps" in built.stderr
    # A link, even to the package's own helper: capsnap never follows one.
    with open(source / "debian/rules", "a", encoding="utf-8") as f:
        f.write("\nexecute_after_dh_auto_install:\n\tln -s bind-helper "
                "debian/hello-caps/usr/lib/hello-caps/link\n")
    (source / "debian/hello-caps.capabilities").write_text(
        "/usr/lib/hello-caps/link cap_net_bind_service=ep\n")
    built = build_with_tree_addon(source)
    assert built.returncode != 0
    assert ("debian/hello-caps.capabilities:1: /usr/lib/hello-caps/link is a symbolic link "
            "in debian/hello-caps") in built.stderr


@pytest.mark.parametrize("with_capsnap", [True, False], ids=["capsnap", "setcap"])
def test_sample_package_installs_with_its_capabilities(
        tmp_path: Path, hello_caps: Path, tools: dict[str, Path], with_capsnap: bool) -> None:
    root = make_dpkg_root(tmp_path / "root")
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    if with_capsnap:
        path = f"{tools['capsnap']}:{path}"
    dpkg(root, "--force-depends", "-i", str(hello_caps), env={"PATH": path})
    helper = root / "usr/lib/hello-caps/bind-helper"
    assert subprocess.run(["getcap", str(helper)], capture_output=True,
                          text=True).stdout == f"{helper} cap_net_bind_service=ep\n"
    assert stat.S_IMODE(helper.stat().st_mode) == 0o755
    check = run_cli("--root", str(root), "check")
    assert check.status == 0, check.out + check.err


@pytest.mark.parametrize("with_capsnap", [True, False], ids=["capsnap", "setcap"])
def test_sample_package_on_a_filesystem_without_xattrs_falls_back(
        tmp_path: Path, hello_caps: Path, tools: dict[str, Path], with_capsnap: bool) -> None:
    mount = tmp_path / "ramfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount ramfs here")
    try:
        root = make_dpkg_root(mount / "root")
        path = "/usr/sbin:/usr/bin:/sbin:/bin"
        if with_capsnap:
            path = f"{tools['capsnap']}:{path}"
        done = dpkg(root, "--force-depends", "-i", str(hello_caps), env={"PATH": path})
        if with_capsnap:
            assert "capsnap: warning: /usr/lib/hello-caps/bind-helper: " in done.stderr
            assert "does not support file capabilities" in done.stderr
            assert "applied the declared fallback mode 4755" in done.stderr
        else:
            assert "hello-caps: warning: cannot give /usr/lib/hello-caps/bind-helper " \
                "capabilities 10=ep (setcap failed: Failed to set capabilities on file" in \
                done.stderr
            assert "Operation not supported); falling back to mode 4755" in done.stderr
        helper = root / "usr/lib/hello-caps/bind-helper"
        assert stat.S_IMODE(helper.stat().st_mode) == 0o4755
        status = dpkg(root, "-s", "hello-caps").stdout
        assert "Status: install ok installed" in status
        if with_capsnap:
            check = run_cli("--root", str(root), "check")
            assert check.status == 0, check.out
            assert "fallback" in check.out
    finally:
        subprocess.run(["umount", str(mount)])


def test_rpm_paths_with_spaces_quotes_and_percent_are_safe(tmp_path: Path) -> None:
    entries, bad = parse_lines(["/opt/odd\\040name/100%\\043/tool cap_net_raw=ep",
                                "/usr/bin/a$(touch\\040/tmp/capsnap-pwned)b cap_kill=ep"])
    assert not bad
    produced = generate.artifacts("rpm", entries, "foo")
    assert '%caps(cap_net_raw=ep) "/opt/odd name/100%%#/tool"' in produced["files"]
    body = "\n".join(line for line in produced["posttrans"].splitlines()
                     if line != "%posttrans")
    script = tmp_path / "posttrans"
    script.write_text(full_script(body + "\n"))
    if shutil.which("shellcheck"):
        check = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "setcap").write_text("#!/bin/sh\nexit 1\n")  # fails: the echo paths run
    (fake / "setcap").chmod(0o755)
    ran = subprocess.run(["/bin/dash", str(script)], env={"PATH": f"{fake}:/usr/bin:/bin"},
                         capture_output=True, text=True)
    assert "cannot give /usr/bin/a$(touch /tmp/capsnap-pwned)b capabilities" in ran.stderr
    assert not Path("/tmp/capsnap-pwned").exists()


def test_generate_takes_the_package_from_the_file_name(tmp_path: Path) -> None:
    decl = tmp_path / "libqt5.15-tools.capabilities"
    decl.write_text("/usr/bin/qt-helper cap_net_raw=ep\n")
    result = run_cli("generate", "deb", "--from", str(decl), "--only", "postrm")
    assert result.status == 0
    assert "capsnap forget libqt5.15-tools" in result.out


def test_postrm_purge_forgets_capsnaps_records(tmp_path: Path, tools: dict[str, Path]) -> None:
    from tests.packaging import build_deb

    entries = entries_of("one")
    produced = generate.artifacts("deb", entries, "foo")
    deb = build_deb(tmp_path, "foo", "1", {"/usr/lib/foo/helper": "/bin/true"},
                    file_capabilities=["/usr/lib/foo/helper cap_net_bind_service=ep"],
                    postinst=full_script(produced["postinst"]))
    postrm = tmp_path / "postrm"
    postrm.write_text(full_script(produced["postrm"]))
    root = make_dpkg_root(tmp_path / "root")
    env = {"PATH": f"{tools['capsnap']}:/usr/sbin:/usr/bin:/sbin:/bin"}
    dpkg(root, "-i", str(deb), env=env)
    record = root / "var/lib/capsnap/packages/foo"
    assert '"/usr/lib/foo/helper"' in record.read_text()
    for action in ("remove", "purge"):
        done = subprocess.run(["/bin/dash", str(postrm), action], capture_output=True, text=True,
                              env={**env, "DPKG_ROOT": str(root)})
        assert done.returncode == 0, done.stderr
        assert record.exists() == (action == "remove")


def test_postinst_falls_back_only_where_capabilities_cannot_be_stored(
        tmp_path: Path, tools: dict[str, Path]) -> None:
    """EPERM: a warning, the mode unchanged.  EOPNOTSUPP: the declared
    fallback.  Then a working setcap: the capability, and the fallback's
    setuid bit taken back.  A failing dpkg-divert or dpkg-statoverride
    fails nothing."""
    entries = entries_of("several")
    root = tmp_path / "root"
    install_files(root, entries)
    script = tmp_path / "postinst"
    script.write_text(full_script(generate.artifacts("deb", entries, "foo")["postinst"]))
    ping = root / "usr/lib/foo/ping"

    denied = run_postinst(script, root, f"{tools['eperm']}:{tools['no-setcap']}")
    assert denied.returncode == 0, denied.stderr
    ping_lines = [w for w in denied.stderr.splitlines() if "/usr/lib/foo/ping" in w]
    assert ping_lines == ["foo: warning: cannot give /usr/lib/foo/ping capabilities 13=ep "
                          "(setcap failed: unable to set CAP_SETFCAP effective capability: "
                          "Operation not permitted)"]
    assert stat.S_IMODE(ping.stat().st_mode) == 0o755

    unsupported = run_postinst(script, root, f"{tools['failing']}:{tools['no-setcap']}")
    assert unsupported.returncode == 0, unsupported.stderr
    assert stat.S_IMODE(ping.stat().st_mode) == 0o4755
    assert getxattr_or_none(ping) is None

    # dpkg-divert and dpkg-statoverride that fail outright (a damaged
    # database): still no failure, and no mode change without knowing.
    broken = tmp_path / "broken"
    broken.mkdir()
    for tool in ("dpkg-divert", "dpkg-statoverride"):
        (broken / tool).write_text("#!/bin/sh\necho broken >&2\nexit 2\n")
        (broken / tool).chmod(0o755)
    kept = run_postinst(script, root, f"{broken}:/usr/sbin:/usr/bin:/sbin:/bin")
    assert kept.returncode == 0, kept.stderr
    assert getxattr_or_none(ping) is not None
    assert stat.S_IMODE(ping.stat().st_mode) == 0o4755
    os.removexattr(ping, "security.capability")

    works = run_postinst(script, root, "/usr/sbin:/usr/bin:/sbin:/bin")
    assert works.returncode == 0 and works.stderr == "", works.stderr
    assert subprocess.run(["getcap", str(ping)], capture_output=True,
                          text=True).stdout.split()[-1] == "cap_net_raw=ep"
    assert stat.S_IMODE(ping.stat().st_mode) == 0o755


def test_reapply_takes_back_the_fallback_once_capabilities_hold(
        tmp_path: Path, hello_caps: Path, tools: dict[str, Path]) -> None:
    """capsnap's side of the convergence: a file left at its declared
    fallback mode (the filesystem could not hold capabilities then) gets the
    capability and loses the setuid bit, unless a dpkg-statoverride owns the
    mode."""
    root = make_dpkg_root(tmp_path / "root")
    dpkg(root, "--force-depends", "-i", str(hello_caps),
         env={"PATH": f"{tools['capsnap']}:/usr/sbin:/usr/bin:/sbin:/bin"})
    helper = root / "usr/lib/hello-caps/bind-helper"
    for override, mode in (("root root 4755 /usr/lib/hello-caps/bind-helper\n", 0o4755),
                           ("", 0o755)):
        (root / "var/lib/dpkg/statoverride").write_text(override)
        os.removexattr(helper, "security.capability")
        helper.chmod(0o4755)
        assert "fallback" in run_cli("--root", str(root), "check").out
        done = run_cli("--root", str(root), "reapply")
        assert done.status == 0, done.out + done.err
        assert getxattr_or_none(helper) is not None
        assert stat.S_IMODE(helper.stat().st_mode) == mode
