# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""Single-file operations: read, set with verification, verify, remove.

These join the pure core (captext, xattr) to the one module that touches
files (fileops).  The CLI and the reapply engine both call them, so a
capability is always written the same way: checked, written through the
pinned descriptor, read back from it and compared byte for byte.
"""

from __future__ import annotations

import os

from capsnap import captext, fileops, xattr
from capsnap.errors import AttrFormatError, OperationFailed
from capsnap.records import NamedTuple


class Reading(NamedTuple):
    """What one file carries."""

    path: str
    raw: bytes | None
    caps: xattr.FileCaps | None

    def text(self, known_bits: int) -> str | None:
        if self.caps is None:
            return None
        return captext.format_text(self.caps.capset(), known_bits)

    def as_json(self, known_bits: int) -> dict[str, object]:
        encoded = os.fsencode(self.path)
        return {
            "path": self.path,
            "path_hex": encoded.hex() if not _is_utf8(encoded) else None,
            "capabilities": self.text(known_bits),
            "revision": self.caps.revision if self.caps else None,
            "rootid": self.caps.rootid if self.caps and self.caps.revision == 3 else None,
            "raw": self.raw.hex() if self.raw is not None else None,
        }


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _reading(display: str, raw: bytes | None) -> Reading:
    if raw is None:
        return Reading(display, None, None)
    try:
        return Reading(display, raw, xattr.decode(raw))
    except AttrFormatError as exc:
        raise OperationFailed(f"{display}: {exc}") from None


def read_target(target: fileops.Target) -> Reading:
    return _reading(target.display, fileops.read_raw(target))


def read_walked(display: str, host: str) -> Reading:
    """A regular file met by a directory walk, read by its path as getcap does."""
    return _reading(display, fileops.read_raw_path(host, display))


def read(path: str, root: str = "/") -> Reading:
    with fileops.open_target(path, root) as target:
        fileops.require_regular(target)
        return read_target(target)


class SetResult(NamedTuple):
    path: str
    old: bytes | None
    new: bytes
    changed: bool


def set_on_target(target: fileops.Target, caps: captext.CapSet, rootid: int,
                  root: str, force: bool) -> SetResult:
    """Check, write, re-read and verify, all on the pinned inode."""
    raw = xattr.encode(caps, rootid)
    fileops.require_regular(target)
    if not force:
        fileops.check_safe(target, root)
    old = fileops.read_raw(target)
    if old != raw:
        fileops.write_raw(target, raw)
    after = fileops.read_raw(target)
    if not _same_as_written(after, raw):
        raise OperationFailed(
            f"{target.display}: verification failed: wrote {raw.hex()}, read back "
            f"{after.hex() if after is not None else 'nothing'} (a security module "
            "or the filesystem altered it)")
    return SetResult(target.display, old, raw, old != raw)


def _same_as_written(after: bytes | None, written: bytes) -> bool:
    if after == written:
        return True
    if after is None:
        return False
    # Inside a user namespace the kernel stores a revision-2 write as
    # revision 3 limited to the namespace's root, and reads that back as
    # revision 2; a revision-3 write of a uid mapped to the namespace's root
    # also reads back as revision 2.  The sets and the flag must match.
    try:
        got, want = xattr.decode(after), xattr.decode(written)
    except AttrFormatError:
        return False
    return (got.permitted, got.inheritable, got.effective) == \
        (want.permitted, want.inheritable, want.effective)


def apply(path: str, caps: captext.CapSet, rootid: int = 0, root: str = "/",
          force: bool = False) -> SetResult:
    with fileops.open_target(path, root) as target:
        return set_on_target(target, caps, rootid, root, force)


class Verdict(NamedTuple):
    path: str
    expected: captext.CapSet
    expected_rootid: int
    actual: captext.CapSet
    actual_rootid: int
    has_xattr: bool

    @property
    def matches(self) -> bool:
        return self.expected == self.actual and self.expected_rootid == self.actual_rootid

    def explain(self) -> str:
        """The line setcap -v prints."""
        if self.matches:
            return f"{self.path}: OK"
        prefix = ""
        if self.expected_rootid != self.actual_rootid:
            prefix = f"nsowner[got={self.actual_rootid}, want={self.expected_rootid}],"
        return f"{prefix}{self.path} differs in [{self.actual.differs_in(self.expected)}]"


def verify(path: str, caps: captext.CapSet, rootid: int = 0, root: str = "/") -> Verdict:
    reading = read(path, root)
    actual = reading.caps.capset() if reading.caps else captext.CapSet()
    actual_rootid = reading.caps.rootid if reading.caps else 0
    return Verdict(path, caps, rootid, actual, actual_rootid, reading.caps is not None)


def remove(path: str, root: str = "/") -> bool:
    with fileops.open_target(path, root) as target:
        fileops.require_regular(target)
        return fileops.remove_raw(target)
