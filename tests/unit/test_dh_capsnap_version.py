"""dh_capsnap's version is static, as in every debhelper tool: it must say
the capsnap it ships with."""

from __future__ import annotations

import re

import capsnap
from tests.conftest import SRC


def test_dh_capsnap_version_is_capsnaps() -> None:
    text = (SRC / "debhelper/dh_capsnap").read_text(encoding="utf-8")
    found = re.findall(r"^our \$VERSION = '([^']*)';$", text, re.MULTILINE)
    assert found == [capsnap.__version__]
