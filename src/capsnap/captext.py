# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Capability text: parse and format exactly as libcap does.

Pure code, no I/O.  The grammar is cap_text_formats(7) as implemented by
libcap's cap_from_text(3) (libcap/cap_text.c); the canonical form is the one
cap_to_text(3) produces and getcap(8) prints.  The parser is a faithful state
machine of libcap's, including its quirks, because `capsnap set` must accept
exactly what `setcap` accepts:

* numbers are read like strtoul(3) with base 0 (``0x1f``, ``010`` octal) and
  may go up to 63 whatever the kernel knows;
* ``all`` and a clause without a list mean every capability the *running
  kernel* knows (bits 0 .. cap_last_cap), not every name libcap knows;
* names are case-insensitive (ASCII only), operator flags are lowercase only;
* character classes are those of the C locale, not Python's Unicode ones.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from capsnap.errors import CapTextError
from capsnap.records import NamedTuple

# The capabilities of current Linux, in number order (include/uapi/linux/
# capability.h).  Known here whatever libcap version the host has.
CAP_NAMES: tuple[str, ...] = (
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner",
    "cap_fsetid", "cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap",
    "cap_linux_immutable", "cap_net_bind_service", "cap_net_broadcast",
    "cap_net_admin", "cap_net_raw", "cap_ipc_lock", "cap_ipc_owner",
    "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace",
    "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice",
    "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod",
    "cap_lease", "cap_audit_write", "cap_audit_control", "cap_setfcap",
    "cap_mac_override", "cap_mac_admin", "cap_syslog", "cap_wake_alarm",
    "cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf",
    "cap_checkpoint_restore",
)
CAP_NUMBERS: dict[str, int] = {name: n for n, name in enumerate(CAP_NAMES)}

# vfs_cap_data holds two 32-bit words per set: capabilities 0..63.
MAX_BITS = 64
ALL_64 = (1 << MAX_BITS) - 1

# Flag bits in the order libcap numbers them (CAP_EFFECTIVE=0,
# CAP_PERMITTED=1, CAP_INHERITABLE=2); cap_to_text's grouping depends on it.
_E, _P, _I = 1, 2, 4

_C_SPACE = frozenset(" \t\n\v\f\r")


def _isalpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _isdigit(c: str) -> bool:
    return "0" <= c <= "9"


def _isalnum(c: str) -> bool:
    return _isalpha(c) or _isdigit(c)


