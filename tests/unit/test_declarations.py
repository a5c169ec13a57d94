"""Declaration syntax, local files and which declaration wins (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capsnap.captext import CapSet
from capsnap.declarations import Catalogue, Declaration, local
from capsnap.declarations.entries import Fallback, escape_path, parse_entry, parse_lines
from capsnap.errors import InvalidInput
from capsnap.paths import SystemPaths

RAW = 1 << 13
BIND = 1 << 10


def test_entry_with_spaces_in_text_options_and_reason() -> None:
    entry = parse_entry("/usr/lib/x/helper cap_net_raw=ep cap_chown=eip fallback=setuid:4750 "
                        "owner=iputils  # pings", 7)
    assert entry is not None
    assert entry.path == "/usr/lib/x/helper"
    assert entry.text == "cap_net_raw=ep cap_chown=eip"
    assert entry.caps == CapSet(RAW | 1, RAW | 1, 1)
    assert entry.fallback == Fallback("setuid", 0o4750)
    assert (entry.owner, entry.comment, entry.line) == ("iputils", "pings", 7)
    assert parse_entry(entry.format(), 7) == entry


def test_escaped_paths_round_trip() -> None:
    path = "/opt/my app/#1\\bin"
    line = f"{escape_path(path)} cap_net_raw=ep"
    assert line == "/opt/my\\040app/\\0431\\134bin cap_net_raw=ep"
    entry = parse_entry(line)
    assert entry is not None and entry.path == path


@pytest.mark.parametrize(("line", "message"), [
    ("usr/bin/x cap_net_raw=ep", "not absolute"),
    ("/usr/bin/x", "no capability text"),
    ("/usr/bin/x cap_net_rawr=ep", "unknown capability name"),
    ("/usr/bin/x cap_net_raw=ep fallback=suid", "fallback must be"),
    ("/usr/bin/x cap_net_raw=ep fallback=setuid:0755", "setuid bit"),
    ("/usr/bin/x cap_net_raw=ep cap_kill=p", "cap_kill not effective"),
])
def test_bad_entries(line: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_entry(line)
    assert message in str(info.value)


def test_a_bad_line_never_hides_the_good_ones() -> None:
    entries, bad = parse_lines(["# comment", "", "/a cap_net_raw=ep", "/b cap_nope=ep",
                                "/c cap_net_bind_service=ep"])
    assert [e.path for e in entries] == ["/a", "/c"]
    assert [(b.number, b.reason) for b in bad] == [(4, "invalid capability text (clause 1)")]
    assert "cap_nope" in bad[0].detail


def _decl(path: str, caps: CapSet, source: str, package: str | None = None) -> Declaration:
    return Declaration(path=path, text="", caps=caps, source=source, package=package,
                       version="1")


def test_local_wins_and_package_disagreement_is_a_conflict() -> None:
    catalogue = Catalogue([
        _decl("/x", CapSet(RAW, RAW, 0), "dpkg", "a"),
        _decl("/x", CapSet(BIND, BIND, 0), "local"),
        _decl("/y", CapSet(RAW, RAW, 0), "dpkg", "a"),
        _decl("/y", CapSet(BIND, BIND, 0), "rpm", "b"),
        _decl("/z", CapSet(RAW, RAW, 0), "dpkg", "a:amd64"),
        _decl("/z", CapSet(RAW, RAW, 0), "dpkg", "a:i386"),
    ], [], [])
    resolved = {r.path: r for r in catalogue.resolve()}
    assert resolved["/x"].winner is not None and resolved["/x"].winner.source == "local"
    assert [d.source for d in resolved["/x"].overridden] == ["dpkg"]
    assert resolved["/y"].winner is None and resolved["/y"].in_conflict
    assert resolved["/z"].winner is not None and not resolved["/z"].in_conflict


def test_declare_and_undeclare_keep_comments_and_write_atomically(tmp_path: Path) -> None:
    paths = SystemPaths(root=str(tmp_path))
    file, replaced = local.declare(paths, "/usr/local/bin/python-web",
                                   "cap_net_bind_service=+ep", "binds port 80", None, 41)
    assert not replaced
    content = Path(file).read_text()
    assert content.startswith("# Local capability declarations")
    Path(file).write_text(content + "# my own note\n")
    file2, replaced = local.declare(paths, "/usr/local/bin/python-web", "cap_net_raw=ep",
                                    None, None, 41)
    assert (file2, replaced) == (file, True)
    text = Path(file).read_text()
    assert "/usr/local/bin/python-web cap_net_raw=ep  # binds port 80" in text
    assert "# my own note" in text
    decls, problems, _ = local.read(paths, 41)
    assert [(d.path, d.caps, d.reason) for d in decls] == [
        ("/usr/local/bin/python-web", CapSet(RAW, RAW, 0), "binds port 80")]
    assert not problems
    local.undeclare(paths, "/usr/local/bin/python-web")
    assert "python-web" not in Path(file).read_text()
    assert "# my own note" in Path(file).read_text()
    assert not [p for p in Path(file).parent.iterdir() if p.name.startswith(".")]
    with pytest.raises(InvalidInput):
        local.undeclare(paths, "/usr/local/bin/python-web")


def test_corrupt_local_file_is_named_and_others_still_count(tmp_path: Path) -> None:
    paths = SystemPaths(root=str(tmp_path))
    directory = Path(paths.local_declarations_dir)
    directory.mkdir(parents=True)
    (directory / "a.capabilities").write_bytes(b"/x cap_net_raw=ep\n\xff\xfe garbage\n")
    (directory / "b.capabilities").write_text("/y cap_net_raw=ep\n/z nonsense=\n")
    (directory / "ignored.txt").write_text("/w cap_net_raw=ep\n")
    decls, problems, _ = local.read(paths, 41)
    assert [d.path for d in decls] == ["/y"]
    assert [p.where for p in problems] == [str(directory / "a.capabilities"),
                                          f"{directory / 'b.capabilities'}:2"]
    assert "not UTF-8" in problems[0].message


def test_paths_honour_dpkg_environment() -> None:
    paths = SystemPaths.select(environ={"DPKG_ROOT": "/srv/img",
                                        "DPKG_ADMINDIR": "/srv/img/var/lib/dpkg"})
    assert paths.root == "/srv/img"
    assert paths.dpkg_status == "/srv/img/var/lib/dpkg/status"
    assert paths.local_declarations_file == \
        "/srv/img/etc/capsnap/capabilities.d/local.capabilities"
    assert SystemPaths.select(environ={"DPKG_ROOT": ""}).root == "/"
    assert SystemPaths.select(root="/r", admindir="/a", environ={}).dpkg_status == "/a/status"


def test_paths_are_normalised_so_local_wins_over_any_spelling() -> None:
    entry = parse_entry("/usr//bin/a/ cap_kill=ep")
    assert entry is not None and entry.path == "/usr/bin/a"
    with pytest.raises(InvalidInput):
        parse_entry("/usr/bin/../bin/a cap_kill=ep")
    catalogue = Catalogue([_decl("/usr/bin/a", CapSet(RAW, RAW, 0), "dpkg", "pa"),
                           _decl("/bin/a", CapSet(BIND, BIND, 0), "local")], [], [])
    merged = {"/bin": "/usr/bin"}
    resolved = catalogue.resolve(lambda p: merged.get(p.rsplit("/", 1)[0], p.rsplit("/", 1)[0])
                                 + "/" + p.rsplit("/", 1)[1])
    assert len(resolved) == 1
    assert resolved[0].path == "/usr/bin/a" and resolved[0].winner is not None
    assert resolved[0].winner.source == "local"


def test_a_bad_local_file_does_not_block_declare(tmp_path: Path) -> None:
    paths = SystemPaths(root=str(tmp_path))
    directory = Path(paths.local_declarations_dir)
    directory.mkdir(parents=True)
    (directory / "broken.capabilities").write_bytes(b"\xff\xfe\n")
    file, _ = local.declare(paths, "/usr/bin/zz", "cap_net_raw=ep", None, None, 41)
    assert file.endswith("local.capabilities")
    with pytest.raises(InvalidInput):
        local.undeclare(paths, "/nope")


def _status_paragraph(name: str, arch: str, version: str) -> str:
    return (f"Package: {name}\nStatus: install ok installed\nArchitecture: {arch}\n"
            f"Multi-Arch: same\nVersion: {version}\n")


@pytest.mark.parametrize(("before", "after", "changed"), [
    # one architecture of a Multi-Arch: same package goes or comes: the name stays
    ([("libfoo", "amd64", "1"), ("libfoo", "i386", "1")], [("libfoo", "amd64", "1")], []),
    ([("libfoo", "amd64", "1")], [("libfoo", "amd64", "1"), ("libfoo", "i386", "1")], []),
    ([("libfoo", "amd64", "1"), ("libfoo", "i386", "1")],
     [("libfoo", "amd64", "2"), ("libfoo", "i386", "2")], [("libfoo", "1", "2")]),
    ([("aaa", "all", "1")], [("aaa", "all", "2")], [("aaa", "1", "2")]),
    ([("aaa", "all", "1"), ("bbb", "all", "1")], [("bbb", "all", "1")], [("aaa", "1", None)]),
])
def test_changed_versions_of_a_dpkg_run(tmp_path: Path, before: list[tuple[str, str, str]],
                                        after: list[tuple[str, str, str]],
                                        changed: list[tuple[str, str | None, str | None]]) \
        -> None:
    from capsnap.declarations import dpkg
    from capsnap.hook import _changed

    (tmp_path / "var/lib/dpkg/updates").mkdir(parents=True)
    (tmp_path / "before").write_text("\n".join(_status_paragraph(*p) for p in before))
    (tmp_path / "var/lib/dpkg/status").write_text(
        "\n".join(_status_paragraph(*p) for p in after))
    old, new = dpkg.changed_versions(SystemPaths.select(root=str(tmp_path)),
                                     str(tmp_path / "before"))
    assert _changed(old, new) == changed


def test_a_source_not_read_whole_is_unread() -> None:
    """What capsnap may take back depends on it: a bad entry of one package
    does not hide the rest; a missing database or list, or any local trouble, does."""
    from capsnap.declarations import Problem

    assert Catalogue([], [Problem("dpkg", "package foo 1", "bad entry")], []).unread() == set()
    assert Catalogue([], [Problem("dpkg", "/var/lib/dpkg/status", "cannot read")],
                     []).unread() == {"dpkg"}
    assert Catalogue([], [], ["rpm: no database at /var/lib/rpm in /",
                              "dpkg: the file list of foo cannot be read"]).unread() == \
        {"rpm", "dpkg"}
    assert Catalogue([], [Problem("local", "/etc/capsnap/capabilities.d/x:3", "bad")],
                     []).unread() == {"local"}


def test_list_spellings_prefer_the_path_itself() -> None:
    from capsnap.declarations.dpkg import _listed_spellings

    listed = b"/.\n/bin\n/bin/both\n/usr/bin/both\n/bin/short\n/usr/lib/x/helper"
    assert _listed_spellings(listed, ["/usr/bin/both", "/usr/bin/short",
                                           "/usr/lib/x/helper", "/usr/bin/absent"]) == {
        "/usr/bin/both": "/usr/bin/both", "/usr/bin/short": "/bin/short",
        "/usr/lib/x/helper": "/usr/lib/x/helper"}


def test_refused_paths_are_shown_escaped() -> None:
    from capsnap.declarations.dpkg import _shown

    # Escapes are bytes, as in fstab: U+0085 is the two bytes of its UTF-8.
    assert _shown("/usr/bin/a b\x1b[31m\x7f\x85#") == \
        "/usr/bin/a\\040b\\033[31m\\177\\302\\205\\043"
    assert _shown(os.fsdecode(b"/usr/bin/\x9b1m\xc3\xa9")) == "/usr/bin/\\2331m\u00e9"


@pytest.mark.parametrize(("option", "message"), [
    ("fallback=setuid:4775", "no group or other write bit"),  # setuid and group-writable
    ("fallback=setuid:4757", "no group or other write bit"),  # setuid and world-writable
    ("fallback=setuid:47", "fallback must be 'none' or 'setuid[:MODE]'"),  # too short
    ("fallback=setuid:4758", "fallback must be 'none' or 'setuid[:MODE]'"),  # not octal
])
def test_a_setuid_fallback_mode_is_written_in_full_and_writable_by_root_only(
        option: str, message: str) -> None:
    """reapply chmods the file to this mode: a setuid file anyone else may
    write is a root shell for them."""
    with pytest.raises(InvalidInput) as info:
        parse_entry(f"/usr/bin/x cap_net_raw=ep {option}")
    assert message in str(info.value)
    entry = parse_entry("/usr/bin/x cap_net_raw=ep fallback=setuid:4711")
    assert entry is not None and entry.fallback == Fallback("setuid", 0o4711)


def test_a_hash_inside_a_word_is_no_comment() -> None:
    entry = parse_entry("/usr/lib/a#b/helper cap_kill=ep owner=c#d # why#not")
    assert entry is not None
    assert (entry.path, entry.owner, entry.comment) == ("/usr/lib/a#b/helper", "c#d", "why#not")


def test_an_option_given_twice_is_refused() -> None:
    """Which of the two would win is anyone's guess: the line is refused."""
    for line in ("/usr/bin/x cap_kill=ep owner=a owner=b",
                 "/usr/bin/x cap_kill=ep fallback=none fallback=setuid"):
        with pytest.raises(InvalidInput) as info:
            parse_entry(line)
        assert "given twice" in str(info.value)


def test_a_leading_double_slash_is_the_same_file() -> None:
    # POSIX lets normpath keep a leading "//"; on Linux it is "/".
    for spelling in ("//usr/bin/x", "///usr/bin/x", "//usr//bin/x/"):
        entry = parse_entry(f"{spelling} cap_kill=ep")
        assert entry is not None and entry.path == "/usr/bin/x"


def test_a_backslash_not_followed_by_three_octal_digits_is_itself() -> None:
    """As fstab reads them; and a line with one stays readable, never
    breaking the lines after it."""
    entries, bad = parse_lines(["/usr/bin/a\\089 cap_kill=ep", "/usr/bin/b\\12 cap_kill=ep",
                                "/usr/bin/c\\1 cap_kill=ep", "/usr/bin/d cap_kill=ep"])
    assert bad == []
    assert [e.path for e in entries] == ["/usr/bin/a\\089", "/usr/bin/b\\12", "/usr/bin/c\\1",
                                         "/usr/bin/d"]
