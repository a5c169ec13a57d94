"""Namespaced (revision 3) capabilities, set unprivileged inside `unshare -Ur`.

An ordinary user (`nobody`) who owns a file can give it capabilities inside
a user namespace of its own; the kernel stores them as revision 3 limited
to that namespace, with the user's real uid as rootid.  Inside, they read
back as revision 2; outside, getcap -n shows [rootid=N].
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from capsnap import xattr
from tests.conftest import SRC, copy_binary, getxattr_or_none, needs_root, run_capsnap, run_cli

NOBODY = 65534


def _userns_works() -> bool:
    probe = subprocess.run(["runuser", "-u", "nobody", "--", "unshare", "-Ur", "true"],
                           capture_output=True)
    return probe.returncode == 0


pytestmark = [needs_root, pytest.mark.skipif(not _userns_works(),
                                             reason="unprivileged user namespaces disabled")]


@pytest.fixture
def nobody_dir(world_dir: Path) -> Path:
    """A directory `nobody` owns, with a copy of capsnap it can import."""
    os.chown(world_dir, NOBODY, NOBODY)
    shutil.copytree(SRC / "capsnap", world_dir / "src" / "capsnap",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for dirpath, _, filenames in os.walk(world_dir):
        os.chown(dirpath, NOBODY, NOBODY)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), NOBODY, NOBODY)
    return world_dir


def _tool(d: Path) -> Path:
    tool = copy_binary("/bin/true", d / "tool")
    os.chown(tool, NOBODY, NOBODY)
    return tool


def test_set_inside_user_namespace_stores_revision3_with_rootid(nobody_dir: Path) -> None:
    tool = _tool(nobody_dir)
    src = nobody_dir / "src"

    # Outside a namespace the policy refuses a file nobody owns, and the
    # kernel refuses nobody even past the policy.
    outside = run_capsnap("set", "cap_net_raw=ep", str(tool), user="nobody", src=src)
    assert (outside.status, "owned by uid 65534" in outside.err) == (3, True)
    forced = run_capsnap("set", "--force", "cap_net_raw=ep", str(tool), user="nobody", src=src)
    assert (forced.status, "not permitted" in forced.err) == (3, True)

    inside = run_capsnap("set", "cap_net_raw=ep", str(tool), user="nobody", userns=True,
                         src=src)
    assert inside.status == 0, inside.err

    raw = getxattr_or_none(tool)
    assert raw is not None
    stored = xattr.decode(raw)
    assert (stored.revision, stored.rootid) == (3, NOBODY)
    assert stored.capset() == xattr.decode(xattr.encode(stored.capset())).capset()

    getcap = subprocess.run(["getcap", "-n", str(tool)], capture_output=True, text=True)
    assert getcap.stdout == f"{tool} cap_net_raw=ep [rootid={NOBODY}]\n"
    assert run_cli("get", "-n", str(tool)).out == getcap.stdout
    # Unlike getcap without -n: a namespaced capability never passes for a real one.
    assert run_cli("get", str(tool)).out == getcap.stdout

    as_seen_inside = run_capsnap("get", "--json", str(tool), user="nobody", userns=True,
                                 src=src)
    assert '"revision": 2' in as_seen_inside.out
    verified_inside = run_capsnap("verify", "cap_net_raw=ep", str(tool), user="nobody",
                                  userns=True, src=src)
    assert verified_inside.status == 0, verified_inside

    # Outside, the rootid is part of what must match, as with setcap -v -n.
    assert run_cli("verify", "--rootid", str(NOBODY), "cap_net_raw=ep", str(tool)).status == 0
    mismatch = run_cli("verify", "cap_net_raw=ep", str(tool))
    assert mismatch.status == 1
    assert mismatch.out.startswith(f"nsowner[got={NOBODY}, want=0],")


def test_rootid_unmapped_in_the_namespace_is_refused_cleanly(nobody_dir: Path) -> None:
    tool = _tool(nobody_dir)
    result = run_capsnap("set", "--rootid", "1000", "cap_net_raw=ep", str(tool),
                         user="nobody", userns=True, src=nobody_dir / "src")
    assert result.status == 3
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err
    # The kernel says only EINVAL; the message says which part it refused.
    assert "rootid is not a uid mapped in this user namespace" in result.err
    assert getxattr_or_none(tool) is None


def test_namespace_root_may_not_touch_files_of_the_real_root(nobody_dir: Path) -> None:
    tool = copy_binary("/bin/true", nobody_dir / "roots")  # owned by the real root
    result = run_capsnap("set", "cap_net_raw=ep", str(tool), user="nobody", userns=True,
                         src=nobody_dir / "src")
    assert result.status == 3
    assert len(result.err.strip().splitlines()) == 1
    assert getxattr_or_none(tool) is None
