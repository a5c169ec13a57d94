"""`declare` refuses what `set` refuses, before writing any declaration: a
directory or a symbolic link cannot carry a file capability of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import needs_root, run_cli
from tests.packaging import make_dpkg_root

pytestmark = needs_root


@pytest.mark.parametrize(("path", "why"), [("/usr/lib/x", "is a directory"),
                                           ("/usr/lib/x/link", "is a symbolic link to tool")])
def test_declare_refuses_a_directory_and_a_link(tmp_path: Path, path: str, why: str) -> None:
    root = make_dpkg_root(tmp_path / "root")
    (root / "usr/lib/x").mkdir(parents=True)
    shutil.copyfile("/bin/true", root / "usr/lib/x/tool")
    (root / "usr/lib/x/tool").chmod(0o755)
    (root / "usr/lib/x/link").symlink_to("tool")
    result = run_cli("--root", str(root), "declare", path, "cap_net_raw=ep")
    assert result.status != 0
    assert f"{path}: {why}" in result.err, result.err
    assert not (root / "etc/capsnap/capabilities.d").exists() or \
        not any((root / "etc/capsnap/capabilities.d").iterdir())
