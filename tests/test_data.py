"""Splits and batches: deterministic, consistent with the task, length-bucketed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rasp_hydra.data import Split, batch_order, batches, build_splits, split_overlap
from rasp_hydra.tasks import IGNORE, get_task

pytestmark = pytest.mark.usefixtures("one_thread")


SIZES = {"train": 3000, "valid": 200, "test": 200}


def test_build_splits_shapes_and_targets():
    task = get_task("sort_by_freq_26_bos_with_attns")
    splits = build_splits(task, seed=1, sizes=SIZES, long_test=(100, 101, 120))
    assert list(splits) == ["train", "valid", "test", "test_long"]
    for name, s in splits.items():
        assert isinstance(s, Split) and len(s) == (SIZES.get(name) or 100)
        assert s.tokens.dtype == s.lengths.dtype == s.targets.dtype == torch.long
        assert s.tokens.shape == s.targets.shape and s.tokens.shape[1] == int(s.lengths.max())
        assert (s.tokens[:, 0] == task.bos_id).all()
        real = torch.arange(s.tokens.shape[1])[None, :] < s.lengths[:, None]
        assert (s.tokens[~real] == task.pad_id).all() and (s.targets[~real] == IGNORE).all()
        assert torch.equal(s.targets, task.outputs(s.tokens, s.lengths))
    lengths = splits["train"].lengths - 1  # without BOS
    assert int(lengths.min()) == 1 and int(lengths.max()) == 100
    long = splits["test_long"].lengths - 1
    assert int(long.min()) >= 101 and int(long.max()) <= 120


def test_default_sizes():
    splits = build_splits(get_task("reverse_10"))
    assert {k: len(v) for k, v in splits.items()} == {"train": 50000, "valid": 1000,
                                                       "test": 1000}


def test_splits_deterministic_and_seeded():
    task = get_task("dyck2_ptf")
    a = build_splits(task, seed=0, sizes=SIZES)
    torch.manual_seed(99)
    np.random.seed(99)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        b = build_splits(task, seed=0, sizes=SIZES)
    finally:
        torch.set_num_threads(threads)
    for name in SIZES:
        assert torch.equal(a[name].tokens, b[name].tokens)
        assert torch.equal(a[name].targets, b[name].targets)
    c = build_splits(task, seed=1, sizes=SIZES)
    assert not torch.equal(a["train"].lengths, c["train"].lengths)
    assert not torch.equal(a["train"].lengths[:200], a["valid"].lengths)
    # bos variant: same sequences with BOS in front
    d = build_splits(get_task("dyck2_ptf_bos"), seed=0, sizes=SIZES)
    assert torch.equal(d["valid"].tokens[:, 1:], a["valid"].tokens)


def test_split_overlap():
    splits = build_splits(get_task("reverse_10"), sizes=SIZES, min_len=1, max_len=2)
    overlap = split_overlap(splits)
    assert set(overlap) == {"valid", "test"}
    assert overlap["valid"] == 200  # only 110 distinct strings of length 1..2
    few = build_splits(get_task("reverse_100"), sizes=SIZES, min_len=20, max_len=30)
    assert split_overlap(few) == {"valid": 0, "test": 0}
    # counting by hand on a tiny case
    t = get_task("hist_10")
    tr, lt = t.encode(["ab", "a", "abc"])
    va, lv = t.encode(["a", "abd", "ab"])
    manual = {"train": Split(tr, lt, t.outputs(tr, lt)), "valid": Split(va, lv, t.outputs(va, lv))}
    assert split_overlap(manual) == {"valid": 2}


def test_batches_cover_everything_once_and_are_trimmed():
    task = get_task("hist2_10")
    split = build_splits(task, sizes={"train": 5000})["train"]
    seen = []
    pad_tokens = 0
    for tokens, lengths, targets in batches(split, 50, shuffle=True, seed=3, epoch=2):
        assert tokens.shape == targets.shape and tokens.shape[0] == lengths.shape[0] <= 50
        assert tokens.shape[1] == int(lengths.max())
        pad_tokens += tokens.numel() - int(lengths.sum())
        seen += tokens[:, 0].tolist()
    assert len(seen) == 5000
    # length bucketing keeps padding small (unbucketed it would be about 1/3 of all tokens)
    assert pad_tokens / int(split.lengths.sum()) < 0.1
    idx = np.concatenate(batch_order(split.lengths, 50, shuffle=True, seed=3, epoch=2))
    assert sorted(idx.tolist()) == list(range(5000))


def test_batch_order_is_a_pure_function_of_seed_and_epoch():
    split = build_splits(get_task("sort_10"), sizes={"train": 3000})["train"]
    one = batch_order(split.lengths, 50, True, seed=0, epoch=1)
    torch.manual_seed(5)
    np.random.seed(5)
    two = batch_order(split.lengths, 50, True, seed=0, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
    other_epoch = batch_order(split.lengths, 50, True, seed=0, epoch=2)
    other_seed = batch_order(split.lengths, 50, True, seed=1, epoch=1)
    assert not np.array_equal(one[0], other_epoch[0]) and not np.array_equal(one[0], other_seed[0])
    # resume: skipping the first k batches of an epoch replays the rest exactly
    it = batches(split, 50, True, seed=0, epoch=1)
    rest = list(it)[10:]
    again = list(batches(split, 50, True, seed=0, epoch=1))[10:]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(rest, again, strict=True))


def test_unshuffled_batches_sorted_by_length():
    split = build_splits(get_task("reverse_26"), sizes={"valid": 1000})["valid"]
    out = list(batches(split, 64, shuffle=False))
    lengths = torch.cat([b[1] for b in out])
    assert len(lengths) == 1000 and torch.equal(lengths, lengths.sort().values)
    with pytest.raises(ValueError):
        list(batches(split, 0, shuffle=False))
