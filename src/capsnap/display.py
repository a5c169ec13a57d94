# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""The one escape for text that reaches a terminal, a log or a declaration (pure).

A Linux path is any bytes but NUL; capsnap holds it as str decoded with
surrogateescape (a byte that is not UTF-8 becomes U+DC80..U+DCFF).  Such a
path, a symlink's target or a message quoting them may hold newlines (a
forged log line), terminal escape sequences (ESC, or the single-byte CSI
0x9b), bidirectional overrides or invisible spaces.  `escape` writes each
such character as fstab(5) does, a backslash and three octal digits per
byte: its UTF-8 bytes, or the raw byte for one that is not UTF-8.  The
backslash itself is \\134, so the output is unambiguous and `unescape`
gives back exactly the original.  Printable characters, ASCII space
included, are kept as they are.

No imports: hooks load this on every transaction.
"""

from __future__ import annotations

_OCTAL = "01234567"


def _octal(c: str) -> str:
    if "\udc80" <= c <= "\udcff":  # surrogateescape: one byte that is not UTF-8
        return f"\\{ord(c) - 0xDC00:03o}"
    return "".join(f"\\{b:03o}" for b in c.encode("utf-8", "surrogatepass"))


def escape(text: str, also: str = "") -> str:
    """`text` with backslashes, characters that are not printable (controls,
    C1, format characters, line separators, spaces other than ASCII space,
    bytes that are not UTF-8) and the characters in `also` as \\ooo bytes."""
    if text.isprintable() and "\\" not in text and not any(c in text for c in also):
        return text
    return "".join(c if c.isprintable() and c != "\\" and c not in also else _octal(c)
                   for c in text)


def unescape(text: str) -> str:
    """Read escapes back: a backslash and three octal digits (up to \\377) is
    that byte; any other backslash stands for itself."""
    i = text.find("\\")
    if i < 0:
        return text
    out = bytearray()
    start = 0
    try:
        while i >= 0:
            code = text[i + 1:i + 4]
            if len(code) == 3 and code[0] in "0123" and code[1] in _OCTAL \
                    and code[2] in _OCTAL:
                out += text[start:i].encode("utf-8", "surrogateescape")
                out.append(int(code, 8))
                start = i + 4
                i = text.find("\\", start)
            else:
                i = text.find("\\", i + 1)
        out += text[start:].encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no file name can hold
        return text
    return out.decode("utf-8", "surrogateescape")
