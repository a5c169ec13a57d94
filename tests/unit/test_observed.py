"""What a package's configure was seen to set (declarations.observed): the
pure decision, rows in and records out, and the records read back as
dpkg-script declarations in a scratch root."""

from __future__ import annotations

import os
from pathlib import Path

from capsnap.declarations import observed
from capsnap.declarations.observed import Seen, decide
from capsnap.paths import SystemPaths

TOOL = "/usr/bin/tool"
OLD = (10, 100, 5, 7)  # inode, size, mtime, btime
NEW = (11, 100, 5, 9)
RECORDS: observed.Records = {"pkg": {TOOL: ["cap_net_raw=ep", *OLD]}}


def seen(text: str | None = "cap_net_raw=ep", ident: tuple[int, int, int, int] | None = NEW,
         changed: bool = True, explained: bool = False, kept: bool = False,
         ours: bool = False, package: str = "pkg", path: str = TOOL) -> Seen:
    return Seen(package, path, text, ident, changed, explained, kept, ours)


def test_what_the_configure_gave_a_file_is_recorded_exactly() -> None:
    assert decide({}, [seen("cap_net_admin,cap_net_raw=eip")], ["pkg"]) == \
        {"pkg": {TOOL: ["cap_net_admin,cap_net_raw=eip", *NEW]}}


def test_what_the_run_did_not_give_is_never_learned() -> None:
    for case in (seen(changed=False),  # set by hand before the run
                 seen(explained=True),  # a local, dpkg or rpm declaration, or the reader's
                 seen(kept=True),  # the run began with it so
                 seen(ours=True),  # capsnap put it back
                 seen(text=None)):
        assert decide({}, [case], ["pkg"]) == {}, case
    # A package the run did not configure (dpkg --unpack) teaches nothing.
    assert decide({}, [seen()], ["other"]) == {}


def test_a_configure_that_leaves_a_new_file_without_it_withdraws_it() -> None:
    assert decide(RECORDS, [seen(text=None)], ["pkg"]) == {}
    # With capabilities the run did not give (capsnap's, after an unpack, set
    # in an earlier run): withdrawn too.
    assert decide(RECORDS, [seen(changed=False)], ["pkg"]) == {}
    assert decide(RECORDS, [seen(ident=None)], ["pkg"]) == {}  # the file is gone


def test_the_same_file_losing_it_is_drift_not_withdrawal() -> None:
    assert decide(RECORDS, [seen(text=None, ident=OLD, changed=False)], ["pkg"]) == RECORDS
    # Without birth times, size and mtime tell a reused inode number apart.
    no_btime = {"pkg": {TOOL: ["cap_net_raw=ep", 10, 100, 5, -1]}}
    assert decide(no_btime, [seen(text=None, ident=(10, 100, 5, -1))], ["pkg"]) == no_btime
    assert decide(no_btime, [seen(text=None, ident=(10, 100, 6, -1))], ["pkg"]) == {}


def test_new_capabilities_replace_the_old_and_capsnaps_own_keep_them() -> None:
    assert decide(RECORDS, [seen("cap_net_bind_service=ep")], ["pkg"]) == \
        {"pkg": {TOOL: ["cap_net_bind_service=ep", *NEW]}}
    # What capsnap put back on the new file, untouched: kept, on the new file.
    assert decide(RECORDS, [seen(changed=False, ours=True)], ["pkg"]) == \
        {"pkg": {TOOL: ["cap_net_raw=ep", *NEW]}}


def test_records_the_run_says_nothing_of_stay() -> None:
    other = {"other": {"/usr/bin/x": ["cap_chown=ep", 1, 2, 3, 4]}}
    assert decide({**RECORDS, **other}, [], ["pkg"]) == {**RECORDS, **other}
    assert decide(other, [seen(package="other", path="/usr/bin/x", text=None)],
                  ["pkg"]) == other


def test_the_records_are_bounded() -> None:
    full = {"a": {f"/usr/bin/{n}": ["cap_chown=ep", n, 0, 0, -1]
                  for n in range(observed.LIMIT)}}
    assert decide(full, [seen()], ["pkg"]) == full
    # A record already there may still change.
    replaced = decide(full, [seen(package="a", path="/usr/bin/0")], ["a"])
    assert replaced["a"]["/usr/bin/0"] == ["cap_net_raw=ep", *NEW]


def _root(tmp_path: Path, state: str = "installed") -> SystemPaths:
    info = tmp_path / "var/lib/dpkg/info"
    info.mkdir(parents=True, exist_ok=True)
    (tmp_path / "var/lib/capsnap").mkdir(parents=True, exist_ok=True)
    (tmp_path / "usr/bin").mkdir(parents=True, exist_ok=True)
    (tmp_path / "var/lib/dpkg/status").write_text(
        f"Package: pkg\nStatus: install ok {state}\nArchitecture: amd64\nVersion: 2\n\n")
    return SystemPaths.select(root=str(tmp_path))


def test_records_read_back_until_the_package_or_its_list_lets_go(tmp_path: Path) -> None:
    paths = _root(tmp_path)
    tool = tmp_path / TOOL.lstrip("/")
    tool.write_bytes(b"\x7fELF")
    st = os.stat(tool)
    ident = [st.st_ino, st.st_size, st.st_mtime_ns, -1]
    listing = tmp_path / "var/lib/dpkg/info/pkg.list"
    listing.write_text(f"/.\n/usr\n/usr/bin\n{TOOL}\n")
    observed.save(paths, observed.State({"pkg": {TOOL: ["cap_net_raw=ep", *ident]}}, None, {}))
    status = {"pkg": ("installed", "2")}
    (decl,) = observed.read(paths, 41, status)
    assert (decl.path, decl.text, decl.source, decl.package, decl.version, decl.confirmed) == \
        (TOOL, "cap_net_raw=ep", "dpkg-script", "pkg", "2", True)
    assert decl.reason == "seen set during pkg's configure"
    # The same file without it (someone's setcap -r) is drift: still read.
    assert len(observed.read(paths, 41, status)) == 1
    # Removed: forgotten.
    assert observed.read(paths, 41, {"pkg": ("config-files", "2")}) == []
    assert observed.load(paths).records == {}

    observed.save(paths, observed.State({"pkg": {TOOL: ["cap_net_raw=ep", *ident]}}, None, {}))
    listing.write_text("/.\n/usr\n/usr/bin\n/usr/bin/other\n")
    os.utime(listing.parent, ns=(1, 1))  # dpkg changed its info directory
    assert observed.read(paths, 41, status) == []
    assert observed.load(paths).records == {}


def test_a_configure_without_hooks_leaving_a_new_file_withdraws_it(tmp_path: Path) -> None:
    paths = _root(tmp_path)
    tool = tmp_path / TOOL.lstrip("/")
    tool.write_bytes(b"\x7fELF")
    (tmp_path / "var/lib/dpkg/info/pkg.list").write_text(f"{TOOL}\n")
    st = os.stat(tool)
    observed.save(paths, observed.State(
        {"pkg": {TOOL: ["cap_net_raw=ep", st.st_ino + 1, st.st_size, st.st_mtime_ns, -1]}},
        None, {}))
    # Unpacked, not configured: kept for the configure to decide.
    assert len(observed.read(paths, 41, {"pkg": ("unpacked", "2")})) == 1
    assert observed.read(paths, 41, {"pkg": ("installed", "2")}) == []
