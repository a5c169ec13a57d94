"""The maintainer-script reader on synthetic scripts written for capsnap."""

from __future__ import annotations

from capsnap.declarations.scripts import ANY, calls, matching


def pairs(text: str) -> list[tuple[str, str]]:
    return [(c.caps, c.path) for c in calls(text)]


def test_literal_call_with_its_line() -> None:
    found = calls("#!/bin/sh\nset -e\nsetcap cap_net_raw+ep /usr/bin/a\n")
    assert [(c.caps, c.path, c.line) for c in found] == [("cap_net_raw+ep", "/usr/bin/a", 3)]


def test_quoting_forms() -> None:
    script = """
setcap 'cap_net_raw+ep' "/usr/bin/a"
setcap "cap_net_admin,cap_net_raw=eip" /usr/bin/b\\ c
setcap cap_net_raw"+ep" '/usr/bin/'"d"
"""
    assert pairs(script) == [("cap_net_raw+ep", "/usr/bin/a"),
                             ("cap_net_admin,cap_net_raw=eip", "/usr/bin/b c"),
                             ("cap_net_raw+ep", "/usr/bin/d")]


def test_variables_and_divert_truename() -> None:
    script = """
BIN=/usr/bin
PROGRAM=$(dpkg-divert --truename $BIN/ping)
CAPS="cap_net_raw+ep"
setcap $CAPS "$PROGRAM"
setcap ${CAPS} ${PROGRAM}6
"""
    assert pairs(script) == [("cap_net_raw+ep", "/usr/bin/ping"),
                             ("cap_net_raw+ep", "/usr/bin/ping6")]


def test_unknown_parts_are_wildcards_matched_against_the_file_list() -> None:
    script = 'ARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)\n' \
             'setcap cap_net_bind_service+ep "/usr/lib/$ARCH/helper"\n'
    (call,) = calls(script)
    assert call.path == f"/usr/lib/{ANY}/helper" and not call.exact
    files = ["/usr/lib/x86_64-linux-gnu/helper", "/usr/lib/x86_64-linux-gnu/other",
             "/usr/bin/helper"]
    assert matching(call.path, files) == ["/usr/lib/x86_64-linux-gnu/helper"]
    assert matching(ANY, files) == []  # a path that is all unknown names nothing
    assert matching("/usr/bin/helper", files) == ["/usr/bin/helper"]


def test_conditionals_options_and_fallbacks() -> None:
    script = """
if [ "$1" = configure ]; then
    if command -v setcap > /dev/null; then
        if ! setcap -q cap_net_raw+ep /usr/bin/a 2>/dev/null; then
            echo "setcap cap_sys_admin+ep /usr/bin/a failed" >&2
            chmod u+s /usr/bin/a
        fi
    elif true; then setcap cap_net_raw+p /usr/bin/b || true
    else
        /sbin/setcap cap_net_raw+ep /usr/bin/c && chmod u-s /usr/bin/c
    fi
fi
"""
    assert pairs(script) == [("cap_net_raw+ep", "/usr/bin/a"), ("cap_net_raw+p", "/usr/bin/b"),
                             ("cap_net_raw+ep", "/usr/bin/c")]


def test_variable_set_in_branches_gives_both() -> None:
    script = """
if [ -e /usr/bin/new ]; then P=/usr/bin/new; else P=/usr/bin/old; fi
setcap cap_net_raw+ep $P
"""
    assert sorted(pairs(script)) == [("cap_net_raw+ep", "/usr/bin/new"),
                                     ("cap_net_raw+ep", "/usr/bin/old")]


def test_setcap_in_a_function_and_a_loop() -> None:
    script = """
set_caps() {
    local file="$1"
    setcap cap_net_raw+ep "$file" || chmod u+s "$file"
}
for p in /usr/bin/oping /usr/bin/noping; do
    PROGRAM=$(dpkg-divert --truename $p)
    setcap cap_net_admin+ep $PROGRAM
done
"""
    found = pairs(script)
    assert ("cap_net_raw+ep", ANY) in found  # the function's argument is unknown
    assert ("cap_net_admin+ep", "/usr/bin/noping") in found
    assert ("cap_net_admin+ep", "/usr/bin/oping") in found


def test_commented_out_calls_and_data_are_not_calls() -> None:
    script = """
# setcap cap_sys_admin+ep /usr/bin/a
  #setcap cap_sys_admin+ep /usr/bin/b
echo 'setcap cap_sys_admin+ep /usr/bin/c'
cat <<EOF
setcap cap_sys_admin+ep /usr/bin/d
EOF
setcap -v cap_net_raw+ep /usr/bin/e
setcap -r /usr/bin/f
setcap -n 1000 cap_net_raw+ep /usr/bin/g
setcap cap_net_raw+ep /usr/bin/h # setcap cap_sys_admin+ep /usr/bin/i
"""
    assert pairs(script) == [("cap_net_raw+ep", "/usr/bin/h")]


def test_several_pairs_in_one_call_and_continuation_lines() -> None:
    script = "setcap cap_net_raw+ep /usr/bin/a \\\n    cap_net_admin+ep /usr/bin/b\nsetcap x\n"
    found = calls(script)
    assert [(c.caps, c.path, c.line) for c in found] == [
        ("cap_net_raw+ep", "/usr/bin/a", 1), ("cap_net_admin+ep", "/usr/bin/b", 1)]


def test_capability_text_that_is_unknown_is_not_guessed() -> None:
    assert pairs('setcap "$(cat /etc/caps)" /usr/bin/a\nsetcap $UNSET /usr/bin/b\n') == []
