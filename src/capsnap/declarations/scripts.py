"""Which capabilities a maintainer script sets with setcap (pure).

Debian packages that want capabilities call setcap from their postinst
(iputils-ping, fping, mtr-tiny, wireshark-common, libgstreamer1.0-0...),
in a handful of forms: a literal path, a path in a variable
(`PROGRAM=$(dpkg-divert --truename /bin/ping)`), a `for` loop over paths,
inside `if`/`else`, in a function, with `-q`.  This reads a script's text
as the shell would split it (quotes, backslashes, comments, here-documents,
redirections) without running anything, follows variable assignments as
sets of possible values, and reports each `setcap CAPS FILE` pair whose
capability text it can read.  A part of a path it cannot know (a command
substitution, a positional parameter) is a wildcard: the caller matches
the pattern against the package's own file list, so a script can only ever
be credited with capabilities for files its package ships.

Nothing here says the call ran: a debconf answer or a failing setcap may
skip it.  That is for what is found on disk to confirm.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from capsnap.records import NamedTuple

# Stands for "any text" in a pattern: cannot occur in a script decoded as text.
ANY = "\x00"
# A script that builds more paths than this from its variables is not one
# of the common forms; the rest is dropped rather than guessed.
_MAX_VALUES = 64
_RESERVED = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!",
             "{", "}", "time", "case", "esac", "in", "exec"}
_ASSIGNERS = {"local", "export", "readonly", "declare", "typeset"}
_OPERATORS = (";;", "&&", "||", ";", "&", "|", "(", ")")


class Call(NamedTuple):
    """One `setcap CAPS PATH` a script may run."""

    caps: str  # the capability text as written
    path: str  # a pattern: ANY where the script builds the path at run time
    line: int

    @property
    def exact(self) -> bool:
        return ANY not in self.path


# A word is a list of parts: ("lit", text), ("var", name, default-or-None),
# ("sub", command text) for $(...) and `...`, ("any",) for what is unknown.
Part = tuple[str, ...]
Word = list[Part]


class _Command(NamedTuple):
    words: list[Word]
    line: int


def _read_var(text: str, i: int) -> tuple[Part, int]:
    """The expansion starting at text[i] == '$'; the part and where it ends."""
    n = len(text)
    if i + 1 >= n:
        return ("lit", "$"), i + 1
    c = text[i + 1]
    if c == "(":
        depth, j = 1, i + 2
        arithmetic = text.startswith("((", i + 1)
        while j < n and depth:
            if text[j] == "(":
                depth += 1
            elif text[j] == ")":
                depth -= 1
            elif text[j] == "\\":
                j += 1
            j += 1
        inner = text[i + 2:j - 1]
        return (("any",) if arithmetic else ("sub", inner)), j
    if c == "{":
        end = text.find("}", i + 2)
        if end < 0:
            return ("any",), n
        inner = text[i + 2:end]
        name = ""
        k = 0
        while k < len(inner) and (inner[k].isalnum() or inner[k] == "_"):
            k += 1
        name, rest = inner[:k], inner[k:]
        if not name:
            return ("any",), end + 1
        if not rest:
            return ("var", name, ""), end + 1
        for op in (":-", "-", ":=", "="):
            if rest.startswith(op):
                return ("var", name, rest[len(op):]), end + 1
        return ("any",), end + 1  # ${x#...}, ${x%...}, ${#x}: not followed
    if c.isalpha() or c == "_":
        j = i + 1
        while j < n and (text[j].isalnum() or text[j] == "_"):
            j += 1
        return ("var", text[i + 1:j], ""), j
    if c.isdigit() or c in "@*#?$!-":
        return ("any",), i + 2
    return ("lit", "$"), i + 1


def _commands(text: str) -> list[_Command]:
    """The script's simple commands, each a list of words, with its line."""
    commands: list[_Command] = []
    words: list[Word] = []
    word: Word = []
    in_word = False
    line = 1
    start_line = 1
    heredocs: list[tuple[str, bool]] = []
    redirect_next = False  # the next word is a redirection's target
    i, n = 0, len(text)

    def lit(s: str) -> None:
        if word and word[-1][0] == "lit":
            word[-1] = ("lit", word[-1][1] + s)
        else:
            word.append(("lit", s))

    def end_word() -> None:
        nonlocal word, in_word, redirect_next
        if in_word:
            if redirect_next:
                redirect_next = False
            else:
                words.append(word)
        word, in_word = [], False

    def end_command() -> None:
        nonlocal words, start_line
        end_word()
        if words:
            commands.append(_Command(words, start_line))
        words = []
        start_line = line

    while i < n:
        c = text[i]
        if c == "\n":
            end_command()
            line += 1
            i += 1
            for delimiter, strip_tabs in heredocs:
                # A here-document's body is data, not commands.
                while i < n:
                    end = text.find("\n", i)
                    end = n if end < 0 else end
                    body = text[i:end]
                    i = end + 1
                    line += 1
                    if (body.lstrip("\t") if strip_tabs else body) == delimiter:
                        break
            heredocs = []
            start_line = line
            continue
        if c in " \t":
            end_word()
            i += 1
            continue
        if c == "#" and not in_word:
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "\\":
            if i + 1 < n and text[i + 1] == "\n":
                line += 1
                i += 2
                continue
            in_word = True
            lit(text[i + 1:i + 2])
            i += 2
            continue
        if c == "'":
            end = text.find("'", i + 1)
            end = n if end < 0 else end
            in_word = True
            lit(text[i + 1:end])
            line += text.count("\n", i, end)
            i = end + 1
            continue
        if c == '"':
            in_word = True
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n and text[j + 1] in '$`"\\\n':
                    if text[j + 1] != "\n":
                        lit(text[j + 1])
                    j += 2
                elif text[j] == "$":
                    part, j = _read_var(text, j)
                    word.append(part)
                elif text[j] == "`":
                    end = text.find("`", j + 1)
                    end = n if end < 0 else end
                    word.append(("sub", text[j + 1:end]))
                    j = end + 1
                else:
                    lit(text[j])
                    j += 1
            line += text.count("\n", i, j)
            i = j + 1
            continue
        if c == "$":
            in_word = True
            part, j = _read_var(text, i)
            line += text.count("\n", i, j)
            word.append(part)
            i = j
            continue
        if c == "`":
            end = text.find("`", i + 1)
            end = n if end < 0 else end
            in_word = True
            word.append(("sub", text[i + 1:end]))
            i = end + 1
            continue
        if c in "<>":
            # A file descriptor number right before it belongs to the redirection.
            if in_word and len(word) == 1 and word[0][0] == "lit" and word[0][1].isdigit():
                word, in_word = [], False
            end_word()
            if text.startswith("<<", i):
                j = i + 2
                strip_tabs = text.startswith("-", j)
                j += 1 if strip_tabs else 0
                while j < n and text[j] in " \t":
                    j += 1
                k = j
                while k < n and text[k] not in " \t\n;&|<>()":
                    k += 1
                heredocs.append((text[j:k].strip("'\"\\"), strip_tabs))
                i = k
                continue
            j = i + 1
            while j < n and text[j] in "<>&|":
                j += 1
            if j < n and (text[j].isdigit() or text[j] == "-") and text[j - 1] == "&":
                i = j + 1  # 2>&1, >&-: no target word
                continue
            redirect_next = True
            i = j
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if (op is not None and not in_word) or op in ("&&", "||", ";", ";;", "|", "&", ")"):
            assert op is not None
            end_command()
            i += len(op)
            continue
        in_word = True
        lit(c)
        i += 1
    end_command()
    return commands


