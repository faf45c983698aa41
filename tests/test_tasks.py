"""The task suite against docs/tasks.md: golden outputs of the original code, hand-checked
examples, and a plain-Python reference on random samples."""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from rasp_hydra.tasks import (
    ALL_TOKENS,
    BOS,
    IGNORE,
    UnknownTaskError,
    get_task,
    make_task,
    task_names,
)
from rasp_hydra.tasks.__main__ import main as tasks_cli

TESTS = Path(__file__).resolve().parent
# A copy of shared/golden/original_outputs.json: what the original code computes.
GOLDEN = TESTS / "data" / "golden_original_outputs.json"


pytestmark = pytest.mark.usefixtures("one_thread")


def _golden():
    return json.loads(GOLDEN.read_text())


def run(task, words):
    """(outputs as lists of str, selectors dict) for a batch of words."""
    tokens, lengths = task.encode(words)
    return task.decode_outputs(task.outputs(tokens, lengths), lengths), task.selectors(
        tokens, lengths)


def out1(name, word):
    return run(get_task(name), [word])[0][0]


# --- golden outputs of the original code --------------------------------------------------

def test_golden_every_case():
    golden = _golden()
    assert len(golden) == 38
    for name, spec in golden.items():
        task = get_task(name)
        assert task.alphabet == spec["alphabet"], name
        assert list(task.out_classes) == spec["out_classes"], name
        assert spec["non_token"] == BOS
        cases = spec["cases"]
        # all six cases in one padded batch: padding must not change anything
        outs, sels = run(task, [c["input"] for c in cases])
        for i, case in enumerate(cases):
            assert outs[i] == case["output"], (name, case["input"])
            if "attn" in case:
                assert {f"{l},{h}" for l, h in task.supervised_heads} == set(case["attn"])
                for key, matrix in case["attn"].items():
                    head = tuple(int(v) for v in key.split(","))
                    n = len(matrix)
                    got = sels[head][i]
                    assert got[:n, :n].tolist() == matrix, (name, key, case["input"])
                    assert not got[n:].any() and not got[:, n:].any()


# --- hand-checked examples ------------------------------------------------------------------

HAND = [
    # reverse: one token, repeats, BOS, whitespace tokens of the 100-token alphabet
    ("reverse_10", "a", "a"),
    ("reverse_10", "abca", "acba"),
    ("reverse_10_bos", "§abc", "§cba"),
    ("reverse_100", "a\tb ", " b\ta"),
    # hist: repeats, cap at 10, BOS, one token
    ("hist_10", "aab", ["2", "2", "1"]),
    ("hist_10", "a" * 12 + "b", ["10"] * 12 + ["1"]),
    ("hist_10_bos", "§aba", ["§", "2", "1", "2"]),
    ("hist_26", "z", ["1"]),
    # hist2: ties between counts, cap at 10, one token
    ("hist2_26", "aabc", ["1", "1", "2", "2"]),
    ("hist2_26", "aabb", ["2", "2", "2", "2"]),
    ("hist2_26", "abcdefghijk", ["10"] * 11),
    ("hist2_10_bos", "§a", ["§", "1"]),
    ("hist2_10", "abbccc", ["1", "1", "1", "1", "1", "1"]),
    # sort: by code point with the 100-token alphabet, duplicates kept, BOS
    ("sort_10", "bca", "abc"),
    ("sort_100", "aA0", "0Aa"),
    ("sort_100", "aZ~ \n", "\n Za~"),
    ("sort_52", "bBab", "Babb"),
    ("sort_10_bos", "§ba", "§ab"),
    # sort_by_freq: ties by first occurrence, BOS fill, one token, BOS task
    ("sort_by_freq_10", "abcbc", ["b", "c", "a", "§", "§"]),
    ("sort_by_freq_10", "ab", ["a", "b"]),
    ("sort_by_freq_10", "a", ["a"]),
    ("sort_by_freq_10", "cabbaa", ["a", "b", "c", "§", "§", "§"]),
    ("sort_by_freq_10_bos", "§aab", ["§", "a", "b", "§"]),
    # Dyck: F that sticks, neutrals, mismatched pair types, BOS, dyck7's neutral
    ("dyck1_ptf", "(()", ["P", "P", "P"]),
    ("dyck1_ptf", "())(", ["P", "T", "F", "F"]),
    ("dyck1_ptf", ")()", ["F", "F", "F"]),
    ("dyck1_ptf", "a(a)a", ["T", "P", "P", "T", "T"]),
    ("dyck2_ptf", "({)}", ["P", "P", "F", "F"]),
    ("dyck2_ptf", "({})", ["P", "P", "P", "T"]),
    ("dyck2_ptf_bos", "§{}(", ["§", "P", "T", "P"]),
    ("dyck7_ptf", "ab.(a)b", ["P", "T", "T", "P", "P", "F", "F"]),
    ("dyck8_ptf", "xy`'", ["P", "T", "P", "T"]),
]


