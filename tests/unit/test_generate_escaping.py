"""The File-Capabilities field's paths: no '$' for dpkg-gencontrol, the same path back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from capsnap import generate
from capsnap.declarations.entries import escape_path, parse_lines

# Printable text with what dpkg-gencontrol and the declaration syntax read specially.
PATHS = st.text(alphabet=st.sampled_from("ab/ ${}\\#%.-_()\tNewlineSpace\u00e9"), min_size=1,
                max_size=40).map(lambda s: "/" + s)


@given(PATHS)
def test_field_path_has_no_dollar_and_reads_back(path: str) -> None:
    written = generate.field_path(path)
    assert "$" not in written
    assert not any(c.isspace() for c in written)
    # Read as the plain escaping is (the parser normalises '//' and the like).
    plain = parse_lines([f"{escape_path(path)} cap_kill=ep"])
    assert parse_lines([f"{written} cap_kill=ep"]) == plain
    if "$" in path and plain[0]:
        assert "$" in plain[0][0].path


def test_field_lines_escape_the_dollar_of_substvars() -> None:
    entries, bad = parse_lines(["/usr/lib/a${Newline}/usr/bin/tail${Space}x cap_kill=ep"])
    assert not bad
    assert generate.field_entries(entries) == [
        "/usr/lib/a\\044{Newline}/usr/bin/tail\\044{Space}x cap_kill=ep"]
