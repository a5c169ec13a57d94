"""Log lines and per-package records are JSON written without the json module."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from capsnap import captext, reapply
from capsnap.declarations import Declaration
from capsnap.paths import SystemPaths

# Every kind of character: controls, quotes, DEL, Latin-1, surrogates (bytes
# that are not UTF-8), the rest of the BMP and beyond it, and the edges where
# one \u escape gives way to a surrogate pair.
SAMPLES = [chr(c) for c in (*range(0, 0x100), *range(0x100, 0x110000, 251),
                            *range(0xDC80, 0xDD00), 0xFFFE, 0xFFFF, 0x10000, 0x10FFFF)]


@pytest.mark.parametrize("ascii_only", [False, True])
def test_json_string_writes_what_json_dumps_writes(ascii_only: bool) -> None:
    for c in SAMPLES:
        text = f"/usr/bin/a{c}b"
        assert reapply.json_string(text, ascii_only) == json.dumps(text, ensure_ascii=ascii_only)


def test_records_of_a_path_that_is_not_utf8_can_be_forgotten(tmp_path: Path) -> None:
    paths = SystemPaths.select(root=str(tmp_path))
    path = os.fsdecode(b"/usr/lib/foo/helper-\xff")
    decl = Declaration(path=path, text="cap_net_raw=ep",
                       caps=captext.parse_file_caps("cap_net_raw=ep"), source="dpkg",
                       package="foo", version="1")
    finding = reapply.Finding(path, reapply.RESTORED, decl, "cap_net_raw=ep", None)
    assert reapply.record_results(paths, [finding]) is None
    record = tmp_path / "var/lib/capsnap/packages/foo"
    assert json.loads(record.read_text(encoding="ascii")) == \
        {path: {"status": reapply.RESTORED, "time": json.loads(record.read_text())[path]["time"],
                "applied": "cap_net_raw=ep", "source": "dpkg", "version": "1"}}
    assert reapply.forget(paths, "foo") == 1
    assert not record.exists()
