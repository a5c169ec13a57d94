"""The kernel's one effective flag per file: an effective set that misses a
permitted or inheritable capability cannot be stored, whichever of the 64
capabilities it is (32 and above live in the value's second words)."""

from __future__ import annotations

import pytest

from capsnap import xattr
from capsnap.captext import CapSet
from capsnap.errors import InvalidInput


@pytest.mark.parametrize("missing", [1, 31, 32, 40, 63])
def test_an_effective_set_missing_any_capability_is_refused(missing: int) -> None:
    caps = CapSet(effective=1, permitted=1 | 1 << missing)
    with pytest.raises(InvalidInput, match="effective set must be empty or cover"):
        xattr.encode(caps)
    full = CapSet(effective=1 | 1 << missing, permitted=1 | 1 << missing)
    assert xattr.decode(xattr.encode(full)).capset() == full
