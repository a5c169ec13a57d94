# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""The Jinja2 environment for templates/: maintainer scripts and spec snippets.

StrictUndefined, so a missing variable is an error and never an empty
string in a shell script; `shquote` quotes for POSIX sh; callers pass inputs
sorted, so the same declarations always give the same bytes.  Every value a
template under rpm/ prints has its % doubled, whatever filter made it: rpm
expands macros in the whole spec, %files and scriptlets alike, and %(...)
runs a shell command on the build host.
"""

from __future__ import annotations

import shlex
from typing import Any

from capsnap.errors import OperationFailed
from capsnap.paths import data_dir


def templates_dir() -> str:
    return data_dir("templates", "deb")


def shquote(value: object) -> str:
    """Quote for POSIX sh.  Text with $ or ` goes in double quotes with those
    escaped, which shellcheck reads as intended (it questions '$(...)')."""
    text = str(value)
    if "$" not in text and "`" not in text:
        return shlex.quote(text)
    escaped = "".join("\\" + c if c in '\\"$`' else c for c in text)
    return f'"{escaped}"'


def rpmpath(value: object) -> str:
    """A path for a %files line: quoted (spaces); % is doubled with every value."""
    text = str(value)
    if '"' in text or "\n" in text:
        raise OperationFailed(f"{text!r}: rpm cannot list a path with a double quote or a "
                              "newline in %files")
    return '"' + text + '"'


def rpm_literal(value: object) -> str:
    """What rpm's macro expansion turns back into `value`."""
    return str(value).replace("%", "%%")


def render(name: str, **context: Any) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # shell and spec files, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        # finalize sees every {{ value }} after its filters, so no value can
        # reach a spec unescaped, nor be escaped twice.
        finalize=rpm_literal if name.startswith("rpm/") else None,
    )
    env.filters["shquote"] = shquote
    env.filters["rpmpath"] = rpmpath
    return env.get_template(name).render(**context)
