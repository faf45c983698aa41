"""A user-defined task family, referenced by import path in the tests
(``example_tasks:Mirror``), exactly as a user's own module would be."""

import torch

from rasp_hydra.tasks import Family, Selector
from rasp_hydra.tasks.reverse import reverse, select_flip


class Mirror(Family):
    """At each position: "1" if the token equals its mirror image x[n-1-q], else "0"
    ("abca" -> 1 0 0 1)."""

    name = "mirror"
    sizes = (2, 10)
    default_size = 2
    layers, heads = 2, 1  # length, then flip (as in reverse)
    description = "does each token equal its mirror image?"

    def make_out_classes(self):
        return ("0", "1")

    def outputs(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return (x == reverse(x, lengths)).long()

    def selectors(self):
        return {(1, 0): Selector(select_flip, "flip", look_at_bos=False)}
