"""The batched evaluator's fast paths against the per-position reference
(tests/rasp_reference.py): aggregates of small ints (counted by (sum, count) pairs) on
long inputs, and identical computations evaluated once."""

from __future__ import annotations

import numpy as np
import torch

from rasp_hydra.rasp import (
    aggregate,
    constant,
    evaluate_batch,
    indices,
    library,
    map,
    select,
    selector_width_bos,
    tokens,
    tokens_int,
    where,
)
from rasp_hydra.rasp.evaluate import encode, pack, single_index
from tests import rasp_reference as reference

OPS = ["==", "<", "<=", "!="]


def _same(a, b):
    return [(type(v), v) for v in a] == [(type(v), v) for v in b]


def test_small_int_aggregates_equal_the_per_position_reference():
    rng = np.random.default_rng(3)
    value_maps = {  # token digit -> value: bools, negatives, a wide and a narrow range
        "bool": lambda t: t % 2 == 0,
        "negative": lambda t: t - 7,
        "wide": lambda t: 40 * t - 100,
        "narrow": lambda t: t % 2,
    }
    lengths = [1, 2, 5, 30, 70]  # 70: two words of packed keys
    words = [[int(d) for d in rng.integers(0, 10, size=m)] for m in lengths for _ in range(4)]
    ids, lens, input_values = encode(words)
    for vname, fn in value_maps.items():
        vals = map(fn, tokens_int)
        for op in OPS:
            for keys, queries in ((tokens_int, tokens_int), (indices, indices),
                                  (tokens_int, indices)):
                for default in (0, -3, 2.5):
                    one_key = op == "==" and keys is indices and queries is indices
                    if vname == "bool" and not one_key:
                        continue  # means of only bools are an error (tested elsewhere)
                    agg = aggregate(select(keys, queries, op), vals, default)
                    got = evaluate_batch([agg], ids, lens, input_values)[agg].values(lens)
                    for w, row in zip(words, got, strict=True):
                        assert _same(row, reference.evaluate(agg, w)), (vname, op, default, w)


def test_selector_width_bos_counts_on_long_batches():
    rng = np.random.default_rng(4)
    words = ["§" + "".join(rng.choice(list("abc"), size=m)) for m in (1, 3, 64, 65, 99)]
    width = selector_width_bos(select(tokens, tokens, "=="))
    ids, lens, input_values = encode(words)
    got = evaluate_batch([width], ids, lens, input_values)[width].values(lens)
    for w, row in zip(words, got, strict=True):
        assert row == [0] + [w[1:].count(c) for c in w[1:]]
        assert all(type(v) is int for v in row)


def test_identical_computations_are_shared_but_not_confused():
    # the same select written twice gives the same values as one select used twice
    twice = aggregate(select(tokens, tokens, "=="), indices) + aggregate(
        select(tokens, tokens, "=="), indices)
    once_sel = select(tokens, tokens, "==")
    once = aggregate(once_sel, indices) + aggregate(once_sel, indices)
    # equal constants of different types, and one function on different s-ops, stay apart
    as_int, as_float = tokens_int + 1, tokens_int + 1.0
    shifted = indices + 1
    true_or_one = where(indices == 0, constant(True), constant(1))
    ids, lens, input_values = encode([[3, 1, 3, 2], [5]])
    out = evaluate_batch([twice, once, as_int, as_float, shifted, true_or_one], ids, lens,
                         input_values)
    assert out[twice].values(lens) == out[once].values(lens) == [[2.0, 2, 2.0, 6], [0]]
    assert _same(out[as_int].values(lens)[0], [4, 2, 4, 3])
    assert _same(out[as_float].values(lens)[0], [4.0, 2.0, 4.0, 3.0])
    assert out[shifted].values(lens)[0] == [1, 2, 3, 4]
    assert _same(out[true_or_one].values(lens)[0], [True, 1, 1, 1])
    # the library programs repeat selects (same_token in hist2_bos): still exact
    hist2 = library.program("hist2_bos")
    ids, lens, input_values = encode(["§aabc", "§abab", "§a"])
    assert evaluate_batch([hist2], ids, lens, input_values)[hist2].values(lens) == [
        ["§", "1", "1", "2", "2"], ["§", "2", "2", "2", "2"], ["§", "1"]]


def test_single_index_of_one_set_bit():
    # every key position, in every packed word, bit 63 (the int64 sign bit) included
    for n in (1, 5, 63, 64, 65, 128, 150, 200):
        bits = torch.eye(n, dtype=torch.bool)  # row i selects key i
        assert torch.equal(single_index(pack(bits)), torch.arange(n)), n


def test_program_chunks_are_maximal_and_cover_every_row_once():
    from rasp_hydra.tasks import program

    family = program.make_program_task(library.program("reverse"), alphabet=5).family_impl
    rng = np.random.default_rng(5)
    cost = program.CHUNK_ELEMENTS
    for top in (1, 3, 64, 101, 300):
        lengths = torch.from_numpy(rng.integers(0, top + 1, size=20000))
        chunks = list(family._chunks(lengths))
        rows = torch.cat([r for r, _ in chunks])
        assert sorted(rows.tolist()) == list(range(len(lengths)))
        assert torch.equal(lengths[rows], lengths.sort(stable=True).values)
        start = 0
        for r, width in chunks:
            assert width == max(1, int(lengths[r].max()))
            size = len(r) * width * -(-width // 64)
            assert size <= cost or len(r) == 1
            end = start + len(r)
            if end < len(lengths):  # one row more would not fit
                nxt = max(1, int(lengths[rows[end]]))
                assert (len(r) + 1) * nxt * -(-nxt // 64) > cost
            start = end
