"""The hook entry point: apt's protocol, and never failing the package manager."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from capsnap import hook
from capsnap.paths import SystemPaths

APT_V3 = """\
VERSION 3
APT::Architecture=amd64
DPkg::Tools::Options::/etc/capsnap/apt-pre-install-pkgs::Version=3

foo 1.0 all none < 1.1 all none /var/cache/apt/archives/foo_1.1_all.deb
newpkg - - none < 2.0 amd64 same /var/cache/apt/archives/newpkg_2.0_amd64.deb
gone 3 amd64 none > - - none **REMOVE**
foo 1.0 all none < 1.1 all none **CONFIGURE**
"""


def test_parse_apt_protocol_3_and_2() -> None:
    assert hook.parse_apt_packages(APT_V3.splitlines()) == [
        ("foo", "1.0", "1.1"), ("newpkg", None, "2.0"), ("gone", "3", None),
        ("foo", "1.0", "1.1")]
    v2 = ["VERSION 2", "APT::Architecture=amd64", "", "foo 1.0 < 1.1 /x/foo.deb",
          "bar - < 2 **CONFIGURE**"]
    assert hook.parse_apt_packages(v2) == [("foo", "1.0", "1.1"), ("bar", None, "2")]


def _run(tmp_path: Path, name: str, stdin: str = "", strict: bool = False) -> int:
    paths = SystemPaths(root=str(tmp_path))
    if strict:
        (tmp_path / "etc/capsnap").mkdir(parents=True)
        (tmp_path / "etc/capsnap/capsnap.conf").write_text("strict = yes\n")
    return hook.run(name, paths, None, 41, stdin=io.StringIO(stdin))


def test_errors_are_reported_and_swallowed(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, "apt-pre-install-pkgs", "garbage\n") == 0
    err = capsys.readouterr().err
    assert err.startswith("capsnap: hook apt-pre-install-pkgs: ")
    assert "protocol version" in err
    assert "apt-pre-install-pkgs" in (tmp_path / "var/log/capsnap.log").read_text()


def test_strict_mode_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, "apt-pre-install-pkgs", "garbage\n", strict=True) == 1
    assert "strict = yes" in capsys.readouterr().err


def test_unknown_hook_is_reported_not_raised(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, "no-such-hook") == 0
    assert "unknown hook 'no-such-hook'" in capsys.readouterr().err


def test_internal_errors_never_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    def explode(ctx: hook.Context) -> int:
        raise RuntimeError("boom")

    monkeypatch.setitem(hook.HOOKS, "dpkg-triggered", explode)
    assert _run(tmp_path, "dpkg-triggered") == 0
    assert "internal error (please report it): RuntimeError: boom" in capsys.readouterr().err


def test_changed_packages() -> None:
    assert hook._changed({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "2.1", "d": "4"}) == [
        ("b", "2", "2.1"), ("c", "3", None), ("d", None, "4")]


def test_retention_settings(tmp_path: Path) -> None:
    from capsnap import config

    conf = tmp_path / "etc/capsnap/capsnap.conf"
    conf.parent.mkdir(parents=True)
    paths = SystemPaths(root=str(tmp_path))

    def retention() -> tuple[int | None, float | None]:
        settings = config.load(paths)[0]
        return settings.keep, settings.keep_days

    assert retention() == (100, None)  # bounded by default
    conf.write_text("keep = 7\nkeep-days = 30\n")
    assert retention() == (7, 30.0) and not config.load(paths)[1]
    conf.write_text("keep = all\nkeep-days = none\n")
    assert retention() == (None, None)
    conf.write_text("keep = 0\nkeep = -3\nkeep = x\nkeep-days = 0\nkeep-days = nan\n")
    settings, problems = config.load(paths)
    assert settings == config.Config() and len(problems) == 5
    assert problems[0].endswith("capsnap.conf:1: keep must be a number of transactions "
                                "(1 or more) or 'all', skipped")
