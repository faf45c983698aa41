"""``hist_{k}``: at each position, how many times its token occurs, capped at 10.
Output classes "0".."10" ("aba" -> 2 1 2).

RASP (paper, with BOS: 1 layer, 1 head)::

    same = select(tokens, tokens, ==)      # layer 0 (BOS always selected)
    hist = selector_width(same)

The original defines no target selector for hist. "same token" (layer 0, head 0, looks
at BOS: selector_width is computed from the attention paid to BOS) is a reference
selector added by this project.
"""

from __future__ import annotations

import torch

from .base import Family, Selector
from .primitives import select_same_token, token_counts

# The largest count a class names: hist and hist2 output the classes "0".."10". (The shipped
# programs state it in rasp/programs/; tests/test_rasp_text.py checks they agree.)
CAP = 10
COUNT_CLASSES = tuple(str(i) for i in range(CAP + 1))


def hist(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Output ids: count of x[q] in the sequence, capped at 10 (id i is class "i").

    >>> from rasp_hydra.tasks.primitives import ids, show
    >>> show(hist(*ids("abbcbb")))
    1 4 4 1 4 4
    >>> show(hist(*ids("a" * 12)))
    10 10 10 10 10 10 10 10 10 10 10 10
    """
    return token_counts(x, lengths).clamp(max=CAP)


class Hist(Family):
    name = "hist"
    layers, heads = 1, 1
    description = f"count of each position's token (capped at {CAP})"

    def make_out_classes(self):
        return COUNT_CLASSES

    def outputs(self, x, lengths):
        return hist(x, lengths)

    def selectors(self):
        return {(0, 0): Selector(select_same_token, "same token", reference=True)}
