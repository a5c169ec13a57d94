# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""dpkg's post-invoke hook, started ahead: python's start off dpkg's path.

A python start and capsnap's imports cost more than dpkg spends on a small
package, and dpkg waits for its post-invoke hook.  So dpkg's second
pre-invoke line (the one that runs only when dpkg's own run opened the
transaction, outside a --root) starts `capsnap hook dpkg-serve` in the
background: it starts and imports while dpkg unpacks, then waits.  The
post-invoke line (sh) hands it the run's one fact, the dpkg it runs under,
and copies its answer (the hook's messages and exit code) to dpkg; it falls
back to `capsnap hook dpkg-post-invoke` when the background process is
missing, dead, stopped or late (a hard bound, in the sh line).

The exchange, in capsnap's state directory (root's, writable by nobody
else, or nothing here runs):

- dpkg-serve.pid: "PID START-TIME BOOT-ID" of the background process,
  written once its FIFOs are ready; the sh line talks only to a process
  that matches it and is neither stopped nor a zombie.
- dpkg-serve.out: a FIFO this process holds open for reading and writing,
  so the sh line's open for reading never blocks; it writes the answer
  there and closes it, and the sh line reads up to "done N".
- dpkg-serve.in: a FIFO this process reads; the sh line writes
  "dpkg PID" (its parent) after opening dpkg-serve.out.

It never outlives its dpkg run: it watches dpkg through a pidfd and leaves
as soon as dpkg ends (killed or not); it answers one request and leaves;
and it leaves after LIFETIME seconds whatever happens.  A stopped or hung
one is killed by the fallback (stop()), which also removes its files.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time

from capsnap import confine
from capsnap.errors import CapsnapError
from capsnap.paths import SystemPaths

LIFETIME = 3600.0  # seconds: dpkg may wait at a debconf prompt, not for ever
_WRITE_BOUND = 10.0  # seconds to hand the answer over to a reader that went away
NAME = "dpkg-serve"


def pid_file(paths: SystemPaths) -> str:
    return os.path.join(paths.state_dir, f"{NAME}.pid")


def files(paths: SystemPaths) -> tuple[str, ...]:
    """Everything the exchange leaves in the state directory."""
    return tuple(os.path.join(paths.state_dir, f"{NAME}.{kind}")
                 for kind in ("pid", "in", "out"))


def _named(paths: SystemPaths) -> tuple[int, str, str] | None:
    """(pid, start time, boot) the pid file names; None without one."""
    try:
        fields = confine.read_bytes(paths, pid_file(paths)).decode("ascii", "replace").split()
    except (OSError, CapsnapError):
        return None
    if len(fields) != 3 or not fields[0].isdigit():
        return None
    return int(fields[0]), fields[1], fields[2]


def stop(paths: SystemPaths) -> None:
    """Kill the background process the pid file names, if it is still that
    process (this boot, same start time) and not this one, and remove its
    files: it is stopped, hung or late, and the caller does its work."""
    from capsnap import hook

    named = _named(paths)
    if named is not None and named[0] != os.getpid() and named[2] == hook.boot_id():
        import signal

        with contextlib.suppress(OSError):
            # Through a pidfd: the start time is checked on the very process
            # that gets the signal, never on a pid reused meanwhile.
            pidfd = os.pidfd_open(named[0])
            try:
                if hook.process_start(named[0]) == named[1]:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            finally:
                os.close(pidfd)
    if named is None or named[0] != os.getpid():
        for path in files(paths):
            with contextlib.suppress(OSError, CapsnapError):
                confine.unlink(paths, path)


