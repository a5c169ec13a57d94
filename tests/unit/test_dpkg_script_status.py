"""dpkg-script's status lookup cuts the paragraphs of a few packages out of
the status file; it must find what splitting every paragraph finds."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from capsnap.declarations import dpkg, dpkg_script
from capsnap.paths import SystemPaths

NAMES = ["foo", "foo-bar", "bar", "libx1", "zed"]


def _paragraph(name: str, arch: str, version: str) -> str:
    return (f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
            f"Architecture: {arch}\nVersion: {version}\nDescription: {name}\n .\n x\n")


@settings(max_examples=120, deadline=None)
@given(packages=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(["all", "amd64",
                                                                            "i386"]),
                                   st.sampled_from(["1", "2:3.4-1"])), max_size=8,
                         unique_by=lambda p: (p[0], p[1])),
       wanted=st.sets(st.sampled_from([*NAMES, "missing"])),
       ending=st.sampled_from(["", "\n"]))
def test_cut_out_paragraphs_are_those_of_a_full_split(tmp_path_factory: object,
                                                      packages: list[tuple[str, str, str]],
                                                      wanted: set[str], ending: str) -> None:
    top: Path = tmp_path_factory.mktemp("status")  # type: ignore[attr-defined]
    (top / "var/lib/dpkg/updates").mkdir(parents=True)
    text = "\n".join(_paragraph(*p) for p in packages)
    (top / "var/lib/dpkg/status").write_text(text[:-1] + ending if text else "")
    paths = SystemPaths(root=str(top))
    full = [p.strip("\n") for p in dpkg.database_paragraphs(paths)
            if dpkg._field(p, "Package") in wanted]
    assert sorted(dpkg_script._paragraphs_of(paths, wanted)) == sorted(full)
