"""``sort_by_freq_{k}`` ("most-freq"): the distinct tokens of the input ordered by
descending count, ties broken by first occurrence (earlier first), then BOS repeated to
fill the length ("abcbc" -> "bca§§"). Output classes: the alphabet plus "§".

RASP (paper, 3 layers, 2 heads; the original's target selectors)::

    same    = select(tokens, tokens, ==)                    # layer 0 head 0
    count   = selector_width(same)
    earlier = same and select(indices, indices, <)          # layer 0 head 1
    first   = selector_width(earlier) == 0
    score   = count if first else count - 202               # copies rank below firsts
    comes_before = select(score, score, >) or (== and k < q)  # layer 1 head 0
    pos     = selector_width(comes_before)
    place   = select(pos, indices, ==)                      # layer 2 head 0
    out     = aggregate(place, tokens), BOS where nothing is placed
"""

from __future__ import annotations

import torch

from .base import Family, Selector
from .hist2 import select_same_earlier
from .primitives import (
    first_occurrence,
    indices,
    select_before_in,
    select_place,
    select_same_token,
    stable_place,
    token_counts,
    valid,
)

DEMOTE = 202  # subtracted from the count of a non-first occurrence


def freq_score(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """score(j) = count(x[j]) if first(j) else count(x[j]) - 202.

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(freq_score(*ids("abcbc")))
    1 2 2 -200 -200
    """
    c = token_counts(x, lengths)
    return torch.where(first_occurrence(x, lengths), c, c - DEMOTE)


def freq_place(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each position's place in the stable sort by descending score (padding last): the
    width of its row under "comes before".

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(freq_place(*ids("abcbc")))
    2 0 1 3 4
    """
    s = freq_score(x, lengths)
    key = torch.where(valid(x, lengths), -s, torch.full_like(s, 10 * DEMOTE))
    return stable_place(key)


def select_comes_before(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Layer 1 head 0 "comes before": score(k) > score(q), or equal and k < q
    (real keys only); i.e. k comes earlier than q in the stable sort by -score.

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(select_comes_before(*ids("abb")))
    010
    000
    110
    """
    return select_before_in(freq_place(x, lengths)) & valid(x, lengths)[:, None, :]


def select_freq_place(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Layer 2 head 0: q == pos(k), pos(k) = row k's width under "comes before".

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(select_freq_place(*ids("abb")))
    010
    100
    001
    """
    return select_place(freq_place(x, lengths))


class SortByFreq(Family):
    name = "sort_by_freq"
    layers, heads = 3, 2
    description = "distinct tokens by descending count, then BOS"

    def make_out_classes(self):
        return tuple(self.alphabet) + ("§",)

    def outputs(self, x, lengths):
        """O(B n log n): stable sort of -score (padding last); the first
        ``distinct`` places get the tokens, the rest BOS."""
        real = valid(x, lengths)
        s = freq_score(x, lengths)
        key = torch.where(real, -s, torch.full_like(s, 10 * DEMOTE))
        order = torch.sort(key, dim=1, stable=True).indices
        distinct = (first_occurrence(x, lengths) & real).sum(1, keepdim=True)
        placed = x.gather(1, order)
        return torch.where(indices(x)[None, :] < distinct, placed,
                           torch.full_like(placed, len(self.alphabet)))

    def selectors(self):
        return {
            (0, 0): Selector(select_same_token, "same token"),
            (0, 1): Selector(select_same_earlier, "same token, earlier"),
            (1, 0): Selector(select_comes_before, "comes before"),
            (2, 0): Selector(select_freq_place, "place"),
        }

    def compute_selectors(self, x, lengths, heads):
        out = {}
        if (0, 0) in heads or (0, 1) in heads:
            same = select_same_token(x, lengths)
            out[(0, 0)] = same
            out[(0, 1)] = same & (indices(x)[None, :] < indices(x)[:, None])
        if (1, 0) not in heads and (2, 0) not in heads:
            return {h: out[h] for h in heads}
        if (1, 0) in heads or (2, 0) in heads:
            place = freq_place(x, lengths)
            out[(1, 0)] = select_before_in(place)  # padded keys: masked by the Task
            out[(2, 0)] = select_place(place)
        return {h: out[h] for h in heads}