def _fifo(state: int, name: str) -> int:
    """A fresh FIFO of root's in the state directory, open for reading and
    writing (never blocks, and never reports a writer gone)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=state)
    os.mkfifo(name, 0o600, dir_fd=state)
    fd = os.open(name, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=state)
    st = os.fstat(fd)
    if not stat.S_ISFIFO(st.st_mode) or not confine.trusted_owner(st.st_uid):
        os.close(fd)
        raise OSError(f"{name}: not capsnap's FIFO")
    return fd


def _prepare() -> None:
    """What the post-invoke hook imports, imported while dpkg unpacks.

    Nothing is left to do after the answer: dpkg ends on it, and whoever
    runs next (a script, a test removing the state directory) must find
    capsnap done.  So the SQLite checkpoint of the hook's last connection
    and the cache writes stay before it (kept for later, they saved 3 ms).
    """
    import ctypes  # noqa: F401  (birth times)
    import json  # noqa: F401  (the log's records)
    import re  # noqa: F401  (the status file's paragraphs)
    import sqlite3  # noqa: F401
    import zlib  # noqa: F401

    from capsnap import captext, declarations, reapply, snapshot, store, xattr  # noqa: F401
    from capsnap.declarations import dpkg, dpkg_script, local, rpm  # noqa: F401


def serve(paths: SystemPaths, known_bits: int) -> int:
    """The background process: ready for the post-invoke line, gone with dpkg.

    Whatever goes wrong here ends it quietly: the post-invoke line then
    falls back to the hook it would have run anyway.
    """
    # Nothing of dpkg's or its caller's but /dev/null (the sh line's
    # redirections): a pipe held open here would keep a reader waiting.
    os.closerange(3, 1 << 16)
    started = time.monotonic()
    try:
        return _serve(paths, known_bits, started)
    except (OSError, CapsnapError):
        return 0
    finally:
        confine.release()


def _serve(paths: SystemPaths, known_bits: int, started: float) -> int:
    from capsnap import hook

    owner = hook.marker_owner(paths)
    if owner is None or owner.manager != "dpkg" or owner.boot != hook.boot_id():
        return 0
    # The pidfd first, then the start time: the process watched is the one
    # that left the marker, never one that reused its pid.
    dpkg = os.pidfd_open(owner.pid)
    if hook.process_start(owner.pid) != owner.started:
        return 0
    stop(paths)  # a previous run's, stopped: it would never leave
    with confine.directory(paths, paths.state_dir, private=True) as state:
        request = _fifo(state, f"{NAME}.in")
        answer = _fifo(state, f"{NAME}.out")
        me = f"{os.getpid()} {hook.process_start(os.getpid())} {owner.boot}\n"
        confine.write_atomically(paths, pid_file(paths), me.encode("ascii"))
        try:
            if hook.marker_owner(paths) != owner:
                return 0  # the run ended meanwhile (its hook did the work)
            _prepare()
            if _wait_for_request(dpkg, request, owner.pid, started + LIFETIME):
                _answer(paths, known_bits, owner.pid, answer)
            return 0
        finally:
            _remove_own(state, me)


def _wait_for_request(dpkg: int, request: int, dpkg_pid: int, deadline: float) -> bool:
    """Whether the post-invoke line asked, before dpkg ended or the deadline."""
    import select

    poller = select.poll()
    poller.register(dpkg, select.POLLIN)
    poller.register(request, select.POLLIN)
    wanted = f"dpkg {dpkg_pid}".encode("ascii")
    pending = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready = dict(poller.poll(left * 1000))
        if dpkg in ready:
            return False  # dpkg is gone: killed, or done without its hook
        if request in ready:
            try:
                pending += os.read(request, 512)
            except BlockingIOError:
                continue
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                if line == wanted:
                    return True
            pending = pending[-512:]


def _answer(paths: SystemPaths, known_bits: int, dpkg_pid: int, answer: int) -> None:
    """Run the post-invoke hook for dpkg, its stderr kept for the sh line."""
    import io
    import sys

    from capsnap import hook

    said = io.StringIO()
    saved, sys.stderr = sys.stderr, said
    try:
        status = hook.run("dpkg-post-invoke", paths, None, known_bits, parent=dpkg_pid)
    finally:
        sys.stderr = saved
    text = said.getvalue()
    data = (text + ("\n" if text and not text.endswith("\n") else "")
            + f"done {status}\n").encode("utf-8", "surrogateescape")
    _write_all(answer, data, time.monotonic() + _WRITE_BOUND)
    os.close(answer)


def _write_all(fd: int, data: bytes, deadline: float) -> None:
    import select

    view = memoryview(data)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            poller.poll(left * 1000)


def _remove_own(state: int, me: str) -> None:
    """This process's files, unless a newer run's replaced them."""
    try:
        fd = os.open(f"{NAME}.pid", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=state)
        with os.fdopen(fd, "rb") as f:
            if f.read(256) != me.encode("ascii"):
                return
    except OSError:
        return
    for kind in ("in", "out", "pid"):
        with contextlib.suppress(OSError):
            os.unlink(f"{NAME}.{kind}", dir_fd=state)
