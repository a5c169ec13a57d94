"""A package scope asks each file for the attribute through its directory and
probes only those that have it (apt's hooks name thousands of files), with
the same rows as probing every one, and never outside the root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capsnap import captext, snapshot, xattr
from capsnap.paths import SystemPaths
from tests.conftest import is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="setting capabilities needs root")

KNOWN = len(captext.CAP_NAMES)
RAW = xattr.encode(captext.parse_file_caps("cap_net_raw=ep", KNOWN))


def make_root(top: Path, host: Path) -> SystemPaths:
    admin = top / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "status").write_text("Package: tool\nStatus: install ok installed\n"
                                  "Version: 1\nArchitecture: all\n")
    listed = ["/usr", "/usr/bin", "/usr/share/doc/tool"]
    for n in range(40):
        name = f"/usr/share/doc/tool/file{n}"
        (top / name.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (top / name.lstrip("/")).write_text("x")
        listed.append(name)
    (top / "usr/bin").mkdir()
    (top / "usr/bin/tool").write_text("#!/bin/sh\n")
    os.setxattr(top / "usr/bin/tool", xattr.XATTR_NAME, RAW)
    # A directory of the root that is a symlink to the host's files (with
    # capabilities there): inside the root it leads to the root's own copy
    # of that path, without them.
    (top / "usr/lib").mkdir()
    (top / "usr/lib/away").symlink_to(host)
    (host / "sub").mkdir()
    (host / "sub/helper").write_text("x")
    os.setxattr(host / "sub/helper", xattr.XATTR_NAME, RAW)
    (admin / "info/tool.list").write_text(
        "\n".join([*listed, "/usr/bin/tool", "/usr/lib/away/sub/helper", "/usr/bin/gone"]) + "\n")
    return SystemPaths.select(root=str(top))


def test_only_files_with_capabilities_are_probed(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    host = tmp_path / "host"
    host.mkdir()
    paths = make_root(tmp_path / "root", host)
    # The host directory as the root sees it: /usr/lib/away -> host's path,
    # followed inside the root.
    inside = tmp_path / "root" / str(host).lstrip("/") / "sub"
    inside.mkdir(parents=True)
    (inside / "helper").write_text("x")
    probed: list[str] = []
    probe = snapshot.probe

    def counting(path: str, *args: object) -> snapshot.Row:
        probed.append(path)
        return probe(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshot, "probe", counting)
    rows = list(snapshot.live_rows(paths, snapshot.Scope("package", ("tool", "tool")), KNOWN))
    assert [(r.path, r.raw, r.package) for r in rows] == [(b"/usr/bin/tool", RAW, "tool")]
    # Not the 44 files listed: the one with the attribute.  The host's
    # helper, with capabilities, is never what the root's path names.
    assert probed == ["/usr/bin/tool"]
