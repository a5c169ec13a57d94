"""What dpkg declarations cost to read again: the parsed-entries cache and the
slim import of python-debian (no root needed)."""

from __future__ import annotations

import marshal
import subprocess
from pathlib import Path

import pytest

from capsnap import captext
from capsnap.declarations import dpkg
from capsnap.declarations.entries import Fallback
from capsnap.paths import SystemPaths

SRC = Path(__file__).resolve().parents[2] / "src"
KNOWN = len(captext.CAP_NAMES)


def make_root(top: Path) -> SystemPaths:
    admin = top / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "updates").mkdir()
    (admin / "status").write_text(
        "Package: tool\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"
        "File-Capabilities:\n /usr/bin/tool cap_net_raw=ep\n /usr/bin/other cap_nope=ep\n"
        " /usr/bin/all all=p fallback=setuid:4750\n\n"
        "Package: plain\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n")
    (admin / "info/tool.list").write_text("/usr\n/usr/bin\n/usr/bin/tool\n/usr/bin/all\n")
    return SystemPaths.select(root=str(top))


def test_parsed_entries_come_from_the_cache_the_second_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = make_root(tmp_path)
    first = dpkg.read(paths, KNOWN)
    assert [(d.path, d.text, d.fallback) for d in first[0]] == [
        ("/usr/bin/tool", "cap_net_raw=ep", None),
        ("/usr/bin/all", "all=p", Fallback("setuid", 0o4750))]
    assert [p.message for p in first[1]] == [
        "File-Capabilities entry 2: invalid capability text (clause 1)"]

    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("parsed again")

    monkeypatch.setattr(dpkg, "parse_lines", refuse)
    assert dpkg.read(paths, KNOWN) == first
    # "all" means what the running kernel knows: another kernel parses again.
    with pytest.raises(AssertionError, match="parsed again"):
        dpkg.read(paths, KNOWN - 1)


@pytest.mark.parametrize("damage", [
    [["/usr/bin/tool"], []],  # an entry that is not seven fields
    [[("/usr/bin/tool", "cap_net_raw=ep", ("x", 0, 0), None, None, None, 1, False)], []],
    "not a field",
])
def test_a_damaged_cached_field_is_parsed_again(tmp_path: Path, damage: object) -> None:
    paths = make_root(tmp_path)
    first = dpkg.read(paths, KNOWN)
    cached = tmp_path / "var/cache/capsnap/dpkg-entries.marshal"
    data = marshal.loads(cached.read_bytes())
    (field,) = data["fields"]
    data["fields"][field] = damage
    cached.write_bytes(marshal.dumps(data))
    assert dpkg.read(paths, KNOWN) == first
    assert marshal.loads(cached.read_bytes())["fields"][field] != damage


def test_python_debian_parses_without_its_unused_imports() -> None:
    """deb822 is imported without chardet, email.utils, debian.changelog,
    subprocess and apt_pkg, which still work for whoever imports them
    afterwards (and for deb822 itself)."""
    script = f"""
import sys
sys.path.insert(0, {str(SRC)!r})
from capsnap.declarations import dpkg
text = "Package: a\\nVersion: 1\\nFile-Capabilities:\\n /x cap_kill=ep"
(field,) = dpkg._parse_paragraphs([text])
assert field["field"] == "\\n /x cap_kill=ep", field
unused = {{"chardet", "email.utils", "apt_pkg", "debian.changelog", "subprocess"}}
assert not unused & set(sys.modules), sorted(sys.modules)
deb822 = dpkg._deb822()
assert deb822.chardet.detect(b"abc")["encoding"] == "ascii"
assert deb822.email.utils.formatdate(0).endswith("1970 00:00:00 -0000")
assert deb822.debian.changelog.Changelog.__name__ == "Changelog"
import chardet, email.utils
assert type(chardet) is type(sys) and chardet.detect is deb822.chardet.detect
assert email.utils is sys.modules["email.utils"] and type(email.utils) is type(sys)
"""
    done = subprocess.run(["/usr/bin/python3", "-I", "-c", script], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_the_field_is_found_in_any_case_without_lowering_the_file(tmp_path: Path) -> None:
    import random

    rng = random.Random(16)
    spellings = ["File-Capabilities", "file-capabilities", "FILE-CAPABILITIES",
                 "File-capabilitie", "Filename", "fILE-cAPABILITIES"]
    for _ in range(200):
        paragraphs = []
        for n in range(rng.randint(0, 6)):
            lines = [f"Package: p{n}"]
            for _ in range(rng.randint(0, 3)):
                lines.append(f"{rng.choice(spellings)}:" + rng.choice(["", " x"]))
                lines.append(" /usr/bin/x cap_kill=ep")
            paragraphs.append("\n".join(lines))
        text = "\n\n".join(paragraphs) + rng.choice(["", "\n"])
        (tmp_path / "var/lib/dpkg").mkdir(parents=True, exist_ok=True)
        (tmp_path / "var/lib/dpkg/status").write_text(text)
        paths = SystemPaths.select(root=str(tmp_path))
        dpkg._read.clear()
        expected = [p for p in paragraphs
                    if any(line.lower().startswith("file-capabilities:")
                           for line in p.split("\n"))]
        assert dpkg._paragraphs_with_field(paths) == expected
