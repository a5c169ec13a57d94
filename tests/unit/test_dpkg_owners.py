"""Which installed package ships a path (dpkg's file lists), for a few paths
searched for in the lists' bytes and for many read line by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsnap.declarations import dpkg
from capsnap.paths import SystemPaths


def _admindir(tmp_path: Path) -> SystemPaths:
    info = tmp_path / "dpkg/info"
    info.mkdir(parents=True)
    status = []
    # Long lists (more than one slice of _lines), a file name that is not
    # UTF-8, a name that is another's prefix, a last line without a newline.
    big = "".join(f"/usr/share/big/{n:06d}\n" for n in range(30_000)).encode()
    lists = {
        "big": big + b"/usr/bin/tool-with-suffix\n",
        "tools": b"/.\n/usr\n/usr/bin\n/usr/bin/tool\n/usr/bin/caf\xe9\n/bin/ping\n",
        "last": b"/usr/sbin/unterminated",
    }
    for name, data in lists.items():
        (info / f"{name}.list").write_bytes(data)
        status.append(f"Package: {name}\nStatus: install ok installed\nVersion: 1.{len(name)}\n")
    (tmp_path / "dpkg/status").write_text("\n".join(status))
    return SystemPaths(root="/", admindir_override=str(tmp_path / "dpkg"))


EXPECTED = {"/usr/bin/tool": ("tools", "1.5"), "/usr/bin/caf\udce9": ("tools", "1.5"),
            "/usr/bin/ping": ("tools", "1.5"),  # listed as /bin/ping (merged /usr)
            "/usr/share/big/029999": ("big", "1.3"), "/usr/share/big/000000": ("big", "1.3")}
NOBODY = {"/usr/bin/to", "/usr/sbin/unterminated", "/usr/share/big/030000", "/nowhere"}


@pytest.mark.parametrize("extra", [0, 40])  # searched for, and read line by line
def test_owners_of_a_few_paths_and_of_many(tmp_path: Path, extra: int) -> None:
    paths = _admindir(tmp_path)
    wanted = set(EXPECTED) | NOBODY | {f"/opt/none/{n}" for n in range(extra)}
    assert dpkg.owners(paths, wanted) == EXPECTED


@pytest.mark.parametrize("extra", [0, 40])
def test_owners_never_holds_a_line_object_per_file_of_a_list(tmp_path: Path,
                                                             extra: int) -> None:
    import tracemalloc

    paths = _admindir(tmp_path)
    size = (tmp_path / "dpkg/info/big.list").stat().st_size
    wanted = set(EXPECTED) | {f"/opt/none/{n}" for n in range(extra)}
    tracemalloc.start()
    try:
        dpkg.owners(paths, wanted)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The list's bytes and a slice of it; a str per line of it would be 4 times the list.
    assert peak < 2 * size


def test_list_lines_read_in_slices_are_the_lines_of_the_whole() -> None:
    import random

    rng = random.Random(20261201)
    for _ in range(500):
        data = bytes(rng.choice(b"ab\n\r\xff\xc3\xa9\x85") for _ in range(rng.randint(0, 300)))
        chunk = rng.randint(1, 50)
        assert list(dpkg._list_lines(data, chunk)) == \
            data.decode("utf-8", "surrogateescape").splitlines(keepends=True), (data, chunk)
