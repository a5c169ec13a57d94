"""The capability text grammar and getcap's canonical form (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capsnap import captext
from capsnap.captext import CAP_NAMES, CapSet, format_text, parse, parse_file_caps
from capsnap.errors import CapTextError

KERNEL_BITS = 41
ALL41 = (1 << 41) - 1


def test_there_are_41_capabilities_in_number_order() -> None:
    assert len(CAP_NAMES) == 41
    assert CAP_NAMES[0] == "cap_chown"
    assert CAP_NAMES[10] == "cap_net_bind_service"
    assert CAP_NAMES[40] == "cap_checkpoint_restore"


@pytest.mark.parametrize(("text", "expected"), [
    ("cap_net_bind_service=+ep", CapSet(1 << 10, 1 << 10, 0)),
    ("cap_net_raw,cap_net_admin+ep", CapSet(1 << 13 | 1 << 12, 1 << 13 | 1 << 12, 0)),
    ("CAP_Chown=p", CapSet(0, 1, 0)),
    ("=ep", CapSet(ALL41, ALL41, 0)),
    ("all=i", CapSet(0, 0, ALL41)),
    ("0x1f=ep", CapSet(1 << 31, 1 << 31, 0)),
    ("010=i", CapSet(0, 0, 1 << 8)),
    ("63=p", CapSet(0, 1 << 63, 0)),
    ("", CapSet()),
    ("  \t", CapSet()),
    ("cap_chown=", CapSet()),
    ("cap_chown+e-e", CapSet()),
    ("cap_chown=-p", CapSet()),
    ("cap_chown=ep cap_chown-e", CapSet(0, 1, 0)),
    ("cap_chown=e+p-e", CapSet(0, 1, 0)),
])
def test_parse(text: str, expected: CapSet) -> None:
    assert parse(text, KERNEL_BITS) == expected


def test_all_means_what_the_running_kernel_knows() -> None:
    assert parse("all=p", 38).permitted == (1 << 38) - 1
    assert parse("=p", 64).permitted == (1 << 64) - 1


@pytest.mark.parametrize(("text", "reason"), [
    ("cap_foo=ep", "unknown capability name 'cap_foo'"),
    ("cap_chown2=p", "expected '=', '+' or '-', found '2'"),
    ("64=p", "out of range"),
    ("08=p", "found '8'"),
    ("cap_chown", "found end of text"),
    ("cap_chown=P", "unknown flag 'P'"),
    ("cap_chown,=p", "a capability name must follow ','"),
    ("+ep", "needs a list of capabilities"),
    ("=+p", "need a list of capabilities"),
    ("cap_chown+", "needs flags after it"),
    ("cap_chown=e+", "flags must follow '+'"),
    ("=e+p", "needs a list of capabilities"),
    ("cap_chown+=p", "unknown flag '='"),
    # "all" is a word of its own, not the start of a longer one.
    ("allx=p", "unknown capability name 'allx'"),
    ("all2=p", "unknown capability name 'all2'"),
    ("ALL_x=p", "unknown capability name 'ALL_x'"),
])
def test_parse_rejects_what_libcap_rejects(text: str, reason: str) -> None:
    with pytest.raises(CapTextError) as info:
        parse(text, KERNEL_BITS)
    assert reason in str(info.value)
    assert repr(text) in str(info.value)


def test_error_points_at_the_offending_clause() -> None:
    with pytest.raises(CapTextError) as info:
        parse("cap_chown=ep cap_bogus=p cap_kill=p", KERNEL_BITS)
    assert info.value.clause_number == 2
    assert info.value.clause == "cap_bogus=p"


def test_effective_rule_points_at_the_clause_that_broke_it() -> None:
    with pytest.raises(CapTextError) as info:
        parse_file_caps("cap_chown=pe cap_kill=p", KERNEL_BITS)
    assert info.value.clause == "cap_kill=p"
    assert "cap_kill not effective" in str(info.value)
    # An effective set wider than permitted|inheritable is what setcap takes.
    assert parse_file_caps("cap_chown=e", KERNEL_BITS) == CapSet(1, 0, 0)


@pytest.mark.parametrize(("caps", "text"), [
    (CapSet(1 << 12 | 1 << 13, 1 << 12 | 1 << 13, 0), "cap_net_admin,cap_net_raw=ep"),
    (CapSet(), "="),
    (CapSet(ALL41, ALL41, 0), "=ep"),
    (CapSet(ALL41 & ~1, ALL41 & ~1, 0), "=ep cap_chown-ep"),
    (CapSet(1 << 63, 1 << 63, 0), "= 63+ep"),
    (CapSet(0, 1, 1), "cap_chown=ip"),
    (CapSet(1, 1, 1 | 2), "cap_chown=eip cap_dac_override+i"),
    (CapSet(0, 0, ALL41 | 1), "=i"),
])
def test_format_as_getcap(caps: CapSet, text: str) -> None:
    assert format_text(caps, KERNEL_BITS) == text


capsets = st.builds(
    lambda p, i, e: CapSet(effective=e & ((1 << 64) - 1), permitted=p, inheritable=i),
    st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1),
    st.integers(0, (1 << 64) - 1))


@given(capsets, st.sampled_from([38, 40, 41]))
def test_canonical_text_parses_back_to_the_same_sets(caps: CapSet, kernel_bits: int) -> None:
    text = format_text(caps, kernel_bits)
    assert parse(text, kernel_bits) == caps
    assert format_text(parse(text, kernel_bits), kernel_bits) == text


@given(st.lists(st.sampled_from(CAP_NAMES), min_size=1, max_size=5),
       st.sampled_from(["e", "p", "i", "ep", "ip", "eip", "pe"]))
def test_names_in_any_case_and_order(names: list[str], flags: str) -> None:
    lower = parse(",".join(names) + "=" + flags, KERNEL_BITS)
    upper = parse(",".join(n.upper() for n in names) + "=" + "".join(reversed(flags)),
                  KERNEL_BITS)
    assert lower == upper
    assert captext.bits_of(lower.all_bits()) == sorted({CAP_NAMES.index(n) for n in names})


def test_all_in_a_list_resets_what_came_before_it_as_libcap_does() -> None:
    assert parse("47,all=p", KERNEL_BITS).permitted == ALL41
    assert parse("all,47=p", KERNEL_BITS).permitted == ALL41 | 1 << 47


def test_every_c_locale_space_separates_clauses() -> None:
    # cap_from_text skips what isspace(3) calls space: \v, \f and \r too
    # (setcap takes "cap_kill=p\vcap_chown=p" as two clauses).
    spaced = parse("cap_kill=p cap_chown=ep cap_setuid=i cap_net_raw=p", KERNEL_BITS)
    for sep in ("\t", "\n", "\v", "\f", "\r", " \r\n "):
        text = sep.join(["cap_kill=p", "cap_chown=ep", "cap_setuid=i", "cap_net_raw=p"])
        assert parse(sep + text + sep, KERNEL_BITS) == spaced, repr(sep)


def test_a_tie_for_the_commonest_flags_is_broken_as_getcap_does() -> None:
    # 20 capabilities with "ep", 20 with none, one with "eip": libcap takes
    # the empty combination as the base, and getcap prints (libcap 2.66,
    # 41 capabilities) what is asserted here.
    first20 = ",".join(CAP_NAMES[:20])
    caps = parse_file_caps(f"{first20}=ep cap_checkpoint_restore=eip", KERNEL_BITS)
    assert format_text(caps, KERNEL_BITS) == f"cap_checkpoint_restore=eip {first20}+ep"
    # And with 40 known, 20 "ep" against 20 without any.
    twenty = parse(f"{first20}=ep", 40)
    assert format_text(twenty, 40) == f"{first20}=ep"
