"""What generators write is read back literally: rpm macros and dpkg substvars.

rpm expands macros in a whole spec, %files and scriptlets alike (`%(cmd)`
runs cmd on the build host); dpkg-gencontrol expands ${name} in every field,
File-Capabilities included.  A declared path must come out of both as the
path, or be refused.
"""

from __future__ import annotations

import itertools
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from capsnap import generate, render
from capsnap.declarations.entries import escape_path, parse_lines
from capsnap.errors import InvalidInput
from tests.conftest import REPO, SRC, build_with_tree_addon, getxattr_or_none, needs_root, run_cli
from tests.packaging import dpkg, make_dpkg_root

needs_rpmspec = pytest.mark.skipif(shutil.which("rpmspec") is None, reason="rpmspec missing")
needs_debhelper = pytest.mark.skipif(
    shutil.which("dh") is None or shutil.which("dpkg-buildpackage") is None,
    reason="debhelper or dpkg-dev missing")

SPEC_HEAD = """\
Name: foo
Version: 1
Release: 1
Summary: t
License: MIT
%description
t
"""


def rpmspec_parsed(spec: Path, *load: Path) -> str:
    options = [arg for macros in load for arg in ("--load", str(macros))]
    done = subprocess.run(["rpmspec", *options, "-P", str(spec)], capture_output=True,
                          text=True, cwd=spec.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout


def odd_paths(canary: Path) -> list[str]:
    """Paths (as declared: octal escapes) that rpm would read as macros."""
    return [f"/usr/lib/foo/a%(id>{canary})b",           # the review's reproducer
            "/usr/lib/foo/b%{_bindir}%{?nil}c",
            "/usr/lib/foo/c%%d%",
            f"/usr/lib/foo/d%{{lua:os.execute('id >{canary}')}}e".replace(" ", "\\040")]


@needs_rpmspec
def test_generate_rpm_output_is_literal_after_rpmspec(tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    declared = odd_paths(canary)
    decl = tmp_path / "foo.capabilities"
    decl.write_text("".join(f"{path} cap_net_raw=ep\n" for path in declared))
    done = run_cli("generate", "rpm", "--from", str(decl), "--package", "foo",
                   "--output", str(tmp_path / "out"))
    assert done.status == 0, done.err
    spec = tmp_path / "foo.spec"
    spec.write_text(SPEC_HEAD + "%files\n%include out/foo.files\n%include out/foo.posttrans\n")
    parsed = rpmspec_parsed(spec)
    assert not canary.exists(), "rpm ran a command from a declared path"
    for written in declared:
        path = written.replace("\\040", " ")
        assert f'%caps(cap_net_raw=ep) "{path}"\n' in parsed, path
        quoted = shlex.quote(path)
        assert f"setcap -q -v 13=ep {quoted} >/dev/null 2>&1 || setcap 13=ep {quoted} " \
            in parsed, path
        warning = shlex.quote(f"foo: warning: cannot give {path} capabilities cap_net_raw=ep")
        assert f"|| echo {warning} >&2\n" in parsed, path


@needs_rpmspec
@pytest.mark.parametrize("template", ["rpm/files.j2", "rpm/posttrans.j2"])
def test_every_value_an_rpm_template_prints_is_escaped(tmp_path: Path, template: str) -> None:
    """Whatever a future caller puts in the context, no value is read as a macro."""
    canary = tmp_path / "CANARY"
    value = f"x%(id>{canary})%{{_bindir}}y"
    entry = {key: f"{key}-{value}" for key in
             ("path", "text", "canonical", "numeric", "fallback_mode")}
    rendered = render.render(template, package=f"p-{value}", entries=[entry], strict=False)
    spec = tmp_path / "t.spec"
    spec.write_text(SPEC_HEAD + ("%files\n" if template == "rpm/files.j2" else "") + rendered)
    parsed = rpmspec_parsed(spec)
    assert not canary.exists()
    shown = [key for key in entry if f"{key}-{value}" in parsed]
    source = (REPO / "templates" / template).read_text()
    printed = [key for key in entry if f"entry.{key}" in source]
    assert printed and shown == printed
    if template == "rpm/posttrans.j2":
        assert f"p-{value}" in parsed


@needs_rpmspec
def test_macros_take_escaped_arguments_literally(tmp_path: Path) -> None:
    """%capsnap_caps / %capsnap_posttrans: a spec writes %% for %, and gets %.

    (Already true before escaping was added to the generators: the macros'
    Lua output is not expanded again.  Kept so that a rewrite keeps it.)"""
    canary = tmp_path / "CANARY"
    path = f"/usr/lib/foo/a%(id>{canary})b"
    escaped = path.replace("%", "%%")
    spec = tmp_path / "m.spec"
    spec.write_text(SPEC_HEAD + f"%files\n%capsnap_caps {escaped} cap_net_raw=ep\n"
                    f"%posttrans\n%capsnap_posttrans {escaped} cap_net_raw=ep\n")
    parsed = rpmspec_parsed(spec, REPO / "templates/rpm/macros.capsnap")
    assert not canary.exists()
    assert f"%caps(cap_net_raw=ep) {path}\n" in parsed
    assert f"setcap 'cap_net_raw=ep' '{path}'" in parsed


def test_rpm_package_names_are_plain() -> None:
    for bad in ("fo%(id)o", "foo bar", "../foo", "-foo", "fo$o", ""):
        with pytest.raises(InvalidInput, match="package name"):
            generate.artifacts("rpm", [], bad)
    assert generate.artifacts("rpm", [], "libqt5.15-tools+x_y")["files"]


# --- dpkg-gencontrol's ${...} ------------------------------------------------------

SUBSTVAR_PATHS = ["/usr/lib/foo/a${Newline}/usr/bin/tail${Space}cap_dac_read_search=ep",
                  "/usr/lib/foo/b\\044{Space}c",   # the same through an octal escape
                  "/usr/lib/foo/c${}{Newline}d",    # dpkg-gencontrol's own escape, literally
                  "/usr/lib/foo/d$e$"]

SOURCE_CONTROL = """\
Source: foo
Maintainer: t <t@example.org>

Package: foo
Architecture: all
Description: t
 t
"""


def gencontrol_field(debian: Path, field: str) -> list[str]:
    """The lines of one field of the binary control dpkg-gencontrol writes."""
    (debian / "changelog").write_text(
        "foo (1) unstable; urgency=low\n\n  * t\n\n -- t <t@example.org>  "
        "Mon, 01 Jan 2024 00:00:00 +0000\n")
    done = subprocess.run(["dpkg-gencontrol", "-pfoo", "-Tdebian/foo.substvars",
                           "-Pdebian/foo", "-O"], cwd=debian.parent, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split(f"\n{field}:", 1)[1].split("\n")
    assert lines[0] == ""
    return [line[1:] for line in itertools.takewhile(lambda x: x.startswith(" "), lines[1:])]


@pytest.mark.skipif(shutil.which("dpkg-gencontrol") is None, reason="dpkg-dev missing")
@pytest.mark.parametrize("path", SUBSTVAR_PATHS)
def test_generate_deb_field_keeps_a_dollar_through_dpkg_gencontrol(tmp_path: Path,
                                                                    path: str) -> None:
    decl = tmp_path / "foo.capabilities"
    decl.write_text(f"/usr/lib/foo/fine cap_kill=ep\n{path} cap_net_raw=ep\n")
    wanted = sorted(["/usr/lib/foo/fine", path.replace("\\044", "$")])
    out = tmp_path / "out"
    done = run_cli("generate", "deb", "--from", str(decl), "--output", str(out))
    assert done.status == 0, done.err
    debian = tmp_path / "debian"
    debian.mkdir()
    # As dh_capsnap hands it over: a substitution variable ...
    (debian / "control").write_text(
        SOURCE_CONTROL + "XB-File-Capabilities: ${capsnap:File-Capabilities}\n")
    shutil.copy(out / "foo.substvars", debian / "foo.substvars")
    by_substvar = gencontrol_field(debian, "File-Capabilities")
    # ... and as a packager pastes the generated field into debian/control.
    (debian / "control").write_text(SOURCE_CONTROL + "XB-" + (out / "foo.control").read_text())
    (debian / "foo.substvars").write_text("")
    pasted = gencontrol_field(debian, "File-Capabilities")
    for field in (by_substvar, pasted):
        entries, bad = parse_lines(field)
        assert not bad
        assert [e.path for e in entries] == wanted, field
        assert "$" not in "".join(field)


def test_field_paths_read_back_through_the_declaration_parser() -> None:
    odd = "/a${Newline}b$${}{Space}\\#c $"
    line = generate.field_entries(parse_lines([f"{escape_path(odd)} cap_kill=ep"])[0])[0]
    assert "$" not in line
    assert parse_lines([line])[0][0].path == odd


def hello_caps_source(tmp_path: Path, capabilities: str, rules: str = "") -> Path:
    source = tmp_path / "hello-caps"
    shutil.copytree(REPO / "tests/fixtures/hello-caps", source)
    (source / "debian/hello-caps.capabilities").write_text(capabilities)
    if rules:
        with open(source / "debian/rules", "a", encoding="utf-8") as f:
            f.write(rules)
    return source


def build(source: Path, capsnap: Path | None = None) -> subprocess.CompletedProcess[str]:
    return build_with_tree_addon(source, capsnap)


@pytest.fixture
def capsnap_on_path(tmp_path: Path) -> Path:
    tools = tmp_path / "tools"
    tools.mkdir()
    wrapper = tools / "capsnap"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={SRC} exec /usr/bin/python3 -m capsnap \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


# A path that dpkg-gencontrol would split in two; the package ships it.
SPLIT_PATH = "/usr/lib/hello-caps/a${Newline}/usr/bin/tail${Space}cap_dac_read_search=ep"
INSTALL_SPLIT_PATH = """
SPLIT = debian/hello-caps/usr/lib/hello-caps/a$${Newline}/usr/bin
execute_after_dh_auto_install:
\tmkdir -p '$(SPLIT)'
\tcp /bin/true '$(SPLIT)/tail$${Space}cap_dac_read_search=ep'
"""


@needs_root
@needs_debhelper
def test_dh_capsnap_keeps_a_substvar_in_a_path_literal(tmp_path: Path,
                                                        capsnap_on_path: Path) -> None:
    source = hello_caps_source(tmp_path, f"{SPLIT_PATH} cap_net_raw=ep\n", INSTALL_SPLIT_PATH)
    built = build(source)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    deb = next(tmp_path.glob("hello-caps_*.deb"))
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "File-Capabilities"],
                            capture_output=True, text=True, check=True).stdout
    shown = SPLIT_PATH.replace("$", "\\044")
    assert fields == f"\n {shown} cap_net_raw=ep\n"

    # Installed, the one declared file gets its capability, and the file the
    # split field would have named (a canary in the scratch root) nothing.
    root = make_dpkg_root(tmp_path / "root")
    canary = root / "usr/bin/tail"
    canary.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile("/bin/true", canary)
    dpkg(root, "--force-depends", "-i", str(deb),
         env={"PATH": f"{capsnap_on_path.parent}:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert getxattr_or_none(root / SPLIT_PATH.lstrip("/")) is not None
    assert getxattr_or_none(canary) is None


@needs_debhelper
def test_dh_capsnap_checks_the_field_it_writes(tmp_path: Path, capsnap_on_path: Path) -> None:
    """A capsnap (an older one, say) that lets ${...} into the field: dh_capsnap
    refuses any '$' a later dpkg-gencontrol run would expand."""
    older = capsnap_on_path.parent / "capsnap-older"
    older.write_text(
        "#!/bin/sh\n"
        f"{capsnap_on_path} \"$@\" || exit\n"
        "while [ $# -gt 0 ]; do case $1 in --output) out=$2;; --package) pkg=$2;; esac; "
        "shift; done\n"
        "[ -z \"$out\" ] || sed -i '2s|$|${Newline}/usr/bin/tail${Space}cap_dac_read_search=ep|' "
        "\"$out/$pkg.control\"\n")
    older.chmod(0o755)
    source = hello_caps_source(tmp_path, "/usr/lib/hello-caps/bind-helper cap_net_raw=ep\n")
    built = build(source, older)
    assert built.returncode != 0, "built a package with an entry nobody declared"
    assert ("hello-caps: File-Capabilities line 1 would read /usr/lib/hello-caps/bind-helper"
            "\\040cap_net_raw=ep${Newline}/usr/bin/tail${Space}cap_dac_read_search=ep: a '$' "
            "that dpkg-gencontrol would expand") in built.stderr
    assert not list(tmp_path.glob("*.deb"))
