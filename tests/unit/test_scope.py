"""A snapshot's scope is stored as text and read back for `capsnap diff SNAPSHOT`."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from capsnap.snapshot import Scope

# Paths as Linux has them: any bytes but NUL, decoded as capsnap decodes them.
paths = st.binary(min_size=1, max_size=24).filter(lambda b: b"\0" not in b).map(
    lambda b: os.fsdecode(b"/" + b))


@given(st.lists(paths, min_size=1, max_size=4))
def test_any_paths_come_back_as_they_were(items: list[str]) -> None:
    scope = Scope("path", tuple(items))
    text = scope.describe()
    text.encode("utf-8")  # SQLite TEXT: valid UTF-8 whatever the paths hold
    assert Scope.parse(text) == scope


def test_commas_and_backslashes_are_escaped_readably() -> None:
    scope = Scope("path", ("/opt/a,b", "/srv/x\\y"))
    assert scope.describe() == "path:/opt/a\\054b,/srv/x\\134y"
    assert Scope.parse(scope.describe()) == scope
    assert Scope.parse("package:foo,bar:amd64") == Scope("package", ("foo", "bar:amd64"))
    assert Scope.parse("tracked") == Scope("tracked")