class _Values:
    """What each variable may hold: a set of patterns (ANY for unknown)."""

    def __init__(self) -> None:
        self.known: dict[str, set[str]] = {}

    def expand(self, word: Word) -> set[str]:
        out = {""}
        for part in word:
            kind = part[0]
            if kind == "lit":
                options = {part[1]}
            elif kind == "var":
                options = set(self.known.get(part[1], ()))
                default = part[2] if len(part) > 2 else ""
                if default:
                    options.add(default)
                if not options:
                    options = {ANY}
            elif kind == "sub":
                options = self._substitution(part[1])
            else:
                options = {ANY}
            out = {a + b for a in out for b in options}
            if len(out) > _MAX_VALUES:
                out = set(sorted(out)[:_MAX_VALUES])
        return out

    def _substitution(self, inner: str) -> set[str]:
        # dpkg-divert --truename PATH is PATH as far as the package is
        # concerned: the dpkg reader follows diversions to the file itself.
        commands = _commands(inner)
        if len(commands) == 1:
            words = commands[0].words
            first = self.expand(words[0]) if words else set()
            if first == {"dpkg-divert"} and len(words) >= 3:
                rest = [w for w in words[1:] if self.expand(w) != {"--truename"}]
                if len(rest) == 1 and len(words) == 3:
                    return self.expand(rest[0])
        return {ANY}

    def assign(self, name: str, values: set[str]) -> None:
        # Every value a script may give a name, whichever branch runs.
        self.known.setdefault(name, set()).update(values)


