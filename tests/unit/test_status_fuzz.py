"""dpkg's status file, mutated: whatever bytes a package's paragraph holds
(dpkg accepts bytes that are not UTF-8 in a field), the readers never raise.

One package whose metadata cannot be read costs only its own declarations:
every other package is still served (the reliability review's critical
case: one byte 0xff in one field stopped every reapply of every package).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capsnap import confine
from capsnap.declarations import dpkg
from capsnap.paths import SystemPaths

GOOD = (b"Package: good\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n"
        b"File-Capabilities:\n /usr/lib/good/bin cap_net_raw=ep\n")
VICTIM = (b"Package: victim\nStatus: install ok installed\nArchitecture: all\nVersion: 2\n"
          b"File-Capabilities:\n /usr/lib/victim/bin cap_net_admin=ep\n")
_NOISE = st.binary(min_size=1, max_size=12) | st.sampled_from(
    [b"\xff", b"\xc3", b"\x00", b"\n", b"\n\n", b" ", b":", b"\n ", b"\n.", b"\r", b"\t"])


def _root(status: bytes) -> SystemPaths:
    top = Path(tempfile.mkdtemp(prefix="capsnap-status-"))
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
        (top / d).mkdir(parents=True)
    (top / "var/lib/dpkg/status").write_bytes(status)
    (top / "var/lib/dpkg/info/good.list").write_text("/usr/lib/good/bin\n")
    (top / "var/lib/dpkg/info/victim.list").write_text("/usr/lib/victim/bin\n")
    return SystemPaths(root=str(top))


def _mutated(paragraph: bytes, where: int, noise: bytes) -> bytes:
    at = where % (len(paragraph) + 1)
    return paragraph[:at] + noise + paragraph[at:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.integers(min_value=0), noise=_NOISE)
def test_a_mutated_paragraph_never_raises_and_costs_only_itself(where: int,
                                                                noise: bytes) -> None:
    status = GOOD + b"\n" + _mutated(VICTIM, where, noise) + b"\n"
    paths = _root(status)
    try:
        declarations, problems, _ = dpkg.read(paths, 41)
        dpkg.installed_versions(paths)
        dpkg.changed_versions(paths, paths.dpkg_status)
        dpkg.package_version(paths, "good")
        # The untouched package is always served.
        assert any(d.package == "good" and d.path == "/usr/lib/good/bin" for d in declarations)
        for problem in problems:
            assert "\n" not in str(problem)
    finally:
        confine.release()


def test_a_byte_that_is_not_utf8_is_reported_once_by_package() -> None:
    status = GOOD + b"\n" + VICTIM.replace(b"/usr/lib/victim/bin", b"/usr/lib/victim/\xff") \
        + b"\n"
    paths = _root(status)
    try:
        declarations, problems, _ = dpkg.read(paths, 41)
    finally:
        confine.release()
    assert [d.package for d in declarations] == ["good"]
    assert len(problems) == 1 and "victim" in str(problems[0])
    assert "not UTF-8" in str(problems[0])
