"""The set of values an s-op can take, inferred from the input values and the longest
input (as tracr infers value sets), so that a program's output classes are known before
any data is built.

Rules: an input s-op takes its conversion of every input value; ``indices`` 0..n-1; a
constant its value; an elementwise op its function of every combination of its inputs'
values (combinations on which the function raises are skipped: they can't occur on a
valid input); an aggregate its values' values, its default (unless a string default of a
numeric s-op or the reverse: mixing those is an error on any input), and, for numbers,
every mean of 2..n selected values. Means are enumerated exactly when the values are at
most two integers (or bools) ``a``, ``b``: ``(j * b + (m - j) * a) * 1.0 / m``, as the
reference computes them; other means are not enumerable and make the set unknown
(``None``), as does a combination count over ``MAX_COMBINATIONS``. The result may hold
values that never occur (a default that no query falls back to); it never misses one,
except that values unknown make the set ``None``.

    >>> from rasp_hydra.rasp import tokens, indices, select, aggregate, length
    >>> sorted(value_set(length, "ab", max_len=4))
    [1, 2, 3, 4]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from .graph import ancestors
from .lang import CONVERSIONS, Aggregate, Input, Map, RASPEvalError, RASPExpr, Select, SOp

MAX_COMBINATIONS = 2_000_000

ValueSet = dict  # value_key(v) -> v


def value_key(v: Any) -> tuple:
    """A value's identity in a set or a table: equal Python values of different types
    (1, 1.0, True) stay apart, as the REPL shows them apart."""
    return (type(v), v)


def intern(values: Sequence) -> tuple[list, list[int]]:
    """(the distinct values by ``value_key``, in first-seen order; each value's index there)."""
    index: dict[tuple, int] = {}
    table: list = []
    codes = []
    for v in values:
        k = value_key(v)
        if k not in index:
            index[k] = len(table)
            table.append(v)
        codes.append(index[k])
    return table, codes


def _vs(values) -> ValueSet:
    return {value_key(v): v for v in values}


def _means(values: list, max_len: int) -> list | None:
    nums = [v for v in values if not isinstance(v, str)]
    if not nums or all(isinstance(v, bool) for v in nums):
        return []  # strings or only bools: averaging is an error, no value
    if len(values) != len(nums):
        return []  # a string among the values: an error too
    distinct = sorted({int(v) if isinstance(v, bool) else v for v in nums})
    if any(isinstance(v, float) for v in distinct) or len(distinct) > 2:
        return None
    a, b = distinct[0], distinct[-1]
    return [(j * b + (m - j) * a) * 1.0 / m for m in range(2, max_len + 1)
            for j in range(m + 1)]


def value_sets(outputs: Sequence[RASPExpr], input_values: Sequence, max_len: int
               ) -> dict[int, ValueSet | None]:
    """Value set of every s-op the outputs depend on (``id(node)`` -> set or None)."""
    sets: dict[int, ValueSet | None] = {}
    for node in ancestors(outputs):
        if isinstance(node, Select):
            continue
        if isinstance(node, Input):
            if node.kind == "indices":
                sets[id(node)] = _vs(range(max_len))
                continue
            try:
                sets[id(node)] = _vs(CONVERSIONS[node.kind](v) for v in input_values)
            except (TypeError, ValueError) as e:
                raise RASPEvalError(
                    f"{node.name} applies {node.kind}() to each input value, which fails "
                    f"on the input values {list(input_values)!r} ({e}).") from None
        elif isinstance(node, Map) and node.is_constant:
            sets[id(node)] = _vs([node.value])
        elif isinstance(node, Map):
            children = [sets[id(c)] for c in node.children]
            if any(c is None for c in children):
                sets[id(node)] = None
                continue
            total = 1
            for c in children:
                total *= len(c)
            if total > MAX_COMBINATIONS:
                sets[id(node)] = None
                continue
            out = {}
            for args in itertools.product(*(list(c.values()) for c in children)):
                try:
                    v = node.fn(*args)
                except Exception:
                    continue
                out[value_key(v)] = v
            sets[id(node)] = out
        elif isinstance(node, Aggregate):
            src = sets[id(node.sop)]
            if src is None:
                sets[id(node)] = None
                continue
            values = list(src.values())
            means = _means(values, max_len)
            if means is None:
                sets[id(node)] = None
                continue
            out = dict(src)
            out.update(_vs(means))
            d = node.default
            if not values or isinstance(d, str) == all(isinstance(v, str) for v in values):
                out[value_key(d)] = d
            sets[id(node)] = out
    return sets


def value_set(sop: SOp, input_values: Sequence, max_len: int) -> list[Any] | None:
    """The values ``sop`` can take on inputs of 1..max_len elements of ``input_values``
    (None: not enumerable, see the module docstring)."""
    s = value_sets([sop], input_values, max_len)[id(sop)]
    return None if s is None else list(s.values())


def sort_values(values) -> list:
    """Numbers (bools as numbers) ascending, ints before equal floats, then strings by
    code point."""
    def key(v):
        if isinstance(v, str):
            return (1, 0, v, 0)
        return (0, float(v), "", 0 if isinstance(v, bool) else 1 if isinstance(v, int) else 2)
    return sorted(values, key=key)
