"""Compiling a RASP program to a transformer budget: which attention layer computes each
s-op, and which select each head of each layer computes.

The schedule is the reference REPL's analysis (``RASP_support/analyse.py``, greedy: every
s-op as early as possible), with depths:

- inputs (``tokens*``, ``indices``) and constants: 0 (the embedding);
- an elementwise op: the largest depth of its inputs (it rides in the feed-forward part
  of that layer; before the first attention layer, in the embedding);
- a select: one more than the largest depth of the s-ops it compares (of all its parts,
  for a composed ``and``/``or``/``not``);
- an aggregate: the larger of its select's depth and one more than its values' depth.

Depth d >= 1 is attention layer d - 1 (0-based, as the model's layers). The heads of a
layer are the distinct select OBJECTS that aggregates of that depth use: one select
feeding several aggregates of a layer is one head, the same select written out twice is
two (as the reference, which compares selects by identity), and a select used by
aggregates on two layers is a head on each. Heads are numbered in creation order. The
budget is (layers, the most heads of any layer).

    >>> from rasp_hydra.rasp import tokens, indices, select, aggregate, length
    >>> flip = select(indices, length - indices - 1, "==").named("flip")
    >>> c = compile_program(aggregate(flip, tokens).named("reverse"))
    >>> c.budget, c.budget.max_heads, c.head_selects[(1, 0)].name
    (Budget(layers=2, heads=(1, 1)), 1, 'flip')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .graph import ancestors
from .lang import Aggregate, Input, Map, RASPExpr, RASPTypeError, Select, SOp


class Budget(NamedTuple):
    """What a program costs: attention layers and heads per layer; a model needs
    ``layers`` layers of ``max_heads`` heads."""

    layers: int
    heads: tuple[int, ...]

    @property
    def max_heads(self) -> int:
        return max(self.heads, default=0)


def depths(outputs) -> dict[int, int]:
    """Depth of every node the outputs depend on, keyed by ``id(node)``."""
    d: dict[int, int] = {}
    for node in ancestors(outputs):
        if isinstance(node, Input) or (isinstance(node, Map) and node.is_constant):
            d[id(node)] = 0
        elif isinstance(node, Map):
            d[id(node)] = max(d[id(c)] for c in node.children)
        elif isinstance(node, Select):
            d[id(node)] = (max(d[id(s)] for s in node.leaf_sops()) + 1 if not node.parts
                           else max(d[id(p)] for p in node.parts))
        elif isinstance(node, Aggregate):
            d[id(node)] = max(d[id(node.select)], d[id(node.sop)] + 1)
        else:
            raise RASPTypeError(f"Cannot compile {node!r}: not a RASP s-op or selector.")
    return d


@dataclass
class Compiled:
    """The compiled budget of a program (see the module docstring).

    ``heads[l]`` is the number of heads of layer l; ``head_selects[(l, h)]`` the select
    head h of layer l computes; ``sops_by_layer[l]`` the s-ops computed in layer l (-1:
    in the embedding, before the first layer), in creation order."""

    outputs: tuple[RASPExpr, ...]
    layers: int
    heads: tuple[int, ...]
    head_selects: dict[tuple[int, int], Select]
    sops_by_layer: dict[int, list[SOp]] = field(default_factory=dict)
    depth: dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def budget(self) -> Budget:
        return Budget(self.layers, tuple(self.heads))

    def layer_of(self, node: RASPExpr) -> int:
        """The 0-based layer computing ``node`` (-1: the embedding)."""
        return self.depth[id(node)] - 1

    def describe(self) -> str:
        """A few lines: the budget, then per layer its heads' selects and its s-ops."""
        names = ", ".join(o.name for o in self.outputs)
        per = "/".join(str(h) for h in self.heads) or "-"
        lines = [f"{names}: {self.layers} layers, {self.budget.max_heads} heads (heads per "
                 f"layer {per})"]
        for layer in range(-1, self.layers):
            sops = ", ".join(s.name for s in self.sops_by_layer.get(layer, []))
            if layer == -1:
                lines.append(f"  embedding: {sops or '-'}")
                continue
            lines.append(f"  layer {layer}:")
            for h in range(self.heads[layer]):
                lines.append(f"    head {h}: {self.head_selects[(layer, h)].name}")
            lines.append(f"    s-ops: {sops or '-'}")
        return "\n".join(lines)


def compile_program(*outputs: RASPExpr) -> Compiled:
    """Schedule the program computing ``outputs`` (s-ops or selects) onto layers."""
    if not outputs:
        raise RASPTypeError("compile_program needs at least one s-op or select.")
    for o in outputs:
        if not isinstance(o, SOp | Select):
            raise RASPTypeError(f"Cannot compile {o!r}: not a RASP s-op or selector.")
    d = depths(outputs)
    nodes = ancestors(outputs)
    sops = [n for n in nodes if isinstance(n, SOp)]
    layers = max((d[id(s)] for s in sops), default=0)
    if any(isinstance(o, Select) for o in outputs):  # a select output needs its layer
        layers = max([layers] + [d[id(o)] for o in outputs if isinstance(o, Select)])
    by_layer: dict[int, list[SOp]] = {}
    for s in sops:
        by_layer.setdefault(d[id(s)] - 1, []).append(s)
    head_selects: dict[tuple[int, int], Select] = {}
    heads = []
    for layer in range(layers):
        sels: dict[int, Select] = {}
        for s in by_layer.get(layer, []):
            if isinstance(s, Aggregate):
                sels.setdefault(id(s.select), s.select)
        for o in outputs:  # a select asked for itself is a head of its layer
            if isinstance(o, Select) and d[id(o)] - 1 == layer:
                sels.setdefault(id(o), o)
        ordered = sorted(sels.values(), key=lambda x: x.id)
        heads.append(len(ordered))
        for h, sel in enumerate(ordered):
            head_selects[(layer, h)] = sel
    return Compiled(tuple(outputs), layers, tuple(heads), head_selects, by_layer, d)
