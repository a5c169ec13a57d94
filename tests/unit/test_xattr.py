"""struct vfs_cap_data encoding and decoding (pure)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capsnap import xattr
from capsnap.captext import CapSet
from capsnap.errors import AttrFormatError, InvalidInput


def test_revision2_bytes_as_libcap_writes_them() -> None:
    raw = xattr.encode(CapSet(1 << 13, 1 << 13, 0))
    assert raw == bytes.fromhex("0100000200200000000000000000000000000000")


def test_revision3_carries_the_rootid() -> None:
    raw = xattr.encode(CapSet(1 << 13, 1 << 13, 0), rootid=1000)
    assert len(raw) == 24
    decoded = xattr.decode(raw)
    assert (decoded.revision, decoded.rootid) == (3, 1000)


def test_empty_effective_clears_the_flag_and_high_words_are_used() -> None:
    raw = xattr.encode(CapSet(0, 1 << 40, 1 << 33))
    magic, p0, i0, p1, i1 = struct.unpack("<5I", raw)
    assert magic == 0x02000000
    assert (p0, i0, p1, i1) == (0, 0, 1 << 8, 1 << 1)


def test_revision1_is_read() -> None:
    raw = struct.pack("<3I", 0x01000001, 1 << 13, 0)
    caps = xattr.decode(raw)
    assert caps.revision == 1
    assert caps.capset() == CapSet(1 << 13, 1 << 13, 0)


@pytest.mark.parametrize("raw", [
    b"", b"\x00\x00", bytes(20), struct.pack("<5I", 0x02000001, 0, 0, 0, 0) + b"x",
    struct.pack("<3I", 0x02000000, 0, 0), struct.pack("<5I", 0x04000000, 0, 0, 0, 0),
])
def test_malformed_values_are_rejected(raw: bytes) -> None:
    with pytest.raises(AttrFormatError):
        xattr.decode(raw)


def test_effective_rule() -> None:
    with pytest.raises(InvalidInput):
        xattr.encode(CapSet(effective=1, permitted=1 | 2, inheritable=0))


@given(st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1), st.booleans(),
       st.integers(0, 0xFFFFFFFF))
def test_round_trip(permitted: int, inheritable: int, effective: bool, rootid: int) -> None:
    eff = (permitted | inheritable) if effective else 0
    caps = CapSet(eff, permitted, inheritable)
    decoded = xattr.decode(xattr.encode(caps, rootid))
    assert decoded.capset() == caps
    assert decoded.rootid == rootid
    assert decoded.revision == (3 if rootid else 2)


def test_decode_accepts_exactly_the_sizes_of_each_revision() -> None:
    # Whatever the length, a value is either one of the three layouts or an
    # AttrFormatError that check and reapply report: never another exception.
    valid = {1: 12, 2: 20, 3: 24}
    for revision in (0, 1, 2, 3, 4, 0xFF):
        magic = struct.pack("<I", revision << 24 | xattr.FLAG_EFFECTIVE)
        for length in range(0, 29):
            raw = (magic + bytes(length))[:length]
            if valid.get(revision) == length:
                assert xattr.decode(raw).revision == revision
            else:
                with pytest.raises(AttrFormatError):
                    xattr.decode(raw)


@pytest.mark.parametrize("rootid", [1, 65534, 0x7FFFFFFF, 0xFFFFFFFF])
def test_every_32_bit_rootid_is_stored(rootid: int) -> None:
    caps = CapSet(1 << 13, 1 << 13, 0)
    decoded = xattr.decode(xattr.encode(caps, rootid))
    assert (decoded.revision, decoded.rootid, decoded.capset()) == (3, rootid, caps)


@pytest.mark.parametrize("rootid", [-1, -65534, 1 << 32])
def test_a_rootid_that_is_not_a_32_bit_uid_is_refused(rootid: int) -> None:
    with pytest.raises(InvalidInput, match="not a 32-bit uid"):
        xattr.encode(CapSet(1 << 13, 1 << 13, 0), rootid)


@pytest.mark.parametrize("caps", [
    CapSet(permitted=1 << 64), CapSet(inheritable=1 << 64 | 1), CapSet(effective=1 << 64),
    CapSet(effective=1 << 127 | 1, permitted=1 << 127 | 1)])
def test_capabilities_above_63_are_refused_not_dropped(caps: CapSet) -> None:
    # The file format has two 32-bit words per set: writing only what fits
    # would store less than was asked for, silently.
    with pytest.raises(InvalidInput, match="above 63"):
        xattr.encode(caps)