def _assignment(word: Word) -> tuple[str, Word] | None:
    if not word or word[0][0] != "lit":
        return None
    head = word[0][1]
    name, eq, rest = head.partition("=")
    if not eq or not name or not (name[0].isalpha() or name[0] == "_") or \
            not all(ch.isalnum() or ch == "_" for ch in name):
        return None
    value: Word = ([("lit", rest)] if rest else []) + word[1:]
    return name, value


def _setcap_pairs(args: list[set[str]]) -> list[tuple[str, str]] | None:
    """(caps, path-pattern) pairs of a setcap command line, or None for a
    call that sets nothing (-v verifies, -n is a namespace's, - reads stdin)."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(args) and len(args[i]) == 1 and next(iter(args[i])).startswith("-") \
            and next(iter(args[i])) != "-":
        flag = next(iter(args[i]))
        if flag in ("-v", "-n") or flag not in ("-q", "-r"):
            return None
        if flag == "-r":
            break
        i += 1
    rest = args[i:]
    while len(rest) >= 2:
        caps, files = rest[0], rest[1]
        rest = rest[2:]
        if len(caps) != 1:
            continue
        text = next(iter(caps))
        if text in ("-r", "-") or ANY in text:
            continue
        for path in sorted(files):
            pairs.append((text, path))
    return pairs


def calls(text: str) -> list[Call]:
    """Every `setcap CAPS PATH` the script may run, in script order."""
    values = _Values()
    out: list[Call] = []
    for command in _commands(text):
        words = list(command.words)
        while words and len(words[0]) == 1 and words[0][0][0] == "lit" and \
                words[0][0][1] in _RESERVED:
            words = words[1:]
        if not words:
            continue
        head = values.expand(words[0])
        if head == {"for"} and len(words) >= 3 and values.expand(words[2]) == {"in"}:
            name = values.expand(words[1])
            if len(name) == 1:
                found: set[str] = set()
                for w in words[3:]:
                    found |= values.expand(w)
                values.assign(next(iter(name)), found)
            continue
        if len(head) == 1 and next(iter(head)) in _ASSIGNERS:
            words = words[1:]
        while words:
            assigned = _assignment(words[0])
            if assigned is None:
                break
            values.assign(assigned[0], values.expand(assigned[1]))
            words = words[1:]
        if not words:
            continue
        names = values.expand(words[0])
        if not names or any(posixpath.basename(p) != "setcap" for p in names):
            continue
        pairs = _setcap_pairs([values.expand(w) for w in words[1:]])
        for caps, path in pairs or ():
            out.append(Call(caps, path, command.line))
    return out


def matching(pattern: str, files: Iterable[str]) -> list[str]:
    """The files of a package's list that a path pattern may name."""
    if ANY not in pattern:
        return [f for f in files if f == pattern]
    # A script's unknown part never stands for a whole path: a pattern
    # that is nothing but unknowns matches no file.
    if not pattern.replace(ANY, "").strip("/"):
        return []
    return [f for f in files if _fits(pattern.split(ANY), f)]


def _fits(pieces: list[str], path: str) -> bool:
    """Whether `path` is the literal pieces in order, anything between them."""
    first, last = pieces[0], pieces[-1]
    if not path.startswith(first) or not path.endswith(last) or \
            len(path) < len(first) + len(last):
        return False
    at, end = len(first), len(path) - len(last)
    for piece in pieces[1:-1]:
        found = path.find(piece, at, end)
        if found < 0:
            return False
        at = found + len(piece)
    return True
