# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""What capsnap remembers between runs about package databases it read.

Hooks run after every transaction and a python start is most of their time,
so what costs more than reading a small file (python-debian over a status
file, the rpm bindings over their database) is kept in /var/cache/capsnap,
keyed on the identity of the files it came from.  marshal, because it is
built into the interpreter: json's import alone would cost a hook more than
the lookup.  A cache is trusted only when root (or we) wrote it and nobody
else can change it; losing one costs time, never correctness.
"""

from __future__ import annotations

import marshal
import os

from capsnap import confine
from capsnap.errors import CapsnapError
from capsnap.paths import SystemPaths

# Bump when what any cache holds changes shape.
_FORMAT = 1


def identity(st: os.stat_result) -> list[int]:
    """What tells a file's content changed: device, inode, size, mtime."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def file_key(paths: SystemPaths, files: list[str]) -> list[int]:
    """The identity of files as they are now (-1 for one that is missing)."""
    key: list[int] = []
    for path in files:
        try:
            key.extend(identity(confine.stat_path(paths, path)))
        except (OSError, CapsnapError):
            key.append(-1)
    return key


def _path(paths: SystemPaths, name: str) -> str:
    return os.path.join(paths.cache_dir, f"{name}.marshal")


def load(paths: SystemPaths, name: str) -> dict[str, object]:
    """The cache `name` as last saved; empty when absent, foreign or damaged."""
    data = read_marshal(paths, _path(paths, name))
    return data if data.get("format") == _FORMAT else {}


def read_marshal(paths: SystemPaths, host_path: str) -> dict[str, object]:
    """A dictionary capsnap saved with marshal; empty when the file is
    absent, damaged, or not written by root (or us) alone."""
    try:
        fd = confine.open_file(paths, host_path)
    except (OSError, CapsnapError):
        return {}
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not confine.trusted_owner(st.st_uid) or st.st_mode & 0o022:
                return {}
            # loads of the whole file: marshal.load reads a file object one
            # value at a time, ten times slower for a cache of a few KB.
            data = marshal.loads(f.read())
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def save(paths: SystemPaths, name: str, data: dict[str, object]) -> None:
    """Replace the cache `name` atomically; best effort (a read-only or
    unprivileged run, or a cache directory others could write, simply has
    no cache)."""
    try:
        payload = marshal.dumps({**data, "format": _FORMAT})
        confine.write_atomically(paths, _path(paths, name), payload)
    except (OSError, ValueError, CapsnapError):
        pass
