# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""The one error family of capsnap.

Every failure a user can cause or meet is one of these; the CLI catches the
base class in exactly one place and turns it into one line on stderr and the
exit code carried here.  Nothing else in capsnap prints errors or exits.
"""

from __future__ import annotations

# Exit codes shared by every command (documented in README.md and capsnap(1)).
EXIT_OK = 0
EXIT_DIFFERENT = 1  # differences found: verify mismatch, drift, diff
EXIT_USAGE = 2  # bad usage or invalid input
EXIT_FAILED = 3  # the operation was attempted and failed, or was refused


class CapsnapError(Exception):
    """Base class: a message fit for a user, and the exit code to use."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(CapsnapError):
    """The user gave something capsnap cannot accept (exit 2)."""

    exit_code = EXIT_USAGE


class CapTextError(InvalidInput):
    """Capability text that libcap's cap_from_text(3) or setcap would reject."""

    def __init__(self, text: str, reason: str, clause: str | None = None,
                 clause_number: int | None = None) -> None:
        where = ""
        if clause is not None and clause_number is not None:
            where = f" in clause {clause_number} {clause!r}"
        super().__init__(f"invalid capability text {text!r}: {reason}{where}")
        self.text = text
        self.reason = reason
        self.clause = clause
        self.clause_number = clause_number


class AttrFormatError(CapsnapError):
    """A security.capability value that is not a valid vfs_cap_data."""


class UnsafeTarget(CapsnapError):
    """The safety policy refuses to give this file capabilities (exit 3)."""


class OperationFailed(CapsnapError):
    """A system call failed; the message names the path, cause and remedy."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
