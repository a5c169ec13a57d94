# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""The security.capability value: struct vfs_cap_data <-> capability sets.

Pure code, no I/O.  Layout (include/uapi/linux/capability.h), little-endian:

    le32 magic_etc          revision in the top byte, bit 0 = effective flag
    { le32 permitted; le32 inheritable; } data[1 or 2]
    le32 rootid             revision 3 only

Revision 1 (12 bytes) holds capabilities 0..31 and is only read: the kernel
refuses to store it.  Revision 2 (20 bytes) holds 0..63.  Revision 3
(24 bytes) adds the uid that is root in the user namespace the capability is
limited to.  Encoding follows libcap's _fcaps_save byte for byte: revision 2
unless a non-zero rootid is asked for, and the effective flag set when the
effective set is non-empty.
"""

from __future__ import annotations

import struct

from capsnap.captext import ALL_64, CapSet, bits_of, cap_name
from capsnap.errors import AttrFormatError, InvalidInput
from capsnap.records import NamedTuple

XATTR_NAME = "security.capability"

REVISION_MASK = 0xFF000000
REVISION_1 = 0x01000000
REVISION_2 = 0x02000000
REVISION_3 = 0x03000000
FLAG_EFFECTIVE = 0x000001

SIZE_1 = 4 + 1 * 8
SIZE_2 = 4 + 2 * 8
SIZE_3 = SIZE_2 + 4
_SIZES = {REVISION_1: SIZE_1, REVISION_2: SIZE_2, REVISION_3: SIZE_3}


class FileCaps(NamedTuple):
    """What one security.capability value says."""

    permitted: int
    inheritable: int
    effective: bool  # the single effective flag of the file
    revision: int = 2
    rootid: int = 0  # meaningful for revision 3 only

    def capset(self) -> CapSet:
        """The sets as libcap reports them: effective = P | I when flagged."""
        eff = (self.permitted | self.inheritable) if self.effective else 0
        return CapSet(effective=eff, permitted=self.permitted,
                      inheritable=self.inheritable)


def decode(raw: bytes) -> FileCaps:
    """Decode a raw value; reject what libcap's _fcaps_load rejects."""
    if len(raw) < 4:
        raise AttrFormatError(
            f"security.capability value is {len(raw)} bytes, too short for a header")
    (magic,) = struct.unpack_from("<I", raw, 0)
    revision = magic & REVISION_MASK
    size = _SIZES.get(revision)
    if size is None:
        raise AttrFormatError(
            f"security.capability has unknown revision 0x{revision >> 24:02x}")
    if len(raw) != size:
        raise AttrFormatError(
            f"security.capability revision {revision >> 24} must be {size} bytes, "
            f"found {len(raw)}")
    words = (size - 4) // 8
    permitted = inheritable = 0
    for i in range(min(words, 2)):
        p, inh = struct.unpack_from("<II", raw, 4 + 8 * i)
        permitted |= p << (32 * i)
        inheritable |= inh << (32 * i)
    rootid = 0
    if revision == REVISION_3:
        (rootid,) = struct.unpack_from("<I", raw, SIZE_2)
    return FileCaps(permitted=permitted, inheritable=inheritable,
                    effective=bool(magic & FLAG_EFFECTIVE),
                    revision=revision >> 24, rootid=rootid)


def check_effective_rule(caps: CapSet) -> None:
    """Raise if the kernel's single effective flag cannot express `caps`."""
    wanted = caps.permitted | caps.inheritable
    if caps.effective and wanted & ~caps.effective & ALL_64:
        names = ",".join(cap_name(n) for n in bits_of(wanted & ~caps.effective))
        raise InvalidInput(
            "the effective set must be empty or cover every permitted and "
            f"inheritable capability ({names} not effective)")


def encode(caps: CapSet, rootid: int = 0) -> bytes:
    """Encode as libcap's cap_set_file would write it."""
    if not 0 <= rootid <= 0xFFFFFFFF:
        raise InvalidInput(f"rootid {rootid} is not a 32-bit uid")
    check_effective_rule(caps)
    if (caps.permitted | caps.inheritable | caps.effective) & ~ALL_64:
        raise InvalidInput("capabilities above 63 cannot be stored in a file")
    magic = REVISION_3 if rootid else REVISION_2
    if caps.effective:
        magic |= FLAG_EFFECTIVE
    out = struct.pack("<I", magic)
    for i in range(2):
        out += struct.pack("<II", (caps.permitted >> (32 * i)) & 0xFFFFFFFF,
                           (caps.inheritable >> (32 * i)) & 0xFFFFFFFF)
    if rootid:
        out += struct.pack("<I", rootid)
    return out
