# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""A pytest plugin for mutation runs: one test that runs longer than
$CAPSNAP_MUTATION_TEST_TIMEOUT seconds fails at once, so a mutant that loops
forever (the symlink limit removed) costs one test's limit, not the whole
list's.  run.py loads it with -p; the test suite never does."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

MARK = "mutation-timeout"


class MutationTimeout(Exception):
    pass


def _expired(signum: int, frame: FrameType | None) -> None:
    raise MutationTimeout(f"{MARK}: the test ran longer than its limit")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    limit = int(os.environ.get("CAPSNAP_MUTATION_TEST_TIMEOUT", "0"))
    if not limit:
        yield
        return
    previous = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
