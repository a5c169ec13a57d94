"""The ELF reading behind the dynamic-loader rule, on synthetic files (pure)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsnap.fileops import ElfFacts, elf_facts, interpreter_by_name

ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_SONAME, DT_FLAGS_1 = 0, 1, 14, 0x6FFFFFFB
DF_1_NOW, DF_1_PIE = 0x1, 0x08000000

LAYOUTS = [(64, "<"), (64, ">"), (32, "<"), (32, ">")]
LAYOUT_IDS = ["64-bit LE", "64-bit BE", "32-bit LE", "32-bit BE"]


def make_elf(bits: int = 64, order: str = "<", *, e_type: int = ET_DYN, entry: int = 0x1000,
             interp: bool = False, dynamic: list[tuple[int, int]] | None = None,
             phentsize: int | None = None, phnum: int | None = None) -> bytes:
    """An ELF header, its program headers and a dynamic table, as a linker
    lays them out (header, then program headers, then the contents)."""
    ehsize, entsize = (64, 56) if bits == 64 else (52, 32)
    word = "Q" if bits == 64 else "I"
    headers: list[tuple[int, bytes]] = [(PT_LOAD, b"")]
    if interp:
        headers.append((PT_INTERP, b"/lib/ld-linux.so.2\0"))
    if dynamic is not None:
        table = b"".join(struct.pack(order + word * 2, tag, value)
                         for tag, value in [*dynamic, (DT_NULL, 0)])
        headers.append((PT_DYNAMIC, table))
    offset = ehsize + entsize * len(headers)
    phdrs, contents = b"", b""
    for p_type, content in headers:
        at = offset + len(contents)
        if bits == 64:
            phdrs += struct.pack(order + "IIQQQQQQ", p_type, 4, at, at, at, len(content),
                                 len(content), 8)
        else:
            phdrs += struct.pack(order + "IIIIIIII", p_type, at, at, at, len(content),
                                 len(content), 4, 4)
        contents += content
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if order == "<" else 2, 1]) \
        + bytes(9)
    header = ident + struct.pack(
        order + "HHI" + word * 3 + "IHHHHHH", e_type, 62, 1, entry, ehsize, 0, 0, ehsize,
        entsize if phentsize is None else phentsize,
        len(headers) if phnum is None else phnum, 64, 0, 0)
    assert len(header) == ehsize
    return header + phdrs + contents


def with_phoff(data: bytes, phoff: int) -> bytes:
    """A 64-bit little-endian ELF file with its e_phoff changed."""
    out = bytearray(data)
    struct.pack_into("<Q", out, 32, phoff)
    return bytes(out)


@pytest.mark.parametrize(("bits", "order"), LAYOUTS, ids=LAYOUT_IDS)
def test_a_self_starting_shared_object_is_a_loader(bits: int, order: str) -> None:
    facts = elf_facts(make_elf(bits, order, entry=0x1AB70, dynamic=[(DT_SONAME, 1)]))
    assert facts == ElfFacts(ET_DYN, 0x1AB70, False, False, 0)
    assert facts.is_loader


@pytest.mark.parametrize(("bits", "order"), LAYOUTS, ids=LAYOUT_IDS)
def test_a_loader_without_a_dynamic_table_or_soname_is_one_too(bits: int, order: str) -> None:
    # musl's libc.so, its dynamic loader, has no DT_SONAME.
    facts = elf_facts(make_elf(bits, order, dynamic=[(DT_FLAGS_1, DF_1_NOW)]))
    assert facts is not None and facts.is_loader
    facts = elf_facts(make_elf(bits, order))
    assert facts is not None and facts.is_loader


@pytest.mark.parametrize(("bits", "order"), LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize(("what", "options"), [
    ("a PIE executable (PT_INTERP)", {"interp": True, "dynamic": [(DT_NEEDED, 1)]}),
    ("glibc's libc.so.6: entry and PT_INTERP", {"interp": True, "dynamic": [(DT_SONAME, 1)]}),
    ("a library with an entry point and DT_NEEDED", {"dynamic": [(DT_NEEDED, 1)]}),
    ("a library without an entry point", {"entry": 0, "dynamic": [(DT_SONAME, 1)]}),
    ("a static PIE (DF_1_PIE)", {"dynamic": [(DT_FLAGS_1, DF_1_NOW | DF_1_PIE)]}),
    ("a static executable (ET_EXEC)", {"e_type": ET_EXEC}),
])
def test_what_is_not_a_loader(bits: int, order: str, what: str,
                              options: dict[str, Any]) -> None:
    facts = elf_facts(make_elf(bits, order, **options))
    assert facts is not None, what
    assert not facts.is_loader, what


def test_the_values_read_are_the_ones_written() -> None:
    facts = elf_facts(make_elf(64, ">", entry=0x1234_5678_9ABC, interp=True,
                               dynamic=[(DT_NEEDED, 7), (DT_FLAGS_1, DF_1_PIE)]))
    assert facts == ElfFacts(ET_DYN, 0x1234_5678_9ABC, True, True, DF_1_PIE)
    facts = elf_facts(make_elf(32, "<", e_type=ET_EXEC, entry=0x8048000))
    assert facts == ElfFacts(ET_EXEC, 0x8048000, False, False, 0)


def test_the_dynamic_table_ends_at_dt_null() -> None:
    data = bytearray(make_elf(64, "<", dynamic=[(DT_SONAME, 1)]))
    # A DT_NEEDED after the DT_NULL that ends the table does not count.
    data += struct.pack("<QQ", DT_NEEDED, 1)
    facts = elf_facts(bytes(data))
    assert facts is not None and not facts.has_needed


@pytest.mark.parametrize(("bits", "order"), LAYOUTS, ids=LAYOUT_IDS)
def test_every_truncation_is_answered_without_a_crash(bits: int, order: str) -> None:
    whole = make_elf(bits, order, interp=True, dynamic=[(DT_NEEDED, 1), (DT_FLAGS_1, DF_1_PIE)])
    ehsize, entsize = (64, 56) if bits == 64 else (52, 32)
    headers_end = ehsize + 3 * entsize
    for size in range(len(whole)):
        facts = elf_facts(whole[:size])
        if size < headers_end:
            # The kernel cannot read the program headers: nothing to start.
            assert facts is None, size
        else:
            # Cut inside the contents: the program headers still say PT_INTERP.
            assert facts is not None and facts.has_interp and not facts.is_loader, size


@pytest.mark.parametrize(("what", "data"), [
    ("empty", b""),
    ("magic only", b"\x7fELF"),
    ("not ELF", b"MZ" + bytes(200)),
    ("bad class", b"\x7fELF\x03\x01\x01" + bytes(100)),
    ("bad byte order", b"\x7fELF\x02\x00\x01" + bytes(100)),
    ("no program headers", make_elf(phnum=0)),
    ("program headers of another size", make_elf(phentsize=40)),
    ("program headers far past the end", with_phoff(make_elf(), 1 << 40)),
    ("program headers running past the end", with_phoff(make_elf(), len(make_elf()) - 20)),
    ("more program headers than the kernel reads", make_elf(phnum=0xFFFF)),
])
def test_what_the_kernel_would_not_start_is_not_parsed(what: str, data: bytes) -> None:
    assert elf_facts(data) is None, what


def test_a_dynamic_table_pointing_outside_the_file_reads_as_empty() -> None:
    data = bytearray(make_elf(64, "<", dynamic=[(DT_NEEDED, 1)]))
    # The second program header is PT_DYNAMIC; move its p_offset far away.
    struct.pack_into("<Q", data, 64 + 56 + 8, 1 << 62)
    facts = elf_facts(bytes(data))
    # Unseen DT_NEEDED: the answer errs on the side of refusing.
    assert facts is not None and not facts.has_needed and facts.is_loader


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(LAYOUTS), st.binary(min_size=0, max_size=600), st.data())
def test_garbage_after_the_magic_never_crashes(layout: tuple[int, str], noise: bytes,
                                               data: st.DataObject) -> None:
    bits, order = layout
    whole = bytearray(make_elf(bits, order, interp=data.draw(st.booleans()),
                               dynamic=[(DT_NEEDED, 1), (DT_FLAGS_1, DF_1_PIE)]))
    # Overwrite a random stretch after the identification bytes with noise.
    at = data.draw(st.integers(6, len(whole)))
    whole[at:at + len(noise)] = noise
    facts = elf_facts(bytes(whole))
    assert facts is None or isinstance(facts.is_loader, bool)


@pytest.mark.parametrize("name", [
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "ld-linux.so.2", "ld-musl-x86_64.so.1",
    "ld.so.1", "ld64.so.2", "setpriv", "capsh", "sqlite3", "openssl", "gdb", "zsh", "fish",
    "tcsh", "busybox", "gawk", "python3.11", "perl5.36.0", "lli",
])
def test_code_runners_by_name(name: str) -> None:
    assert interpreter_by_name(name) == name


@pytest.mark.parametrize("name", ["ping", "true", "ldconfig", "ldd-helper", "dumpcap",
                                  "fping", "gst-ptp-helper", "mtr-packet"])
def test_ordinary_helpers_by_name(name: str) -> None:
    assert interpreter_by_name(name) is None
