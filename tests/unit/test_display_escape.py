"""One escape for terminals, logs and declarations: bytes as \\ooo, as fstab writes them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from capsnap import display, reapply
from capsnap.declarations.entries import escape_path, parse_entry, parse_lines, unescape_path
from capsnap.diff import caps_text
from capsnap.errors import InvalidInput
from capsnap.snapshot import Scope
from capsnap.store import Row, Store

# What Linux allows in a path: any bytes but NUL, held as capsnap holds them.
names = st.binary(max_size=40).filter(lambda b: b"\0" not in b).map(os.fsdecode)
# Bytes of every kind, weighted towards the interesting ones.
tricky = st.lists(st.sampled_from([b"a", b"/", b" ", b"\\", b"#", b"\\040", b"\x1b", b"\n",
                                   b"\x7f", "\u0085".encode(), "\u3000".encode(),
                                   "\u202e".encode(), "\u2028".encode(), b"\xff", b"\x9b",
                                   "é".encode(), b"\xe3\x80"]), max_size=12).map(
    lambda parts: os.fsdecode(b"".join(parts)))


@given(st.one_of(names, tricky))
@example("/opt/a\u3000b")
@example(os.fsdecode(b"/opt/a\xffb"))
@example("/x\\400\\0")
def test_every_path_round_trips_through_the_declaration_escape(path: str) -> None:
    escaped = escape_path(path)
    assert unescape_path(escaped) == path
    assert escaped.isprintable()
    assert not any(c.isspace() or c == "#" for c in escaped)
    escaped.encode("utf-8")  # a declaration file is UTF-8 text, whatever the path


@given(st.one_of(names, tricky))
def test_display_escape_is_printable_one_line_and_reversible(text: str) -> None:
    shown = display.escape(text)
    assert shown.isprintable()  # no control, C1, separator or byte that is not UTF-8
    assert len(shown.splitlines()) <= 1
    assert display.unescape(shown) == text


def test_escapes_are_the_bytes() -> None:
    assert escape_path("/opt/a\u3000b") == "/opt/a\\343\\200\\200b"
    assert escape_path(os.fsdecode(b"/opt/a\xffb")) == "/opt/a\\377b"
    assert unescape_path("/opt/a\\377b") == os.fsdecode(b"/opt/a\xffb")
    assert unescape_path("/opt/a\\303\\251") == "/opt/a\u00e9"
    assert display.escape("x\x1b[2J\nforged\\") == "x\\033[2J\\012forged\\134"
    assert display.escape("a\u0085b\u202ec") == "a\\302\\205b\\342\\200\\256c"
    assert display.escape("plain /usr/bin/ping cap_net_raw=ep") == \
        "plain /usr/bin/ping cap_net_raw=ep"
    # Not an escape: stays as written.
    assert unescape_path("/a\\400\\12\\x") == "/a\\400\\12\\x"


@given(st.one_of(names, tricky))
def test_an_entry_reads_back_as_written(name: str) -> None:
    try:
        entry = parse_entry(f"{escape_path('/srv/' + name)} cap_net_raw=ep", 3)
    except InvalidInput as exc:
        assert "control character" in str(exc) or "'..'" in str(exc)
        return
    assert entry is not None
    assert parse_entry(entry.format(), 3) == entry


@pytest.mark.parametrize("path", ["/usr/lib/\x1b[1A\x1b[2K\reverything-fine", "/a\x7fb",
                                  "/a\u0085b", "/a\u009bb", "/a\tb", "/a\x00b"])
def test_paths_with_control_characters_are_refused(path: str) -> None:
    # Raw whitespace (a tab, U+0085) separates words: such a path is only written escaped.
    raw = [] if any(c.isspace() for c in path) else [path]
    for written in [escape_path(path), *raw]:
        with pytest.raises(InvalidInput) as info:
            parse_entry(f"{written} cap_net_raw=ep")
        assert "control character" in str(info.value)
        assert "everything" not in str(info.value)


def test_a_path_that_is_not_utf8_is_accepted() -> None:
    entry = parse_entry("/opt/a\\377\\233b cap_net_raw=ep")
    assert entry is not None and os.fsencode(entry.path) == b"/opt/a\xff\x9bb"


SECRET = "SECRETcanary42"


@pytest.mark.parametrize("line", [
    f"root:{SECRET}:19000:0:99999:7:::",
    f"/{SECRET}",
    f"/x {SECRET}",
    f"/x cap_{SECRET}=ep",
    f"/x cap_net_raw={SECRET}",
    f"/x cap_net_raw=ep fallback={SECRET}",
    f"/x cap_net_raw=ep fallback=setuid:{SECRET}",
    f"/x cap_net_raw+ep,{SECRET}",
    f"/x/../{SECRET} cap_net_raw=ep",
    f"/x\x1b{SECRET} cap_net_raw=ep",
    f"{SECRET}/x cap_net_raw=ep",
])
def test_a_bad_lines_reason_never_quotes_it(line: str) -> None:
    entries, bad = parse_lines(["/ok cap_net_raw=ep", line])
    assert [e.path for e in entries] == ["/ok"]
    assert [b.number for b in bad] == [2]
    assert SECRET not in bad[0].reason


@given(st.one_of(names, tricky))
def test_log_values_are_json_and_printable(text: str) -> None:
    written = reapply.json_string(text, printable_only=True)
    assert written.isprintable()
    assert json.loads(written) == text


@given(st.lists(st.one_of(names, tricky).map(lambda n: "/" + n), min_size=1, max_size=3))
def test_scopes_take_the_same_escape(items: list[str]) -> None:
    scope = Scope("path", tuple(items))
    text = scope.describe()
    assert text.isprintable()
    assert Scope.parse(text) == scope


def test_scopes_written_before_still_read() -> None:
    # Earlier capsnap wrote a byte that is not UTF-8 as \xNN.
    assert Scope.parse("path:/srv/bad\\xffname,/a\\054b\\134c") == \
        Scope("path", (os.fsdecode(b"/srv/bad\xffname"), "/a,b\\c"))


def _row(path: bytes, rootid: int | None) -> Row:
    return Row(path, b"\x01", "cap_sys_admin=ep", rootid, None, None, True, 1, 1, 1)


def test_namespaced_capabilities_are_shown_and_not_tracked(tmp_path: Path) -> None:
    assert caps_text(_row(b"/a", 4242)) == "cap_sys_admin=ep [rootid=4242]"
    assert caps_text(_row(b"/a", 0)) == caps_text(_row(b"/a", None)) == "cap_sys_admin=ep"
    with Store(str(tmp_path / "s.db")) as store:
        store.add_snapshot("full", "/", [_row(b"/v2", None), _row(b"/v3-host", 0),
                                         _row(b"/v3-user", 4242)])
        assert sorted(store.tracked()) == [b"/v2", b"/v3-host"]
