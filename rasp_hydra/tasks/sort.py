"""``sort_{k}``: the input sorted by Unicode code point, duplicates kept
("bca" -> "abc"; with k = 100, "aA0" -> "0Aa" since "0" < "A" < "a" as code points).

RASP (paper, 2 layers, 1 head; the original's target selectors)::

    before = select(tokens, tokens, <) or (== and indices <)   # layer 0 head 0
    pos    = selector_width(before)                            # where x[k] goes
    place  = select(pos, indices, ==)                          # layer 1 head 0
    sort   = aggregate(place, tokens)

"place" selects exactly one key per query and does not look at BOS.
"""

from __future__ import annotations

from functools import cached_property

import torch

from .base import Family, Selector
from .primitives import select_before_in, select_place, stable_place


def select_before(r: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Layer 0 head 0 "before": r[k] < r[q], or r[k] == r[q] and k < q, where r is each
    position's code-point rank. That is "k comes before q in the stable sort by rank",
    so it is computed as one comparison of places in that sort.

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(select_before(*ids("bab")))
    010
    000
    110
    """
    return select_before_in(stable_place(r))


def select_sort_place(r: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Layer 1 head 0 "place": q == pos(k), pos(k) = row k's width under "before"
    (= k's place in the stable sort by rank).

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(select_sort_place(*ids("bab")))
    010
    100
    001
    """
    return select_place(stable_place(r))


def sort_ranks(r: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The ranks sorted ascending (padding, which has the largest rank, stays last).

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(sort_ranks(*ids("cabab")))
    0 0 1 1 2
    """
    return torch.sort(r, dim=1).values


class Sort(Family):
    name = "sort"
    layers, heads = 2, 1
    description = "the input sorted by code point"

    @cached_property
    def order(self) -> list[int]:
        """Input ids in code-point order."""
        return sorted(range(len(self.alphabet)), key=lambda i: self.alphabet[i])

    @cached_property
    def rank(self) -> torch.Tensor:
        """Input id -> code-point rank; BOS and padding rank after every token.
        Built on first use, so that listing tasks needs no torch."""
        k = len(self.alphabet)
        rank = torch.empty(k + 2, dtype=torch.long)
        rank[torch.tensor(self.order, dtype=torch.long)] = torch.arange(k)
        rank[k:] = k
        return rank

    @cached_property
    def id_of_rank(self) -> torch.Tensor:
        k = len(self.alphabet)
        return torch.tensor(self.order + [k, k], dtype=torch.long)

    def ranks(self, x):
        return self.rank[x]

    def outputs(self, x, lengths):
        return self.id_of_rank[sort_ranks(self.ranks(x), lengths)]

    def selectors(self):
        return {
            (0, 0): Selector(lambda x, n: select_before(self.ranks(x), n), "before"),
            (1, 0): Selector(lambda x, n: select_sort_place(self.ranks(x), n), "place",
                             look_at_bos=False),
        }

    def compute_selectors(self, x, lengths, heads):
        place = stable_place(self.ranks(x))
        out = {}
        if (0, 0) in heads:
            out[(0, 0)] = select_before_in(place)
        if (1, 0) in heads:
            out[(1, 0)] = select_place(place)
        return out
