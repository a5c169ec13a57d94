"""`capsnap set` warns, one line each, about every capability that hands
over the machine, in whichever set it is granted, and about no other."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsnap.captext import CAP_NAMES
from tests.conftest import copy_binary, needs_root, run_cli

pytestmark = needs_root

# After capabilities(7) and "False Boundaries": each of these lets a program
# become root or do anything root can.  Listed here, not taken from capsnap,
# so that a capability dropped from capsnap's list fails the test.
ROOT_EQUIVALENT = [
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid",
    "cap_setgid", "cap_setuid", "cap_setpcap", "cap_net_admin", "cap_ipc_owner",
    "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace", "cap_sys_admin",
    "cap_sys_boot", "cap_sys_tty_config", "cap_mknod", "cap_setfcap", "cap_mac_override",
    "cap_mac_admin", "cap_bpf",
]


def warned(tool: Path, caps: str) -> list[str]:
    """The capabilities `set` warned about, in the order it printed them."""
    result = run_cli("set", caps, str(tool))
    assert result.status == 0, result.err
    prefix = "capsnap: warning: "
    lines = result.err.splitlines()
    assert all(line.startswith(prefix) and " is root-equivalent: " in line for line in lines)
    return [line[len(prefix):].split(" ", 1)[0] for line in lines]


def test_every_root_equivalent_capability_warns_and_no_other(world_dir: Path) -> None:
    tool = copy_binary("/bin/true", world_dir / "tool")
    assert warned(tool, ",".join(CAP_NAMES) + "=ep") == \
        sorted(ROOT_EQUIVALENT, key=CAP_NAMES.index)
    harmless = [name for name in CAP_NAMES if name not in ROOT_EQUIVALENT]
    assert warned(tool, ",".join(harmless) + "=ep") == []


@pytest.mark.parametrize("flags", ["p", "i", "ep", "eip"])
def test_a_root_equivalent_capability_warns_in_any_set(world_dir: Path, flags: str) -> None:
    # Inheritable alone still counts: a process that holds it in its own
    # inheritable set gains it on exec of this file.
    tool = copy_binary("/bin/true", world_dir / "tool")
    assert warned(tool, f"cap_sys_admin,cap_net_raw={flags}") == ["cap_sys_admin"]
