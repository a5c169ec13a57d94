# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""What a snapshot looked at, as stored and shown (pure).

Apart from capsnap.snapshot so that reading a scope (diff, the snapshot
list) does not import what taking a snapshot needs.
"""

from __future__ import annotations

from capsnap import display
from capsnap.records import NamedTuple


class Scope(NamedTuple):
    kind: str  # "full", "package", "path", or "tracked" (only the paths always included)
    items: tuple[str, ...] = ()

    def describe(self) -> str:
        """`kind:item,item` as stored (SQLite TEXT) and shown; parse() reverses it.

        A comma in a path is written \\054, and the rest as `display.escape`
        writes it (a backslash \\134, a byte that is not UTF-8 \\377), so
        every path comes back as it was and the text is valid UTF-8.
        """
        return self.kind if not self.items else \
            f"{self.kind}:{','.join(_escape_item(i) for i in self.items)}"

    @classmethod
    def parse(cls, text: str) -> Scope:
        kind, _, items = text.partition(":")
        return cls(kind, tuple(_unescape_item(i) for i in items.split(",")) if items else ())


_HEX = frozenset("0123456789abcdef")


def _escape_item(item: str) -> str:
    return display.escape(item, ",")


def _unescape_item(text: str) -> str:
    if "\\x" in text:
        # Written before scopes took the byte escapes of declarations: a byte
        # that is not UTF-8 as \xNN (a backslash was \134, so \x is never text).
        parts = text.split("\\x")
        text = parts[0] + "".join(
            f"\\{int(p[:2], 16):03o}{p[2:]}" if len(p) >= 2 and set(p[:2]) <= _HEX
            else "\\x" + p for p in parts[1:])
    return display.unescape(text)
