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