@pytest.mark.parametrize("name,word,expected", HAND)
def test_hand_checked(name, word, expected):
    assert out1(name, word) == list(expected)


def m(*rows):
    return [[c == "1" for c in r] for r in rows]


def test_hand_checked_selectors():
    # hist "same token" (reference) looks at BOS; the BOS row selects only BOS
    _, sel = run(get_task("hist_10_bos"), ["§aba"])
    assert sel[(0, 0)][0].tolist() == m("1000", "1101", "1010", "1101")
    # reverse "flip" (reference) does not look at BOS
    _, sel = run(get_task("reverse_10_bos"), ["§abc"])
    assert sel[(1, 0)][0].tolist() == m("1000", "0001", "0010", "0100")
    # sort "place" does not look at BOS; code-point order with k = 100
    _, sel = run(get_task("sort_100_bos_with_attns"), ["§aA"])
    assert sel[(0, 0)][0].tolist() == m("100", "101", "100")  # "A" < "a"
    assert sel[(1, 0)][0].tolist() == m("100", "001", "010")
    # dyck prefix (reference), padding rows/cols are False
    _, sel = run(get_task("dyck1_ptf"), ["()", "(()"])
    assert sel[(0, 0)][0].tolist() == m("100", "110", "000")
    # hist2 layer 1: same count and first occurrence, with a tie between counts
    _, sel = run(get_task("hist2_10_with_attns"), ["abba"])
    assert sel[(1, 0)][0].tolist() == m("1100", "1100", "1100", "1100")
    # sort_by_freq "comes before": a non-first occurrence ranks below every first one
    _, sel = run(get_task("sort_by_freq_10_with_attns"), ["aab"])
    assert sel[(1, 0)][0].tolist() == m("000", "101", "100")
    assert sel[(2, 0)][0].tolist() == m("100", "001", "010")


# --- plain-Python reference straight from docs/tasks.md ------------------------------------

DYCK_PAIRS = ["()", "{}", "[]", "<>", "\\/", "`'", "ab", "xy"]


def ref_outputs(family, w, size):
    n, cnt = len(w), Counter(w)
    if family == "reverse":
        return list(reversed(w))
    if family == "hist":
        return [str(min(cnt[c], 10)) for c in w]
    if family == "hist2":
        return [str(min(sum(1 for t in cnt if cnt[t] == cnt[c]), 10)) for c in w]
    if family == "sort":
        return sorted(w)
    if family == "sort_by_freq":
        distinct = sorted(dict.fromkeys(w), key=lambda t: -cnt[t])  # stable: first occurrence
        return distinct + [BOS] * (n - len(distinct))
    if family == "dyck":
        closer_of = {p[0]: p[1] for p in DYCK_PAIRS[:size]}
        closers = {p[1] for p in DYCK_PAIRS[:size]}
        stack, failed, out = [], False, []
        for c in w:
            if not failed and c in closer_of:
                stack.append(closer_of[c])
            elif not failed and c in closers:
                if stack and stack[-1] == c:
                    stack.pop()
                else:
                    failed = True
            out.append("F" if failed else "T" if not stack else "P")
        return out
    raise AssertionError(family)


def ref_selectors(family, w):
    """{(layer, head): S[q][k]} before the BOS wrap, straight from docs/tasks.md."""
    n, cnt = len(w), Counter(w)
    first = [w.index(c) == j for j, c in enumerate(w)]
    R = range(n)
    if family == "reverse":
        return {(1, 0): [[k == n - 1 - q for k in R] for q in R]}
    if family == "hist":
        return {(0, 0): [[w[q] == w[k] for k in R] for q in R]}
    if family == "hist2":
        return {(0, 0): [[w[q] == w[k] for k in R] for q in R],
                (0, 1): [[w[q] == w[k] and k < q for k in R] for q in R],
                (1, 0): [[cnt[w[k]] == cnt[w[q]] and first[k] for k in R] for q in R]}
    if family == "sort":
        before = [[w[k] < w[q] or (w[k] == w[q] and k < q) for k in R] for q in R]
        pos = [sum(row) for row in before]
        return {(0, 0): before, (1, 0): [[q == pos[k] for k in R] for q in R]}
    if family == "sort_by_freq":
        score = [cnt[c] if first[j] else cnt[c] - 202 for j, c in enumerate(w)]
        before = [[score[k] > score[q] or (score[k] == score[q] and k < q) for k in R]
                  for q in R]
        pos = [sum(row) for row in before]
        return {(0, 0): [[w[q] == w[k] for k in R] for q in R],
                (0, 1): [[w[q] == w[k] and k < q for k in R] for q in R],
                (1, 0): before, (2, 0): [[q == pos[k] for k in R] for q in R]}
    if family == "dyck":
        return {(0, 0): [[k <= q for k in R] for q in R]}
    raise AssertionError(family)


