"""Seeded splits as padded tensors, and length-bucketed batches.

    >>> from rasp_hydra.tasks import get_task
    >>> splits = build_splits(get_task("reverse_10"), sizes={"train": 100, "valid": 10})
    >>> {name: len(s) for name, s in splits.items()}
    {'train': 100, 'valid': 10}

Every split is built once: inputs come from ``Task.sample`` (sample i is a pure function
of the task's base name, seed, split name, i and the length range) and targets from the
task's vectorized ``outputs``. Selectors are not stored; compute them per batch with
``task.selectors(tokens, lengths)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .config import LangConfig
from .tasks import Task

DEFAULT_SIZES = {"train": LangConfig.train_size, "valid": LangConfig.valid_size,
                 "test": LangConfig.test_size}
GROUP_BATCHES = 50  # batches per length-sorted group when shuffling


@dataclass
class Split:
    """One split: ``tokens`` LongTensor[N, n_max] (BOS included for bos tasks, padded with
    task.pad_id), ``lengths`` LongTensor[N], ``targets`` LongTensor[N, n_max] (IGNORE at
    padding)."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.lengths.shape[0])


def build_split(task: Task, size: int, seed: int = 0, split: str = "train",
                min_len: int = LangConfig.min_len, max_len: int = LangConfig.max_len) -> Split:
    """One split of ``size`` samples (lengths without BOS in min_len..max_len)."""
    tokens, lengths = task.sample(size, seed=seed, split=split, min_len=min_len,
                                  max_len=max_len)
    return Split(tokens, lengths, task.outputs(tokens, lengths))


def build_splits(task: Task, seed: int = 0, sizes: dict[str, int] | None = None,
                 min_len: int = LangConfig.min_len, max_len: int = LangConfig.max_len,
                 long_test: tuple[int, int, int] | None = None) -> dict[str, Split]:
    """The task's splits, by name (default train 50,000 / valid 1,000 / test 1,000).

    ``long_test=(size, min_len, max_len)`` adds a split "test_long" (length
    generalization), drawn with its own seed stream. Lengths are without BOS.
    """
    sizes = DEFAULT_SIZES if sizes is None else sizes
    out = {name: build_split(task, int(n), seed, name, min_len, max_len)
           for name, n in sizes.items()}
    if long_test is not None and int(long_test[0]) > 0:
        n, lo, hi = (int(v) for v in long_test)
        out["test_long"] = build_split(task, n, seed, "test_long", lo, hi)
    return out


def _row_keys(split: Split) -> list[bytes]:
    toks = split.tokens.numpy()
    lens = split.lengths.numpy()
    return [toks[i, : lens[i]].tobytes() for i in range(len(lens))]


def split_overlap(splits: dict[str, Split]) -> dict[str, int]:
    """For every split other than "train": how many of its sequences also occur in train."""
    if "train" not in splits:
        return {}
    train = set(_row_keys(splits["train"]))
    return {name: sum(k in train for k in _row_keys(s))
            for name, s in splits.items() if name != "train"}


def batch_order(lengths: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0,
                epoch: int = 0) -> list[np.ndarray]:
    """Index arrays, one per batch. Without shuffle: all indices sorted by length (stable),
    cut into batches. With shuffle: a permutation seeded by (seed, epoch), cut into groups
    of GROUP_BATCHES batches, each group sorted by length and cut into batches, then the
    batch order shuffled; a pure function of (lengths, batch_size, seed, epoch)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    lens = lengths.numpy()
    N = len(lens)
    if not shuffle:
        order = np.argsort(lens, kind="stable")
        return [order[i:i + batch_size] for i in range(0, N, batch_size)]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch)])))
    perm = rng.permutation(N)
    group = batch_size * GROUP_BATCHES
    out = []
    for g in range(0, N, group):
        idx = perm[g:g + group]
        idx = idx[np.argsort(lens[idx], kind="stable")]
        out += [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def batches(split: Split, batch_size: int, shuffle: bool, seed: int = 0,
            epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (tokens[B, n], lengths[B], targets[B, n]) with n the longest in the batch.
    Length-bucketed (see ``batch_order``), so the order is a pure function of
    (seed, epoch): resuming at epoch e and batch b replays exactly."""
    for idx in batch_order(split.lengths, batch_size, shuffle, seed, epoch):
        ix = torch.from_numpy(idx)
        lengths = split.lengths[ix]
        n = int(lengths.max())
        yield split.tokens[ix, :n], lengths, split.targets[ix, :n]
