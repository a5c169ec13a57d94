"""capsnap's command line: the one place errors become messages and exit codes.

Start-up stays fast because package-manager hooks call this on every
transaction: only argparse is imported here, each command imports what it
needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from capsnap.errors import EXIT_DIFFERENT, EXIT_FAILED, EXIT_OK, EXIT_USAGE, CapsnapError

PROG = "capsnap"


def _out(line: str) -> None:
    # Paths are arbitrary bytes on Linux: write them back as they came.
    sys.stdout.buffer.write(os.fsencode(line) + b"\n")


def _err(message: str) -> None:
    sys.stderr.buffer.write(os.fsencode(f"{PROG}: {message}") + b"\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    _err(f"warning: {message}")


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False,
                                default=str) + "\n")


def _known_bits() -> int:
    from capsnap.fileops import kernel_cap_bits
    return kernel_cap_bits()


# --- get -------------------------------------------------------------------

def _walk(path: str, root: str) -> tuple[list[str], int]:
    """Regular files under `path`, in the order getcap -r (nftw) visits them."""
    from capsnap import fileops

    files: list[str] = []
    failures = 0

    def visit(display: str, dir_fd: int) -> None:
        nonlocal failures
        try:
            entries = list(os.scandir(dir_fd))
        except OSError as exc:
            _err(f"{display}: cannot read directory: {fileops.describe_oserror(exc)}")
            failures += 1
            return
        base = display.rstrip("/")
        for entry in entries:
            child = f"{base}/{entry.name}"
            if entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                try:
                    fd = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, dir_fd=dir_fd)
                except OSError as exc:
                    _err(f"{child}: cannot open directory: {fileops.describe_oserror(exc)}")
                    failures += 1
                    continue
                try:
                    visit(child, fd)
                finally:
                    os.close(fd)
            elif entry.is_file(follow_symlinks=False):
                files.append(child)

    with fileops.open_target(path, root) as target:
        import stat as stat_mod
        if stat_mod.S_ISDIR(target.st.st_mode):
            fd = os.open(target.proc_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                visit(path, fd)
            finally:
                os.close(fd)
        elif target.is_regular:
            files.append(path)
    return files, failures


def cmd_get(args: argparse.Namespace) -> int:
    from capsnap import filecaps

    known = _known_bits()
    status = EXIT_OK
    results: list[dict[str, object]] = []
    for path in args.paths:
        try:
            if args.recursive:
                files, failures = _walk(path, args.root)
                if failures:
                    status = EXIT_FAILED
            else:
                files = [path]
            for file in files:
                try:
                    reading = filecaps.read(file, args.root)
                except CapsnapError as exc:
                    _err(str(exc))
                    status = EXIT_FAILED
                    continue
                if args.json:
                    results.append(reading.as_json(known))
                elif reading.caps is not None:
                    line = f"{reading.path} {reading.text(known)}"
                    rootid = reading.caps.rootid
                    # getcap -n prints a rootid other than 0 and (uid_t)-1,
                    # through printf's %d: uids above 2^31 come out negative.
                    if args.namespace and rootid not in (0, 0xFFFFFFFF):
                        signed = rootid - (1 << 32) if rootid >= 1 << 31 else rootid
                        line += f" [rootid={signed}]"
                    _out(line)
        except CapsnapError as exc:
            _err(str(exc))
            status = EXIT_FAILED
    if args.json:
        _print_json(results)
    return status


# --- set / verify / remove / parse ---------------------------------------------

def _parse_for_file(text: str) -> Any:
    from capsnap import captext
    return captext.parse_file_caps(text, _known_bits())


def cmd_set(args: argparse.Namespace) -> int:
    from capsnap import filecaps, fileops

    caps = _parse_for_file(args.caps)
    for message in fileops.root_equivalent_warnings(caps):
        warn(message)
    result = filecaps.apply(args.path, caps, rootid=args.rootid, root=args.root,
                            force=args.force)
    if args.verbose:
        _out(f"{result.path}: {'set' if result.changed else 'already set'}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from capsnap import captext, filecaps

    caps = captext.parse(args.caps, _known_bits())
    verdict = filecaps.verify(args.path, caps, rootid=args.rootid, root=args.root)
    if args.json:
        known = _known_bits()
        _print_json({
            "path": verdict.path,
            "match": verdict.matches,
            "expected": captext.format_text(verdict.expected, known),
            "actual": captext.format_text(verdict.actual, known)
            if verdict.has_xattr else None,
            "differs": verdict.actual.differs_in(verdict.expected),
            "expected_rootid": verdict.expected_rootid,
            "actual_rootid": verdict.actual_rootid,
        })
    else:
        _out(verdict.explain())
    return EXIT_OK if verdict.matches else EXIT_DIFFERENT


def cmd_remove(args: argparse.Namespace) -> int:
    from capsnap import filecaps

    for path in args.paths:
        if not filecaps.remove(path, args.root) and args.verbose:
            _out(f"{path}: had no capabilities")
    return EXIT_OK


def cmd_parse(args: argparse.Namespace) -> int:
    from capsnap import captext, xattr

    known = _known_bits()
    if args.hex:
        _out(xattr.encode(captext.parse_file_caps(args.caps, known), args.rootid).hex())
    else:
        _out(captext.format_text(captext.parse(args.caps, known), known))
    return EXIT_OK


# --- argument parsing --------------------------------------------------------

def _rootid(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a uid: {text!r}") from None
    if not 0 <= value <= 0xFFFFFFFE:
        raise argparse.ArgumentTypeError(f"uid out of range: {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, no usage dump
        _err(f"{message} (see '{self.prog} --help')")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the command name.
    common = _Parser(add_help=False)
    common.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS,
                        help="act on the system installed in DIR (image, chroot, scratch "
                             "root); symlinks are never followed out of it")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="say more about what is done")

    parser = _Parser(prog=PROG, parents=[common],
                     description="Declared, verified Linux file capabilities.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, func: Callable[[argparse.Namespace], int],
                help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = command("get", cmd_get, "print file capabilities as getcap(8) does")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="walk directories (symlinks are not followed)")
    p.add_argument("-n", "--namespace", action="store_true",
                   help="show the rootid of namespaced capabilities, as getcap -n")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("paths", nargs="+", metavar="PATH")

    p = command("set", cmd_set, "set file capabilities, then read back and verify them")
    p.add_argument("caps", metavar="CAPS", help="capability text, e.g. cap_net_raw=ep")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--rootid", type=_rootid, default=0, metavar="N",
                   help="limit to the user namespace whose root is uid N (revision 3)")
    p.add_argument("--force", action="store_true",
                   help="set even where the safety policy refuses")

    p = command("verify", cmd_verify, "check a file carries exactly CAPS, as setcap -v")
    p.add_argument("caps", metavar="CAPS")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--rootid", type=_rootid, default=0, metavar="N")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("remove", cmd_remove, "remove file capabilities")
    p.add_argument("paths", nargs="+", metavar="PATH")

    p = command("parse", cmd_parse, "print capability text in canonical form")
    p.add_argument("caps", metavar="CAPS")
    p.add_argument("--hex", action="store_true",
                   help="print the security.capability bytes instead, in hex")
    p.add_argument("--rootid", type=_rootid, default=0, metavar="N")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.root = getattr(args, "root", "/") or "/"
    args.verbose = getattr(args, "verbose", False)
    if args.root != "/" and not os.path.isdir(args.root):
        _err(f"--root {args.root}: not a directory")
        return EXIT_USAGE
    try:
        status: int = args.func(args)
        return status
    except CapsnapError as exc:
        _err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK


def run() -> None:
    sys.exit(main())
