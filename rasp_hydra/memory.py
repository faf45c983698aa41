"""Will a run fit in memory? An estimate from the config alone, made before anything allocates.

A config such as `lang.train_size=1000000000` or `lang.max_len=100000` would otherwise grow
for minutes and end in the OOM killer; `job.py` refuses it at once with the figures. The
estimate counts what the run is sure to hold, in bytes:

- data: every split's tokens and targets (int64, padded to the longest sequence, BOS
  included) and lengths; while the largest split is sampled, one more int64 copy of it;
  and the training sequences' keys that `data.split_overlap` compares (for reverse_100's
  splits this says 161 MiB where the process grows by 127 MiB);
- model: float32 parameters, their gradients, the optimizer's state (Adam: two moments;
  SGD: one with momentum) and the best model's copy;
- one batch: each layer's activations and, per head, its attention scores and
  probabilities (batch x n x n), for a training batch (kept for backward) or an evaluation
  batch (every layer's attention returned for the attention match), whichever is larger.

It leaves out torch itself and other Python objects: it is meant to refuse what is far out
of reach (the error gives both figures), not to budget memory to the last gigabyte. On a
GPU the splits' tensors, the model and the batch live on the device; the host still builds
the data.
`train.check_memory=false` skips the check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rasp_hydra.config import ConfigError

GiB = 1024**3
INT64, FLOAT32 = 8, 4


@dataclass
class Estimate:
    data: int  # the splits as tensors, and their build
    model: int  # parameters, gradients, optimizer state, best copy
    batch: int  # the largest batch's activations and attention
    longest: int  # the longest sequence, BOS included
    sequences: int  # all splits together
    tensors: int = 0  # the splits' tensors alone (what a GPU holds of the data)

    @property
    def total(self) -> int:
        return self.data + self.model + self.batch

    def text(self) -> str:
        return (f"data {gib(self.data)} for {self.sequences:,} sequences of up to "
                f"{self.longest:,} tokens, model and optimizer {gib(self.model)}, one batch's "
                f"activations and attention {gib(self.batch)}")


def gib(n: float) -> str:
    return f"{n / GiB:,.1f} GiB" if n >= GiB / 10 else f"{n / 1024**2:,.0f} MiB"


def estimate(lang, shape, train, *, vocab_size: int, n_out: int, longest: int,
             max_len: int, learned_positions: bool, optimizer: str,
             momentum: float) -> Estimate:
    """The estimate (module docstring) for a config's lang/train sections and the model
    `shape` a job trains (a resolved ModelConfig); `longest`: the data's longest sequence,
    `max_len` the model's."""
    sizes = [lang.train_size, lang.valid_size, lang.test_size, max(lang.long_test_size, 0)]
    n = longest
    tokens = sum(sizes) * n
    data = (2 * INT64 * tokens + INT64 * sum(sizes)
            + INT64 * max(sizes) * n  # the sampling copy of the largest split
            + (INT64 * n + 100) * lang.train_size)  # split_overlap's keys of train

    d, ff, L, H = shape.d_model, shape.ff, shape.layers, shape.heads
    per_layer = 4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d  # attention, FF, 2 norms
    params = vocab_size * d + (max_len * d if learned_positions else 0) + L * per_layer \
        + d * n_out + n_out
    states = 2 if str(optimizer) == "adam" else (1 if momentum else 0)
    model = FLOAT32 * params * (3 + states)  # weights, gradients, states, best copy

    # training: ~12 d-wide and 2 ff-wide activations per position and layer, and scores
    # and probabilities of every head (the fused kernel's math path keeps both)
    attn = 2 * FLOAT32 * H * n * n
    train_batch = train.batch_size * (L * n * FLOAT32 * (12 * d + 2 * ff) + L * attn)
    # evaluation: no backward, but every explicit layer's attention is returned
    eval_batch = train.eval_batch_size * (n * FLOAT32 * (2 * d + ff) + L * attn)
    return Estimate(data, model, max(train_batch, eval_batch), longest, sum(sizes),
                    tensors=2 * INT64 * tokens)


def available_host() -> int | None:
    """Bytes this process may still allocate: MemAvailable (/proc/meminfo), capped by a
    cgroup v2 memory limit; None where neither can be read (then nothing is refused)."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read())
        if limit != "max":
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    return free


def check(est: Estimate, cuda: bool) -> None:
    """Raise ConfigError when `est` cannot fit in what this machine has free."""
    way_out = ("Make lang.train_size (and the other split sizes), lang.max_len or "
               "train.batch_size / train.eval_batch_size smaller, or set "
               "train.check_memory=false to try anyway.")
    host = available_host()
    need = est.data if cuda else est.total
    if host is not None and need > host:
        raise ConfigError(
            f"This config needs about {gib(need)} of memory ({est.text()}), but this "
            f"machine has {gib(host)} available (MemAvailable), so it was refused before "
            f"anything was allocated. {way_out}")
    if cuda:
        import torch

        free, _ = torch.cuda.mem_get_info()
        need = est.tensors + est.model + est.batch
        if need > free:
            raise ConfigError(
                f"This config needs about {gib(need)} of GPU memory ({est.text()}), but the "
                f"GPU has {gib(free)} free, so it was refused before anything was "
                f"allocated. {way_out}")
