"""Output that fits a terminal (issue 13): tables shortened to the terminal's
width with an ellipsis on a pseudo-terminal, whole when piped; colour and bold
on a terminal only, never with NO_COLOR; snapshot scopes summarised."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from capsnap.snapshot import Scope
from capsnap.store import Row, Store
from tests.conftest import SRC, SYSTEM_PYTHON, needs_root
from tests.packaging import make_dpkg_root

pytestmark = needs_root

LONG_DIR = "/opt/" + "/".join(["a-rather-long-directory-name"] * 4)
ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
PACKAGES = [f"package-number-{n:03d}" for n in range(140)]


def capsnap(args: list[str], terminal: bool, **env: str) -> str:
    """capsnap's stdout, on a pseudo-terminal or through a pipe."""
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    environ.update(PYTHONPATH=str(SRC), LC_ALL="C.UTF-8", **env)
    cmd = [SYSTEM_PYTHON, "-m", "capsnap", *args]
    if not terminal:
        return subprocess.run(cmd, capture_output=True, env=environ, check=False).stdout.decode()
    master, slave = pty.openpty()
    with subprocess.Popen(cmd, stdout=slave, stderr=subprocess.DEVNULL, env=environ) as proc:
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait()
    os.close(master)
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A root with a long declared path that drifted, and a database with a
    before scope naming 140 packages twice and a long changed path."""
    top = tmp_path_factory.mktemp("terminal")
    root = make_dpkg_root(top / "root")
    target = root / LONG_DIR.lstrip("/") / "helper-with-a-long-name"
    target.parent.mkdir(parents=True)
    shutil.copyfile("/bin/true", target)
    target.chmod(0o755)
    path = LONG_DIR + "/helper-with-a-long-name"
    local = root / "etc/capsnap/capabilities.d/local.capabilities"
    local.parent.mkdir(parents=True)
    local.write_text(f"{path} cap_net_bind_service,cap_net_raw=ep  # {'a long reason ' * 6}\n")
    db = top / "capsnap.db"
    raw = bytes.fromhex("01000002" + "00240000" * 2 + "00" * 8)
    with Store(str(db)) as store:
        tid = store.begin_transaction("apt", [(p, "1.0", "1.1") for p in PACKAGES])
        before = Scope("package", tuple(p for p in PACKAGES for _ in range(2)))
        store.add_snapshot(before.describe(), "/", [Row(path.encode(), raw, "cap_x=ep", 0,
                                                        PACKAGES[0], "1.0", True, 1, 1, 1)],
                           transaction_id=tid, phase="before")
        store.add_snapshot(Scope("package", tuple(PACKAGES)).describe(), "/",
                           [Row(path.encode(), None, None, None, PACKAGES[0], "1.1", True,
                                2, 1, 1)], transaction_id=tid, phase="after")
    return root, db


def commands(world: tuple[Path, Path]) -> list[list[str]]:
    root, db = world
    return [["--root", str(root), "check"], ["--root", str(root), "list"],
            ["--db", str(db), "snapshots"], ["--db", str(db), "diff"]]


def test_tables_fit_80_columns_on_a_terminal_and_are_whole_when_piped(
        world: tuple[Path, Path]) -> None:
    for args in commands(world):
        piped = capsnap(args, terminal=False)
        assert piped == capsnap(args, terminal=False, COLUMNS="80"), args
        assert "\x1b" not in piped and "\u2026" not in piped.split("package:")[0]
        assert max(len(line) for line in piped.splitlines()) > 80, args
        shown = capsnap(args, terminal=True, COLUMNS="80")
        visible = ESCAPE.sub("", shown)
        assert len(visible.splitlines()) == len(piped.splitlines()), args
        assert max(len(line) for line in visible.splitlines()) <= 80, (args, visible)
        assert "\u2026" in visible and "\x1b[1m" in shown, args
        wide = ESCAPE.sub("", capsnap(args, terminal=True, COLUMNS="400"))
        assert max(len(line) for line in wide.splitlines()) > 80, args


def test_no_color_means_no_escapes_even_on_a_terminal(world: tuple[Path, Path]) -> None:
    for args in commands(world):
        assert "\x1b" not in capsnap(args, terminal=True, COLUMNS="80", NO_COLOR=""), args


def test_snapshots_summarise_scopes_and_never_repeat_a_name(world: tuple[Path, Path]) -> None:
    _, db = world
    listed = capsnap(["--db", str(db), "snapshots"], terminal=False)
    for line in listed.splitlines()[1:]:
        assert "package:package-number-000,\u2026 (+139)" in line, line
        assert line.count("package-number-000") == 1
    for snap in json.loads(capsnap(["--db", str(db), "snapshots", "--json"], terminal=False)):
        names = snap["scope"].removeprefix("package:").split(",")
        assert names == PACKAGES
