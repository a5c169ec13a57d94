"""`capsnap COMMAND --help`, the man page and bash completion agree (issue 13),
and completion offers what is recorded: snapshot ids and labels, declared
paths, recorded packages, capability names."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path

import pytest

from capsnap import captext, cli
from tests.conftest import REPO, SRC, SYSTEM_PYTHON

MAN = (REPO / "src/man/capsnap.1").read_text()
COMPLETION = REPO / "src/completion/capsnap"
GLOBAL = {"--root", "--admindir", "--dbpath", "--db", "-v", "--verbose", "-h", "--help",
          "--version"}


def parser_options(command: str) -> list[set[str]]:
    """Each option of the command (its spellings), the global ones aside."""
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [set(a.option_strings) for a in sub.choices[command]._actions
            if a.option_strings and not set(a.option_strings) & GLOBAL]


def synopsis_options(command: str) -> set[str]:
    """The options the man page's SYNOPSIS gives the command."""
    synopsis = MAN.split(".SH SYNOPSIS", 1)[1].split(".SH DESCRIPTION", 1)[0]
    entries = [e for e in synopsis.split(".br") if
               re.search(rf"^\.B (capsnap )?{re.escape(command)}(\s|$)",
                         e.replace("\\-", "-"), re.M)]
    assert len(entries) == 1, (command, entries)
    found = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", entries[0].replace("\\-", "-")))
    return found - GLOBAL


def commands_section(command: str) -> str:
    """The man page's paragraph on the command, up to the next command's."""
    section = MAN.split(".SH COMMANDS", 1)[1].split(".SH GLOBAL OPTIONS", 1)[0]
    section = section.replace("\\-", "-")
    names = "|".join(re.escape(c) for c in cli.COMMANDS)
    starts = [(m.start(), m.group(1)) for m in re.finditer(
        rf'^\.TP\n\.B[IR]? "?({names})[ "\n]', section, re.M)]
    found = [section[at:next((a for a, _ in starts if a > at), len(section))]
             for at, name in starts if name == command]
    assert len(found) == 1, command
    return found[0]


def completion_options(command: str) -> set[str]:
    text = COMPLETION.read_text()
    found = re.search(rf"^\s+{re.escape(command)}\) opts=\"([^\"]*)\"", text, re.M)
    assert found, command
    return set(found.group(1).split())


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_help_man_page_and_completion_give_the_same_options(command: str) -> None:
    options = parser_options(command)
    spelled = set().union(*options) if options else set()
    in_man = synopsis_options(command)
    assert in_man <= spelled, f"{command}: the man page has {in_man - spelled}"
    assert all(o & in_man for o in options), f"{command}: the man page lacks {options}"
    described = commands_section(command)
    for option in options:
        longest = max(option, key=len)
        assert longest in described or (option & in_man and command in ("get", "set")), \
            f"{command}: {longest} is not described under COMMANDS"
    assert completion_options(command) == spelled, command
    helped = subprocess.run([SYSTEM_PYTHON, "-m", "capsnap", command, "--help"],
                            capture_output=True, text=True, env=dict(os.environ,
                                                                     PYTHONPATH=str(SRC)))
    assert helped.returncode == 0
    assert all(any(s in helped.stdout for s in o) for o in options)


def test_completion_knows_every_capability_name() -> None:
    found = re.search(r'local capabilities="([^"]*)"', COMPLETION.read_text())
    assert found and found.group(1).split() == list(captext.CAP_NAMES)


def test_every_exit_code_and_state_file_is_in_the_man_page() -> None:
    status = MAN.split(".SH EXIT STATUS", 1)[1].split(".SH", 1)[0]
    for code in ("0", "1", "2", "3", "130"):
        assert f"\n.B {code}\n" in status, code
    files = MAN.split(".SH FILES", 1)[1].split(".SH", 1)[0].replace("\\-", "-")
    for name in ("capsnap.db", "capsnap.db.lock", "transaction-open", "dpkg-status.before",
                 "dpkg-caps.before", "dpkg-serve.pid", "transaction-reported", "packages/"):
        assert f"/var/lib/capsnap/{name}" in files, name
    diff = commands_section("diff")
    for label in ("lost", "gained", "changed", "replaced", "removed", "new", "caps kept",
                  "caps lost", "caps changed", *cli._ACTIONS_SHOWN.values()):
        assert label in diff, label


def complete(line: str, tmp_path: Path) -> list[str]:
    """What bash completion offers at the end of `line` (the fallback path,
    without the bash-completion package), with this checkout's capsnap."""
    script = f"""
        capsnap() {{ PYTHONPATH={SRC} {SYSTEM_PYTHON} -m capsnap "$@"; }}
        source {COMPLETION}
        COMP_LINE={line!r}
        read -ra COMP_WORDS <<< "$COMP_LINE"
        [[ $COMP_LINE == *' ' ]] && COMP_WORDS+=("")
        COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
        _capsnap
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    out = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout
    return [w for w in out.splitlines() if w]


def test_completion_offers_what_is_recorded(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/capsnap/packages").mkdir(parents=True)
    (root / "var/lib/capsnap/packages/gone-package").write_text("{}\n")
    local = root / "etc/capsnap/capabilities.d/local.capabilities"
    local.parent.mkdir(parents=True)
    local.write_text("/usr/bin/declared cap_net_raw=ep\n")
    db = tmp_path / "capsnap.db"
    (tmp_path / "f").write_text("x")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    for label in ("first", "second"):
        subprocess.run([SYSTEM_PYTHON, "-m", "capsnap", "--db", str(db), "snapshot", "--path",
                        str(tmp_path / "f"), "--label", label], env=env, check=True,
                       capture_output=True)

    assert set(complete(f"capsnap --db {db} diff ", tmp_path)) == {"1", "2", "first", "second"}
    assert complete(f"capsnap --db {db} diff fi", tmp_path) == ["first"]
    assert complete(f"capsnap --root {root} undeclare ", tmp_path) == ["/usr/bin/declared"]
    assert complete(f"capsnap --root {root} forget ", tmp_path) == ["gone-package"]
    assert set(complete("capsnap set cap_net_b", tmp_path)) == {"cap_net_bind_service",
                                                                "cap_net_broadcast"}
    assert complete("capsnap declare /x cap_net_raw,cap_sys_n", tmp_path) == \
        ["cap_net_raw,cap_sys_nice"]
    assert "--version" not in complete("capsnap diff --", tmp_path)
    assert "--version" in complete("capsnap --", tmp_path)
