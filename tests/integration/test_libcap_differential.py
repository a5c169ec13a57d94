"""capsnap against libcap2-bin's setcap and getcap, on real files.

A corpus of capability texts is generated here, from the grammar of
cap_from_text(3) plus random damage, with a fresh seed each run (printed on
failure; set CAPSNAP_DIFF_SEED to replay one).  For every text: capsnap set
must accept exactly when setcap does, write the same bytes, and capsnap get
must print what getcap prints.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from capsnap.captext import CAP_NAMES
from tests.conftest import copy_binary, getxattr_or_none, needs_root, run_cli

CORPUS_SIZE = 2400
pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("setcap") is None, reason="libcap2-bin missing")]


def _random_case(rng: random.Random, word: str) -> str:
    mode = rng.random()
    if mode < 0.7:
        return word
    if mode < 0.85:
        return word.upper()
    return "".join(c.upper() if rng.random() < 0.5 else c for c in word)


def _item(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.68:
        return _random_case(rng, rng.choice(CAP_NAMES))
    if roll < 0.75:
        return _random_case(rng, "all")
    if roll < 0.88:
        n = rng.choice([rng.randrange(0, 41), rng.randrange(38, 70)])
        return rng.choice([str(n), hex(n), f"0{n:o}", f"0X{n:X}"])
    return rng.choice(["cap_foo", "cap_chown2", "_", "cap_", "net_raw", "0x", "08",
                       "99999999999999999999", "cap-chown", "allx", "a11"])


def _flags(rng: random.Random) -> str:
    flags = "".join(rng.sample("eip", rng.randrange(0, 4)))
    if rng.random() < 0.06:
        flags += rng.choice(["E", "P", "x", "=", ",", "ee"])
    return flags


def _clause(rng: random.Random) -> str:
    if rng.random() < 0.12:
        head = ""  # a bare "=flags" clause means every capability
    else:
        head = ",".join(_item(rng) for _ in range(rng.randrange(1, 4)))
    op = rng.choices(["=", "+", "-", "=+", "=-", "+=", ""], [44, 27, 15, 6, 4, 2, 2])[0]
    text = head + op + _flags(rng)
    for _ in range(rng.choices([0, 1, 2], [70, 25, 5])[0]):
        text += rng.choice("+-") + _flags(rng)
    return text


def _mutate(rng: random.Random, text: str) -> str:
    pos = rng.randrange(0, len(text) + 1)
    kind = rng.random()
    if kind < 0.4 and text:
        return text[:pos] + text[pos + 1:]
    if kind < 0.8:
        return text[:pos] + rng.choice(",=+-eipEIP _x0\t9") + text[pos:]
    return text[:pos] + text[pos:][::-1]


def generate_corpus(seed: int, size: int) -> list[str]:
    rng = random.Random(seed)
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < size:
        clauses = [_clause(rng) for _ in range(rng.choices([1, 2, 3, 4], [50, 30, 15, 5])[0])]
        seps = [rng.choices([" ", "  ", "\t", "\n", ",", ""], [74, 8, 8, 4, 3, 3])[0]
                for _ in clauses]
        text = "".join(c + s for c, s in zip(clauses, seps, strict=True)).rstrip(" ")
        if rng.random() < 0.2:
            text = _mutate(rng, text)
        if rng.random() < 0.05:
            text = " " + text
        # setcap reads a leading '-' as one of its options; NUL cannot be an argument.
        if text.startswith("-") or "\0" in text or text in seen:
            continue
        seen.add(text)
        texts.append(text)
    return texts


def test_corpus_mixes_valid_and_malformed_texts() -> None:
    from capsnap.captext import parse_file_caps
    from capsnap.errors import CapTextError

    valid = 0
    for text in generate_corpus(1, 1000):
        try:
            parse_file_caps(text)
            valid += 1
        except CapTextError:
            pass
    assert 250 < valid < 750, valid


def _getcap(path: Path, namespace: bool = False) -> str:
    args = ["getcap", "-n", str(path)] if namespace else ["getcap", str(path)]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def _clear(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.removexattr(path, "security.capability")


def test_set_and_get_agree_with_setcap_and_getcap(tmp_path: Path) -> None:
    seed = int(os.environ.get("CAPSNAP_DIFF_SEED", random.SystemRandom().randrange(1 << 32)))
    corpus = generate_corpus(seed, CORPUS_SIZE)
    theirs = copy_binary("/bin/true", tmp_path / "by-setcap")
    ours = copy_binary("/bin/true", tmp_path / "by-capsnap")
    accepted = rejected = 0
    mismatches: list[str] = []
    for text in corpus:
        _clear(theirs)
        _clear(ours)
        libcap = subprocess.run(["setcap", text, str(theirs)], capture_output=True, text=True)
        result = run_cli("set", "--", text, str(ours))
        their_bytes, our_bytes = getxattr_or_none(theirs), getxattr_or_none(ours)
        if (libcap.returncode == 0) != (result.status == 0):
            mismatches.append(f"{text!r}: setcap exit {libcap.returncode}, capsnap "
                              f"{result.status} ({result.err.strip()})")
            continue
        if libcap.returncode != 0:
            rejected += 1
            assert result.status == 2, (text, result)
            assert our_bytes is None, f"{text!r}: capsnap wrote despite rejecting it"
            assert len(result.err.strip().splitlines()) == 1, result.err
            continue
        accepted += 1
        if their_bytes != our_bytes:
            mismatches.append(f"{text!r}: bytes {their_bytes!r} != {our_bytes!r}")
            continue
        expected = _getcap(theirs)
        got = run_cli("get", str(theirs))
        if got.out != expected:
            mismatches.append(f"{text!r}: get printed {got.out!r}, getcap {expected!r}")
        got_ours = run_cli("get", str(ours)).out.replace(str(ours), str(theirs))
        if got_ours != expected:
            mismatches.append(f"{text!r}: get of our file {got_ours!r}, getcap {expected!r}")
    assert not mismatches, f"seed {seed}: {len(mismatches)} mismatches:\n" + \
        "\n".join(mismatches[:20])
    assert accepted > CORPUS_SIZE // 5 and rejected > CORPUS_SIZE // 5, (accepted, rejected)


def test_namespaced_rootid_matches_setcap_n(tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    theirs = copy_binary("/bin/true", tmp_path / "by-setcap")
    ours = copy_binary("/bin/true", tmp_path / "by-capsnap")
    for text in [t for t in generate_corpus(seed, 300)][:120]:
        rootid = rng.choice([1, 1000, 65534, 100000, 4294967294])
        _clear(theirs)
        _clear(ours)
        libcap = subprocess.run(["setcap", "-n", str(rootid), text, str(theirs)],
                                capture_output=True)
        result = run_cli("set", "--rootid", str(rootid), "--", text, str(ours))
        assert (libcap.returncode == 0) == (result.status == 0), (seed, text, result)
        assert getxattr_or_none(theirs) == getxattr_or_none(ours), (seed, text)
        if libcap.returncode == 0:
            expected = _getcap(theirs, namespace=True)
            assert run_cli("get", "-n", str(theirs)).out == expected, (seed, text)
            assert "[rootid=" in expected