def wrap(S, look_at_bos):
    n = len(S)
    return [[True] + [False] * n] + [[look_at_bos] + row for row in S]


RANDOM_TASKS = [
    ("reverse", "reverse_26", "reverse_100_bos"),
    ("hist", "hist_10", "hist_100_bos"),
    ("hist2", "hist2_10_with_attns", "hist2_26_bos_with_attns"),
    ("sort", "sort_100_with_attns", "sort_52_bos_with_attns"),
    ("sort_by_freq", "sort_by_freq_10_with_attns", "sort_by_freq_100_bos_with_attns"),
    ("dyck", "dyck1_ptf", "dyck2_ptf_bos"),
    ("dyck", "dyck8_ptf", "dyck3_ptf_bos"),
]


@pytest.mark.parametrize("family,plain,with_bos", RANDOM_TASKS)
def test_random_samples_match_reference(family, plain, with_bos):
    for name in (plain, with_bos):
        task = get_task(name)
        # outputs: 1000 samples, lengths 1..100, one padded batch
        tokens, lengths = task.sample(1000, seed=3, split="valid")
        outs = task.decode_outputs(task.outputs(tokens, lengths), lengths)
        for w, out in zip(task.decode_inputs(tokens, lengths), outs, strict=True):
            body = w[1:] if task.bos else w
            expected = ref_outputs(family, body, task.size)
            assert out == ([BOS] + expected if task.bos else expected), (name, w)
        targets = task.outputs(tokens, lengths)
        assert (targets == IGNORE).sum() == tokens.numel() - lengths.sum()
        # selectors: 500 shorter samples per variant, 1000 per family (the reference is
        # quadratic in Python)
        tokens, lengths = task.sample(500, seed=4, split="test", max_len=20)
        sels = {h: s.tolist() for h, s in task.selectors(tokens, lengths).items()}
        assert set(sels) == set(task.selector_heads)
        for i, w in enumerate(task.decode_inputs(tokens, lengths)):
            body = w[1:] if task.bos else w
            ref = ref_selectors(family, body)
            assert set(ref) == set(sels), name
            for h, S in ref.items():
                if task.bos:
                    S = wrap(S, task.look_at_bos[h])
                n = len(S)
                got = sels[h][i]
                assert [row[:n] for row in got[:n]] == S, (name, h, w)
                assert not any(any(row[n:]) for row in got) and not any(
                    any(row) for row in got[n:])


def test_dyck_generators():
    task = get_task("dyck2_ptf")
    tokens, lengths = task.sample(3000, seed=0)
    outs = task.decode_outputs(task.outputs(tokens, lengths), lengths)
    words = task.decode_inputs(tokens, lengths)
    assert 1 <= int(lengths.min()) and int(lengths.max()) <= 100
    balanced = [o for j, o in enumerate(outs) if j % 3 == 0]
    assert all(o[-1] == "T" and "F" not in o for o in balanced)  # generator 0
    noisy = Counter(o[-1] for j, o in enumerate(outs) if j % 3 == 1)
    uniform = Counter(o[-1] for j, o in enumerate(outs) if j % 3 == 2)
    assert noisy["F"] > 500 and noisy["T"] > 10  # some cut at len(b) stay balanced
    assert uniform["F"] > 900
    # generator 0: 30% of insertions are the neutral (1 char) and 70% pairs (2 chars)
    chars = "".join(w for j, w in enumerate(words) if j % 3 == 0)
    share = chars.count("a") / len(chars)
    assert abs(share - 0.3 / 1.7) < 0.02
    lens0 = lengths[0::3].float()
    assert 40 < lens0.mean() < 62
    # dyck7/8: the neutral is "." (since "a" opens the pair "ab")
    assert get_task("dyck7_ptf").alphabet == "(){}[]<>\\/`'ab."
    assert get_task("dyck8_ptf").alphabet.endswith("xy.")
    assert get_task("dyck6_ptf").alphabet.endswith("`'a")


# --- names, registry, API ---------------------------------------------------------------------

