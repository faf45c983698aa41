"""``reverse_{k}``: the input reversed ("abc" -> "cba").

RASP (paper, 2 layers, 1 head)::

    length  = selector_width(select(tokens, tokens, true))   # layer 0
    opp_idx = length - indices - 1
    flip    = select(indices, opp_idx, ==)                   # layer 1
    reverse = aggregate(flip, tokens)

The original defines no target selector for reverse. ``flip`` (layer 1, head 0) is a
reference selector added by this project; it selects exactly one key per query, so it
does not look at BOS.
"""

from __future__ import annotations

import torch

from .base import Family, Selector
from .primitives import indices


def select_flip(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reference selector "flip": k == length - 1 - q.

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(select_flip(*ids("abc", "ab")))
    001
    010
    100
    """
    B, n = x.shape
    opp = lengths[:, None] - 1 - indices(x)[None, :]  # [B, n]: opp_idx of each query
    out = torch.zeros(B, n, n, dtype=torch.bool, device=x.device)
    # O(B n) scatter; padded rows (q >= length) get a True in column 0, which is fine:
    # what a selector holds in padding does not matter (the Task masks it)
    return out.scatter_(2, opp.clamp(min=0)[:, :, None], True)


def reverse(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Output ids: x[length - 1 - q] (output classes are the alphabet, so ids carry over).

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(reverse(*ids("abcd")))
    3 2 1 0
    """
    opp = (lengths[:, None] - 1 - indices(x)[None, :]).clamp(min=0)
    return x.gather(1, opp)


class Reverse(Family):
    name = "reverse"
    layers, heads = 2, 1
    description = "the input reversed"

    def outputs(self, x, lengths):
        return reverse(x, lengths)

    def selectors(self):
        return {(1, 0): Selector(select_flip, "flip", look_at_bos=False, reference=True)}
