"""forced=yes (declare --force) passes the safety policy: only the
administrator's own local declarations may carry it, and only spelt so."""

from __future__ import annotations

from capsnap.declarations.entries import parse_lines

LINE = "/usr/lib/foo/helper cap_net_raw=ep forced=yes"


def test_a_packages_declaration_cannot_force() -> None:
    entries, bad = parse_lines([LINE, "/usr/lib/foo/other cap_net_raw=ep"])
    assert [e.path for e in entries] == ["/usr/lib/foo/other"]
    assert [(b.number, b.reason) for b in bad] == [
        (1, "forced=yes is for the administrator's local declarations only")]
    (entry,), bad = parse_lines([LINE], local=True)
    assert entry.forced and not bad


def test_forced_takes_only_yes() -> None:
    for value in ("no", "1", "true", ""):
        entries, bad = parse_lines([f"/usr/lib/foo/helper cap_net_raw=ep forced={value}"],
                                   local=True)
        assert not entries and [b.reason for b in bad] == ["forced must be 'yes'"], value
