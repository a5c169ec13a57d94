# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""/etc/capsnap/capsnap.conf: a few `key = value` settings, `#` comments.

    strict = no                     # yes: hooks fail the package manager on errors
    roots = /usr /bin /sbin /lib* /opt /usr/local /srv   # what --full walks
    wait = 5                        # seconds a hook waits for capsnap's lock/database
    keep = 100                      # transactions kept (a snapshot taken by hand counts
                                    # as one); "all": no limit
    keep-days = 90                  # and only those younger than this (default: no limit)

A bad line is reported and skipped, never fatal: a typo in this file must
not stop apt.
"""

from __future__ import annotations

from capsnap import confine
from capsnap.paths import SystemPaths
from capsnap.records import NamedTuple
from capsnap.scan import DEFAULT_ROOTS

_BOOLEAN = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


class Config(NamedTuple):
    strict: bool = False
    roots: tuple[str, ...] = DEFAULT_ROOTS
    # A hook that cannot have the database within this many seconds
    # reapplies without a record: it never holds a package manager longer.
    wait: float = 5.0
    # Retention, applied by the hook that closes a transaction: the newest
    # `keep` transactions, only those younger than `keep_days` (None: no limit).
    keep: int | None = 100
    keep_days: float | None = None


def load(paths: SystemPaths) -> tuple[Config, list[str]]:
    """The settings, and one message per line that was skipped."""
    config = Config()
    problems: list[str] = []
    try:
        lines = confine.read_bytes(paths, paths.config_file).decode("utf-8").splitlines()
    except FileNotFoundError:
        return config, problems
    except OSError as exc:
        return config, [f"{paths.config_file}: cannot read: {exc.strerror or exc}"]
    except UnicodeDecodeError:
        return config, [f"{paths.config_file}: not UTF-8 text; using the defaults"]
    for number, line in enumerate(lines, start=1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        key, sep, value = (part.strip() for part in body.partition("="))
        where = f"{paths.config_file}:{number}"
        if not sep:
            problems.append(f"{where}: expected 'key = value', skipped")
        elif key == "strict":
            if value.lower() not in _BOOLEAN:
                problems.append(f"{where}: strict must be yes or no, skipped")
            else:
                config = config._replace(strict=_BOOLEAN[value.lower()])
        elif key == "roots":
            roots = tuple(value.split())
            # Roots are walked inside --root: one that climbs out is refused.
            if not roots or not all(r.startswith("/") and ".." not in r.split("/")
                                    for r in roots):
                problems.append(f"{where}: roots must be absolute paths without '..', "
                                "skipped")
            else:
                config = config._replace(roots=roots)
        elif key == "wait":
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not 0 <= seconds <= 600:
                problems.append(f"{where}: wait must be a number of seconds (0 to 600), "
                                "skipped")
            else:
                config = config._replace(wait=seconds)
        elif key == "keep":
            if value.lower() in ("all", "none"):
                config = config._replace(keep=None)
            elif not value.isdigit() or int(value) < 1:
                problems.append(f"{where}: keep must be a number of transactions (1 or "
                                "more) or 'all', skipped")
            else:
                config = config._replace(keep=int(value))
        elif key == "keep-days":
            try:
                days: float | None = None if value.lower() in ("all", "none") \
                    else float(value)
            except ValueError:
                days = -1.0
            if days is not None and not 0 < days < 100_000:
                problems.append(f"{where}: keep-days must be a number of days above 0, or "
                                "'all', skipped")
            else:
                config = config._replace(keep_days=days)
        else:
            problems.append(f"{where}: unknown setting {key!r}, skipped")
    return config, problems