def _ascii_lower(s: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def cap_name(number: int) -> str:
    """The name getcap prints for one capability: its name, or its number."""
    if 0 <= number < len(CAP_NAMES):
        return CAP_NAMES[number]
    return str(number)


def bits_of(mask: int) -> list[int]:
    """Capability numbers set in a mask, ascending."""
    out = []
    n = 0
    while mask:
        if mask & 1:
            out.append(n)
        mask >>= 1
        n += 1
    return out


def mask_of(numbers: Iterable[int]) -> int:
    mask = 0
    for n in numbers:
        mask |= 1 << n
    return mask


class CapSet(NamedTuple):
    """Three capability sets as 64-bit masks (bit n = capability n)."""

    effective: int = 0
    permitted: int = 0
    inheritable: int = 0

    def is_empty(self) -> bool:
        return not (self.effective | self.permitted | self.inheritable)

    def all_bits(self) -> int:
        return self.effective | self.permitted | self.inheritable

    def flags_of(self, number: int) -> int:
        bit = 1 << number
        return ((_E if self.effective & bit else 0)
                | (_P if self.permitted & bit else 0)
                | (_I if self.inheritable & bit else 0))

    def differs_in(self, other: CapSet) -> str:
        """Sets that differ, spelt as setcap -v does ("p", "i", "e" order)."""
        return ("p" if self.permitted != other.permitted else "") + \
               ("i" if self.inheritable != other.inheritable else "") + \
               ("e" if self.effective != other.effective else "")


def _flag_letters(flags: int) -> str:
    return ("e" if flags & _E else "") + ("i" if flags & _I else "") + \
           ("p" if flags & _P else "")


def _strtoul_base0(text: str, pos: int) -> tuple[int, int]:
    """strtoul(text+pos, &end, 0) for text starting with a digit."""
    if text.startswith(("0x", "0X"), pos) and pos + 2 < len(text) and \
            text[pos + 2] in "0123456789abcdefABCDEF":
        end = pos + 2
        while end < len(text) and text[end] in "0123456789abcdefABCDEF":
            end += 1
        return int(text[pos + 2:end], 16), end
    if text[pos] == "0":
        end = pos + 1
        while end < len(text) and "0" <= text[end] <= "7":
            end += 1
        return int(text[pos:end], 8), end
    end = pos
    while end < len(text) and _isdigit(text[end]):
        end += 1
    return int(text[pos:end]), end


class _Parser:
    def __init__(self, text: str, known_bits: int) -> None:
        self.text = text
        self.all_mask = (1 << min(known_bits, MAX_BITS)) - 1
        self.sets = [0, 0, 0]  # indexed by _E/_P/_I bit position
        self.clause_start = 0
        self.clause_number = 0
        # For each capability, the clause that last changed it: used to
        # point at the offending clause when the effective rule fails.
        self.last_clause: dict[int, tuple[int, int]] = {}

    def fail(self, reason: str, pos: int | None = None) -> CapTextError:
        end = pos if pos is not None else len(self.text)
        while end < len(self.text) and self.text[end] not in _C_SPACE:
            end += 1
        clause = self.text[self.clause_start:end]
        return CapTextError(self.text, reason, clause, self.clause_number)

    def _char(self, pos: int) -> str:
        return self.text[pos] if pos < len(self.text) else ""

    def _name(self, pos: int) -> tuple[int, int]:
        """One list item: a name or a number; returns (capability, end)."""
        text = self.text
        if _isdigit(text[pos]):
            value, end = _strtoul_base0(text, pos)
            if value >= MAX_BITS:
                raise self.fail(f"capability number {text[pos:end]} is out of range "
                                f"(0..{MAX_BITS - 1})", pos)
            return value, end
        end = pos
        while end < len(text) and (_isalpha(text[end]) or text[end] == "_"):
            end += 1
        word = _ascii_lower(text[pos:end])
        number = CAP_NUMBERS.get(word)
        if number is None:
            while end < len(text) and (_isalnum(text[end]) or text[end] == "_"):
                end += 1
            raise self.fail(f"unknown capability name {text[pos:end]!r}", pos)
        return number, end

    def _apply(self, op: str, flags: int, mask: int) -> None:
        if op in "=PM":
            for i in range(3):
                self.sets[i] &= ~mask
            if op == "M":
                op = "-"
        for i, bit in enumerate((_E, _P, _I)):
            if flags & bit:
                if op == "-":
                    self.sets[i] &= ~mask
                else:
                    self.sets[i] |= mask

    def parse(self) -> CapSet:
        text = self.text
        pos = 0
        while True:
            while pos < len(text) and text[pos] in _C_SPACE:
                pos += 1
            if pos >= len(text):
                e, p, i = self.sets
                return CapSet(effective=e, permitted=p, inheritable=i)
            self.clause_start = pos
            self.clause_number += 1
            mask = 0
            listed = False
            c = text[pos]
            if _isalnum(c) or c == "_":
                while True:
                    word_end = pos + 3
                    if _ascii_lower(text[pos:word_end]) == "all" and not (
                            _isalnum(self._char(word_end)) or self._char(word_end) == "_"):
                        # libcap assigns rather than adds here: "47,all"
                        # loses 47 when the kernel knows fewer capabilities.
                        mask = self.all_mask
                        pos = word_end
                    else:
                        number, pos = self._name(pos)
                        mask |= 1 << number
                    if self._char(pos) != ",":
                        break
                    pos += 1
                    nxt = self._char(pos)
                    if not (_isalnum(nxt) or nxt == "_"):
                        raise self.fail("a capability name must follow ','", pos)
                listed = True
            elif c in "+-":
                raise self.fail(f"'{c}' needs a list of capabilities before it", pos)
            else:
                mask = self.all_mask

            op = self._char(pos)
            pos += 1
            if op == "=" and self._char(pos) in ("+", "-") and self._char(pos) != "":
                if not listed:
                    raise self.fail("'=+' and '=-' need a list of capabilities", pos)
                op = "P" if text[pos] == "+" else "M"
                pos += 1
            elif op == "" or op not in "+-=":
                shown = "end of text" if op == "" else repr(op)
                raise self.fail(f"expected '=', '+' or '-', found {shown}", pos - 1)

            flags = 0
            while True:
                c = self._char(pos)
                if c and c not in _C_SPACE:
                    pos += 1
                    if c == "e":
                        flags |= _E
                    elif c == "i":
                        flags |= _I
                    elif c == "p":
                        flags |= _P
                    else:
                        raise self.fail(f"unknown flag {c!r} (flags are e, i, p)", pos - 1)
                elif op != "=":
                    raise self.fail("an operator other than '=' needs flags after it", pos)
                self._apply(op, flags, mask)
                for n in bits_of(mask):
                    self.last_clause[n] = (self.clause_start, self.clause_number)
                c = self._char(pos)
                if c in ("+", "-") and c != "":
                    if not listed:
                        raise self.fail(f"'{c}' needs a list of capabilities", pos)
                    flags = 0
                    op = c
                    pos += 1
                    if not _isalpha(self._char(pos)):
                        raise self.fail(f"flags must follow '{c}'", pos)
                c = self._char(pos)
                if not c or c in _C_SPACE:
                    break


def parse(text: str, known_bits: int = len(CAP_NAMES)) -> CapSet:
    """Parse capability text as cap_from_text(3) does.

    `known_bits` is cap_last_cap + 1 of the running kernel: what ``all``
    and a bare ``=flags`` clause cover.
    """
    return _Parser(text, known_bits).parse()


def parse_file_caps(text: str, known_bits: int = len(CAP_NAMES)) -> CapSet:
    """Parse text meant for a file, adding setcap's effective-set rule.

    Linux stores one effective *flag* per file, so libcap (cap_set_file)
    refuses an effective set that is non-empty yet misses a capability that
    is permitted or inheritable; the message points at the clause that last
    set such a capability.
    """
    parser = _Parser(text, known_bits)
    caps = parser.parse()
    wanted = caps.permitted | caps.inheritable
    if caps.effective and wanted & ~caps.effective & ALL_64:
        missing = bits_of(wanted & ~caps.effective)
        start, number = parser.last_clause[missing[0]]
        parser.clause_start, parser.clause_number = start, number
        names = ",".join(cap_name(n) for n in missing)
        raise parser.fail(
            "the effective set must be empty or cover every permitted and "
            f"inheritable capability ({names} not effective: use '=ep' for all of "
            "them, or drop 'e')", start)
    return caps


@functools.lru_cache(maxsize=256)
def format_text(caps: CapSet, known_bits: int = len(CAP_NAMES), numeric: bool = False) -> str:
    """Canonical text, byte for byte as cap_to_text(3) (and getcap) print it.

    libcap picks the flag combination shared by most of the kernel's known
    capabilities as the "=" base, preferring fewer flags on a tie, then lists
    the other combinations from 'eip' down to 'e'; capabilities the kernel
    does not know are appended by number.  `numeric` writes every capability
    as its number, which any libcap accepts, even one older than the name.
    """
    name = str if numeric else cap_name
    known = min(known_bits, MAX_BITS)
    e, p, i = caps.effective, caps.permitted, caps.inheritable
    flags = [(e >> n & 1) | (p >> n & 1) << 1 | (i >> n & 1) << 2 for n in range(MAX_BITS)]
    histogram = [0] * 8
    for f in flags[:known]:
        histogram[f] += 1
    base = 7
    for t in range(6, -1, -1):
        if histogram[t] >= histogram[base]:
            base = t
    out = "=" + _flag_letters(base)
    for t in range(7, -1, -1):
        if t == base or not histogram[t]:
            continue
        names = ",".join(name(n) for n in range(known) if flags[n] == t)
        clause = " " + names
        raised = t & ~base
        if raised:
            op = "+"
            if out == "=":
                # libcap writes "= foo+ep" as the shorter "foo=ep".
                out = ""
                clause = names
                op = "="
            clause += op + _flag_letters(raised)
        lowered = ~t & base
        if lowered:
            clause += "-" + _flag_letters(lowered)
        out += clause
    for t in range(7, 0, -1):
        names = ",".join(name(n) for n in range(known, MAX_BITS) if flags[n] == t)
        if names:
            out += " " + names + "+" + _flag_letters(t)
    return out


def names_of(mask: int) -> list[str]:
    return [cap_name(n) for n in bits_of(mask)]
