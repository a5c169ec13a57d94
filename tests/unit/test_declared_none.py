"""A declaration of "none" (or "=") says the file has no capabilities: the
administrator's mask over any package's, as dpkg-statoverride is over a mode."""

from __future__ import annotations

from capsnap.declarations.entries import parse_entry


def test_none_and_equals_declare_no_capabilities() -> None:
    for text in ("none", "="):
        entry = parse_entry(f"/usr/bin/ping {text}  # not on this machine", local=True)
        assert entry is not None and entry.caps.is_empty(), text
        assert entry.text == text and entry.comment == "not on this machine"
