"""``hist2_{k}`` ("double histogram"): at each position, how many distinct tokens occur
exactly as many times as this position's token, capped at 10. Output classes "0".."10"
("aabc" -> 1 1 2 2: one token occurs twice, two tokens occur once).

RASP (paper, 2 layers, 2 heads; the original's target selectors)::

    same      = select(tokens, tokens, ==)                  # layer 0 head 0
    count     = selector_width(same)
    earlier   = select(tokens, tokens, ==) and select(indices, indices, <)
                                                            # layer 0 head 1
    first     = selector_width(earlier) == 0
    same_freq = select(count, count, ==) and first[k]       # layer 1 head 0
    hist2     = selector_width(same_freq)
"""

from __future__ import annotations

import torch

from .base import Family, Selector
from .hist import CAP, COUNT_CLASSES
from .primitives import (
    compare,
    first_occurrence,
    select_earlier,
    select_same_token,
    token_counts,
    valid,
)


def select_same_earlier(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Layer 0 head 1: x[q] == x[k] and k < q (an earlier copy of my token).

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(select_same_earlier(*ids("abaa")))
    0000
    0000
    1000
    1010
    """
    return select_same_token(x, lengths) & select_earlier(x, lengths)


def select_same_count_first(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Layer 1 head 0: count(x[k]) == count(x[q]) and first(k).

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(select_same_count_first(*ids("aabc")))
    1000
    1000
    0011
    0011
    """
    c = token_counts(x, lengths)
    key_ok = first_occurrence(x, lengths) & valid(x, lengths)
    return compare(c, c, torch.eq) & key_ok[:, None, :]


def hist2(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Output ids: number of distinct tokens whose count equals count(x[q]), capped at 10
    (O(B n): a histogram of the per-token counts, read back at each position's count).

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(hist2(*ids("aabcdd")))
    2 2 2 2 2 2
    >>> show(hist2(*ids("abcaa")))
    1 2 2 1 1
    """
    B, n = x.shape
    real = valid(x, lengths)
    per_token = torch.zeros(B, int(x.max()) + 1, dtype=torch.long, device=x.device)
    per_token.scatter_add_(1, x, real.long())  # [B, V]: count of each token id
    tokens_with_count = torch.zeros(B, n + 1, dtype=torch.long, device=x.device)
    tokens_with_count.scatter_add_(1, per_token.clamp(max=n), (per_token > 0).long())
    return tokens_with_count.gather(1, per_token.gather(1, x).clamp(max=n)).clamp(max=CAP)


class Hist2(Family):
    name = "hist2"
    layers, heads = 2, 2
    description = f"number of distinct tokens with my token's count (capped at {CAP})"

    def make_out_classes(self):
        return COUNT_CLASSES

    def outputs(self, x, lengths):
        return hist2(x, lengths)

    def selectors(self):
        return {
            (0, 0): Selector(select_same_token, "same token"),
            (0, 1): Selector(select_same_earlier, "same token, earlier"),
            (1, 0): Selector(select_same_count_first, "same count, first"),
        }

    def compute_selectors(self, x, lengths, heads):
        same = select_same_token(x, lengths)
        out = {(0, 0): same}
        if (0, 1) in heads:
            out[(0, 1)] = same & select_earlier(x, lengths)
        if (1, 0) in heads:
            out[(1, 0)] = select_same_count_first(x, lengths)
        return {h: out[h] for h in heads}
