"""The plain command lines read without argparse mean what argparse says they mean."""

from __future__ import annotations

import random

import pytest

from capsnap import cli

WORDS = ["check", "reapply", "diff", "list", "1", "before", "--root", "--admindir",
         "--dbpath", "--db", "-v", "--verbose", "--json", "--package", "--dry-run", "--pack",
         "--root=/r", "-h", "/srv/root", "/var/lib/dpkg", "foo", "bar:amd64", "-", "", "--",
         "--version"]
FIELDS = ("root", "admindir", "dbpath", "db", "verbose", "json", "package", "dry_run",
          "snapshots")


def _argparse(argv: list[str]) -> dict[str, object] | None:
    parser = cli.build_parser(cli._command_named(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        return None
    defaults = {"verbose": False, "json": False, "dry_run": False}
    if args.command == "diff":
        defaults["package"] = None  # not an option of diff: absent either way
    return {"command": args.command,
            **{f: getattr(args, f, defaults.get(f)) for f in FIELDS}}


def test_random_command_lines_agree_with_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(20261129)
    plain = diffs = 0
    for _ in range(4000):
        argv = [rng.choice(WORDS) for _ in range(rng.randint(0, 7))]
        if rng.random() < 0.3:  # make well-formed ones common
            argv = ["--root", "/srv/root", rng.choice(["check", "reapply"]),
                    *rng.sample(["--json", "-v", "--package", "foo", "--dry-run"], 3)]
        elif rng.random() < 0.4:
            argv = ["--db", "/srv/c.db", "diff",
                    *rng.sample(["--json", "-v", "1", "before", "--db", "x"], 3)]
        mine = cli._plain_args(argv)
        if mine is None:
            continue
        plain += 1
        diffs += mine.command == "diff"
        theirs = _argparse(argv)
        assert theirs is not None, argv
        read = {"command": mine.command, **{f: getattr(mine, f, None) for f in FIELDS}}
        assert read == theirs, argv
    capsys.readouterr()
    assert plain > 200  # the comparison must have had something to compare
    assert diffs > 100


@pytest.mark.parametrize("argv", [
    ["check", "--pack", "foo"],           # an abbreviation: argparse's
    ["--root=/r", "check"],               # --opt=value: argparse's
    ["--root", "/a", "check", "--root", "/b"],  # given twice: argparse's
    ["check", "--package"],               # a missing value: argparse's error
    ["check", "--dry-run"],               # not an option of check
    ["check", "-h"],
    ["list"],
    ["diff", "1", "--json", "2"],         # words on both sides of an option: argparse's
    ["diff", "--package", "foo"],         # not an option of diff
    ["diff", "--", "1"],
])
def test_anything_unusual_is_left_to_argparse(argv: list[str]) -> None:
    assert cli._plain_args(argv) is None