def test_names_and_grammar():
    names = task_names()
    assert len(names) == len(set(names)) == 80
    grouped = task_names(grouped=True)
    assert list(grouped) == ["reverse", "hist", "hist2", "sort", "sort_by_freq", "dyck"]
    assert "hist2_26_bos_with_attns" in grouped["hist2"]
    assert "dyck8_ptf_bos" in grouped["dyck"] and "reverse_10_with_attns" not in names
    for name in names:
        task = get_task(name)
        assert task.name == name
        assert make_task(task.family, task.size, task.bos, task.with_attns).name == name
    t = get_task("hist2_26_bos_with_attns")
    assert (t.family, t.size, t.bos, t.with_attns) == ("hist2", 26, True, True)
    assert t.alphabet == ALL_TOKENS[:26] == "abcdefghijklmnopqrstuvwxyz"
    assert (t.bos_id, t.pad_id, t.vocab_size, t.n_out) == (26, 27, 28, 12)
    assert t.supervised_heads == t.selector_heads == ((0, 0), (0, 1), (1, 0))
    assert get_task("hist2_26").supervised_heads == ()
    assert get_task("hist2_26").selector_heads == ((0, 0), (0, 1), (1, 0))
    assert make_task("dyck", 2).name == "dyck2_ptf"
    assert get_task("hist_20").alphabet == ALL_TOKENS[:20]  # any k in 1..100
    assert len(ALL_TOKENS) == 100 and ALL_TOKENS[-6:] == " \t\n\r\x0b\x0c"


BUDGETS = {"reverse_10": (2, 1), "hist_10_bos": (1, 1), "hist2_10": (2, 2), "sort_10": (2, 1),
           "sort_by_freq_10": (3, 2), "dyck1_ptf": (2, 1), "dyck2_ptf": (3, 1),
           "dyck6_ptf": (3, 1)}


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_rasp_budgets(name):
    t = get_task(name)
    assert (t.predicted_layers, t.predicted_heads) == BUDGETS[name]


def test_selector_flags():
    assert get_task("sort_10_bos_with_attns").look_at_bos == {(0, 0): True, (1, 0): False}
    sbf = get_task("sort_by_freq_10_bos_with_attns")
    assert all(sbf.look_at_bos.values()) and sbf.reference_heads == ()
    assert get_task("reverse_10").reference_heads == ((1, 0),)
    assert get_task("hist_10_bos").reference_heads == ((0, 0),)
    assert get_task("dyck1_ptf").reference_heads == ((0, 0),)
    assert get_task("reverse_10").supervised_heads == ()


def test_unknown_names():
    with pytest.raises(UnknownTaskError) as e:
        get_task("hist3_26")
    msg = str(e.value)
    assert "hist2_26" in msg and "hist_26" in msg and "\n" not in msg
    assert isinstance(e.value, ValueError)
    for bad in ["", "hist", "hist_0", "hist_101", "dyck9_ptf", "dyck1", "sort_10_with_bos",
                "nomodule_xyz:Fam"]:
        with pytest.raises(UnknownTaskError):
            get_task(bad)
    with pytest.raises(ValueError, match="hist2, sort, sort_by_freq"):
        get_task("reverse_10_with_attns")
    with pytest.raises(ValueError, match="hist2, sort, sort_by_freq"):
        get_task("dyck1_ptf_with_attns")
    with pytest.raises(ValueError, match="alphabet"):
        get_task("hist_10").encode(["abz"])


def test_encode_decode():
    t = get_task("sort_by_freq_10_bos")
    tokens, lengths = t.encode(["abc", "§a", ""])
    assert lengths.tolist() == [4, 2, 1]
    assert tokens[:, 0].tolist() == [t.bos_id] * 3 and tokens[1, 2:].tolist() == [t.pad_id] * 2
    assert t.decode_inputs(tokens, lengths) == ["§abc", "§a", "§"]
    y = t.outputs(tokens, lengths)
    assert y[2].tolist() == [t.out_classes.index(BOS), IGNORE, IGNORE, IGNORE]


def test_user_family_by_import_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    task = get_task("example_tasks:Mirror")
    assert task.family == "example_tasks:Mirror" and task.size == 2 and task.alphabet == "ab"
    assert out1("example_tasks:Mirror", "abba") == ["1", "1", "1", "1"]
    t = get_task("example_tasks:Mirror_10_bos_with_attns")
    assert t.name == "example_tasks:Mirror_10_bos_with_attns"
    assert t.supervised_heads == ((1, 0),) and t.out_classes == ("0", "1", BOS)
    assert run(t, ["abca"])[0][0] == ["§", "1", "0", "0", "1"]
    assert make_task("example_tasks:Mirror", 10, True, True).name == t.name
    tokens, lengths = t.sample(100, seed=1)
    assert (tokens[:, 1:] < 10).logical_or(tokens[:, 1:] == t.pad_id).all()
    with pytest.raises(UnknownTaskError, match="no Family subclass"):
        get_task("example_tasks:Nothing")
    module = importlib.import_module("example_tasks")
    assert make_task(module.Mirror, 2).name == "example_tasks:Mirror_2"


