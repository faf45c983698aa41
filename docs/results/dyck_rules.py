"""How much of a Dyck test set do shallow rules already get right?

Prints, for the quick preset's lengths (1..16 and 1..48), the token accuracy of two rules
that a transformer with one layer fewer than RASP predicts can compute:

- Dyck-1, one layer: the prefix balance (mean of opens minus closes over the prefix, one
  attention) says F when negative, T when zero, P otherwise. It misses an earlier dip
  below zero that the balance has since climbed out of.
- Dyck-2, two layers: the per-type prefix balances (layer 1) and whether one of them was
  ever negative (layer 2). It misses mismatched closers such as "([)]", which need the
  third layer.

    python docs/results/dyck_rules.py
"""

import torch

from rasp_hydra.data import build_split
from rasp_hydra.tasks import get_task
from rasp_hydra.tasks.primitives import valid

P, T, F = 0, 1, 2
SAMPLES = 6000


def rule_accuracy(pairs: int, max_len: int, ever: bool) -> float:
    task = get_task(f"dyck{pairs}_ptf")
    split = build_split(task, SAMPLES, seed=0, split="test", max_len=max_len)
    x, y, n = split.tokens, split.targets, split.lengths
    real = valid(x, n)
    kinds = torch.arange(pairs)  # pair p is tokens (2p, 2p+1); the neutral comes last
    opens = ((x[..., None] == 2 * kinds) & real[..., None]).int()
    closes = ((x[..., None] == 2 * kinds + 1) & real[..., None]).int()
    balance = (opens - closes).cumsum(1)  # [B, n, pairs], after each position
    negative = balance.min(-1).values < 0
    if ever:
        negative = negative.int().cummax(1).values.bool()
    guess = torch.where(negative, F, torch.where(balance.sum(-1) == 0, T, P))
    return ((guess == y) & real).sum().item() / real.sum().item()


if __name__ == "__main__":
    print(f"token accuracy of shallow rules on {SAMPLES} test-split samples (seed 0)")
    for max_len in (16, 48):
        d1 = rule_accuracy(1, max_len, ever=False)
        d2 = rule_accuracy(2, max_len, ever=True)
        print(f"1..{max_len}: Dyck-1 one-layer balance rule {100 * d1:.1f}%, "
              f"Dyck-2 two-layer balances-ever-negative rule {100 * d2:.1f}%")
