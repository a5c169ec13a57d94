"""The symlinks on the way to --root count like those inside it: one that a
user owns (in a directory they do not own) could point the root elsewhere
between two commands, so capsnap refuses to give capabilities through it."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import copy_binary, getxattr_or_none, needs_root, run_cli

pytestmark = needs_root


def test_a_root_reached_through_someone_elses_link_is_refused(world_dir: Path) -> None:
    real = world_dir / "image"
    (real / "usr/bin").mkdir(parents=True)
    tool = copy_binary("/bin/true", real / "usr/bin/tool")
    link = world_dir / "current"
    link.symlink_to(real)
    os.lchown(link, 4242, 4242)
    result = run_cli("--root", str(link), "set", "cap_net_raw=ep", "/usr/bin/tool")
    assert result.status == 3, result.err
    assert f"symbolic link {link} on the path is owned by uid 4242" in result.err
    assert getxattr_or_none(tool) is None
    # root's own link is fine.
    os.lchown(link, 0, 0)
    assert run_cli("--root", str(link), "set", "cap_net_raw=ep", "/usr/bin/tool").status == 0
    assert getxattr_or_none(tool) is not None