def test_doctests_of_task_modules():
    for mod in ["primitives", "reverse", "hist", "hist2", "sort", "sort_by_freq", "dyck", "base"]:
        module = importlib.import_module(f"rasp_hydra.tasks.{mod}")
        assert doctest.testmod(module).failed == 0, mod
    assert doctest.testmod(importlib.import_module("rasp_hydra.tasks")).failed == 0


# --- sampling determinism ---------------------------------------------------------------------

def test_sampling_is_deterministic_and_seeded():
    t = get_task("hist2_26")
    a = t.sample(5000, seed=7)
    torch.manual_seed(123)
    np.random.seed(123)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        b = t.sample(5000, seed=7)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = t.sample(5000, seed=8)
    assert not torch.equal(a[0][:100, :5], c[0][:100, :5])
    v = t.sample(5000, seed=7, split="valid")
    assert not torch.equal(a[1], v[1])
    # sample i does not depend on how many are drawn or where the range starts
    part = t.sample(300, seed=7, start=4000)
    n = part[0].shape[1]
    assert torch.equal(part[0], a[0][4000:4300, :n]) and torch.equal(part[1], a[1][4000:4300])
    # bos and with_attns variants share the sequences
    tb, lb = get_task("hist2_26_bos_with_attns").sample(50, seed=7)
    assert torch.equal(tb[:, 1:], a[0][:50, : tb.shape[1] - 1]) and torch.equal(lb - 1, a[1][:50])


def test_sampling_ranges():
    for name in ["sort_100", "dyck3_ptf"]:
        t = get_task(name)
        tokens, lengths = t.sample(2000, seed=0, min_len=5, max_len=9)
        assert int(lengths.min()) >= 5 and int(lengths.max()) <= 9
        real = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
        assert (tokens[real] < len(t.alphabet)).all() and (tokens[~real] == t.pad_id).all()
    lengths = get_task("reverse_10").sample(20000)[1]
    assert set(lengths.tolist()) == set(range(1, 101))


# --- command line -----------------------------------------------------------------------------

def test_cli_list_and_peep(capsys):
    assert tasks_cli(["list"]) == 0
    out = capsys.readouterr().out
    assert "hist2_26_bos_with_attns" in out and "dyck8_ptf_bos" in out
    assert tasks_cli(["peep", "sort_10_bos_with_attns", "--stop", "3", "--max-len", "5"]) == 0
    out = capsys.readouterr().out
    assert "[2]" in out and 'layer 1 head 0 "place"' in out
    assert tasks_cli(["peep", "hist3_26"]) == 2
    err = capsys.readouterr().err
    assert "Closest names" in err and "hist2_26" in err and "Traceback" not in err


def test_cli_unknown_name_exit_code():
    r = subprocess.run([sys.executable, "-m", "rasp_hydra.tasks", "peep", "sort_by_frq_10"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "sort_by_freq_10" in r.stderr and "Traceback" not in r.stderr


def test_peep_says_when_and_why_it_leaves_selectors_out(capsys):
    """Selectors up to the longest grid a terminal holds (19 tokens, BOS included), and a
    line instead of them beyond it, naming the length that shows them."""
    assert tasks_cli(["peep", "hist_10_bos", "--stop", "1", "--min-len", "18",
                      "--max-len", "18"]) == 0
    out = capsys.readouterr().out
    assert 'selector layer 0 head 0 "same token"' in out and "left out" not in out
    assert tasks_cli(["peep", "hist_10_bos", "--stop", "2", "--min-len", "19",
                      "--max-len", "19"]) == 0
    out = capsys.readouterr().out
    assert "selector layer" not in out
    assert out.count("\n  selectors left out: a grid of 20 x 20 per head (BOS included) is too "
                     "wide for a terminal; they are shown up to length 18 (--max-len 18)\n") == 2
    assert tasks_cli(["peep", "reverse_10", "--stop", "1", "--min-len", "20",
                      "--max-len", "20"]) == 0
    out = capsys.readouterr().out  # no BOS: one more token fits
    assert "a grid of 20 x 20 per head is too wide" in out
    assert "shown up to length 19 (--max-len 19)" in out
