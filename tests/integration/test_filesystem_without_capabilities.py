"""On a filesystem that cannot hold security.capability (ramfs, NFS, some
overlays), a file has no capabilities: reading and removing them are no-ops
that succeed; only setting them fails, and says why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import copy_binary, needs_root, ramfs_at, run_cli

pytestmark = needs_root


@pytest.fixture
def ramfs(tmp_path: Path) -> Iterator[Path]:
    with ramfs_at(tmp_path / "ramfs") as mount:
        yield mount


def test_remove_and_get_are_no_ops_and_set_says_why(ramfs: Path) -> None:
    tool = copy_binary("/bin/true", ramfs / "tool")
    removed = run_cli("remove", "-v", str(tool))
    assert (removed.status, removed.out, removed.err) == (0, f"{tool}: had no capabilities\n", "")
    got = run_cli("get", str(tool))
    assert (got.status, got.out, got.err) == (0, "", "")
    refused = run_cli("set", "cap_net_raw=ep", str(tool))
    assert refused.status == 3
    assert refused.err.count("\n") == 1 and "does not support file capabilities" in refused.err
