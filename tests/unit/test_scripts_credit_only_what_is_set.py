"""The maintainer-script reader credits a script with a capability only where
the script can set exactly that: on the files a pattern can name, with a
capability text it spells out, from a command that can only be setcap.

Each case is a shape of shell the reader must read as sh would (where it
can) and must not over-read (where it cannot know).
"""

from __future__ import annotations

from capsnap.declarations.scripts import ANY, calls, matching


def pairs(text: str) -> list[tuple[str, str]]:
    return [(c.caps, c.path) for c in calls(text)]


FILES = ["/usr/lib/x/helper", "/usr/lib/x/bin/helper", "/usr/lib/x/sub/tool/helper",
         "/usr/lib/x/tool", "/usr/bin/x"]


def test_a_pattern_needs_every_piece_in_order_and_in_full() -> None:
    # Unknown parts stand for text, never for the pieces around them.
    assert matching(f"/usr/lib/{ANY}/tool/{ANY}", FILES) == ["/usr/lib/x/sub/tool/helper"]
    assert matching(f"/usr/lib/{ANY}/bin/{ANY}helper", FILES) == ["/usr/lib/x/bin/helper"]
    # "/usr/lib/x/" and "/x/helper" overlap in "/usr/lib/x/helper" only by
    # sharing "/x/": the pattern needs both, whole.
    assert matching(f"/usr/lib/x/{ANY}/x/helper", FILES) == []
    assert matching(f"/usr/{ANY}/lib/x/helper", FILES) == []


def test_only_a_command_that_is_setcap_whatever_it_expands_to() -> None:
    script = """
if [ -x /sbin/setcap ]; then TOOL=/sbin/setcap; else TOOL=/bin/chmod; fi
$TOOL cap_net_raw+ep /usr/bin/x
SETCAP=/sbin/setcap
$SETCAP cap_net_admin+ep /usr/bin/x
"""
    assert pairs(script) == [("cap_net_admin+ep", "/usr/bin/x")]


def test_a_capability_text_that_may_take_two_values_is_not_guessed() -> None:
    script = """
if [ "$WANT" = admin ]; then CAPS=cap_net_admin+ep; else CAPS=cap_net_raw+ep; fi
setcap $CAPS /usr/bin/x
"""
    assert pairs(script) == []


def test_declarations_of_local_and_export_are_followed() -> None:
    script = """
f() {
    local prog=/usr/lib/x/helper
    export CAPS=cap_net_bind_service+ep
    setcap "$CAPS" "$prog"
}
"""
    assert pairs(script) == [("cap_net_bind_service+ep", "/usr/lib/x/helper")]


def test_a_word_of_too_many_values_is_cut_not_exploded() -> None:
    """A loop of loops multiplies: the reader keeps a bounded number of the
    values rather than all (here 10 x 10 = 100, cut to 64)."""
    names = " ".join(f"a{i}" for i in range(10))
    script = f"for d in {names}; do :; done\nfor f in {names}; do :; done\n" \
             "setcap cap_net_raw+ep /usr/lib/$d/$f\n"
    found = pairs(script)
    assert 0 < len(found) <= 64
    assert all(c == "cap_net_raw+ep" and p.startswith("/usr/lib/a") for c, p in found)


def test_divert_truename_is_its_path_only_when_that_is_all() -> None:
    script = """
P=$(dpkg-divert --truename /usr/bin/x --quiet)
setcap cap_net_raw+ep "$P"
Q=$(dpkg-divert --truename /usr/bin/x)
setcap cap_net_raw+ep "$Q"
"""
    assert pairs(script) == [("cap_net_raw+ep", ANY), ("cap_net_raw+ep", "/usr/bin/x")]


def test_a_parameter_expansion_with_an_operation_is_unknown() -> None:
    script = """
P=/usr/lib/x/helper.real
setcap cap_net_raw+ep "${P%.real}"
setcap cap_net_raw+ep "${P:-/usr/bin/x}"
"""
    assert pairs(script) == [("cap_net_raw+ep", ANY), ("cap_net_raw+ep", "/usr/bin/x"),
                             ("cap_net_raw+ep", "/usr/lib/x/helper.real")]


def test_a_hash_inside_a_word_is_text_and_a_redirection_target_no_argument() -> None:
    script = """
setcap cap_net_raw+ep /usr/lib/x/a#b
setcap > /dev/null cap_net_admin+ep /usr/bin/x 2> /tmp/log
"""
    assert pairs(script) == [("cap_net_raw+ep", "/usr/lib/x/a#b"),
                             ("cap_net_admin+ep", "/usr/bin/x")]


def test_lines_are_counted_through_quoted_newlines() -> None:
    """A call's line (the declaration's origin, "postinst of pkg:7") counts
    the newlines inside quotes before it."""
    script = 'echo "two\nlines"\necho \'and\nthese\'\nX="$(printf \'%s\n\' a)"\n' \
             "setcap cap_net_raw+ep /usr/bin/x\n"
    assert [c.line for c in calls(script)] == [7]
