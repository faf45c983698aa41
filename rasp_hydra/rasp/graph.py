"""A program's graph, without evaluating it: the layer that compilation, value sets and
the batched evaluator share (so neither of the first two imports torch).

    >>> from rasp_hydra.rasp.lang import tokens, indices, select, aggregate
    >>> flip = select(indices, indices, "==")
    >>> [n.name for n in ancestors([aggregate(flip, tokens).named("out")])]
    ['tokens', 'indices', 'select(indices, indices, ==)', 'out']
"""

from __future__ import annotations

from collections.abc import Iterable

from .lang import RASPExpr


def ancestors(outputs: Iterable[RASPExpr]) -> list[RASPExpr]:
    """Every node the outputs are computed from (themselves included), in creation
    order, which is a topological order."""
    seen: dict[int, RASPExpr] = {}
    stack = list(outputs)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(node.children)
    return sorted(seen.values(), key=lambda n: n.id)
