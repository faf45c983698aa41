"""A plain evaluator of RASP programs, one input and one position at a time, written for
clarity rather than speed: the semantics of docs/rasp_text.md (the reference REPL's) and
nothing else, against which the batched evaluator (``rasp_hydra.rasp.evaluate``) is
checked. Every node of ``rasp_hydra.rasp.lang`` is one of four kinds (the library's
``length``, ``selector_width``, ``where``, ... are built from them): an input, an
elementwise map (a constant is a map of nothing), a select (a comparison, or and/or/not
of selects) and an aggregate.

    >>> from rasp_hydra.rasp import tokens, indices, select, aggregate, length
    >>> evaluate(aggregate(select(indices, length - indices - 1, "=="), tokens), "abc")
    ['c', 'b', 'a']

An error is raised as the batched evaluator's class, with ``at``: (the node's creation
number, 0 for a failing computation or 1 for a sequence mixing strings with other
values), so that a batch's error is the one of its row that fails first.
"""

from __future__ import annotations

from rasp_hydra.rasp.lang import (
    Aggregate,
    Input,
    Map,
    RASPAggregateError,
    RASPEvalError,
    RASPExpr,
    Select,
)

ATOMS = (bool, int, float, str)
CONVERT = {"str": str, "int": int, "float": float, "bool": bool, "asis": lambda v: v}
COMPARE = {  # (key, query) -> selected
    "==": lambda k, q: k == q, "!=": lambda k, q: not k == q, "<": lambda k, q: k < q,
    ">": lambda k, q: k > q, "<=": lambda k, q: k <= q, ">=": lambda k, q: k >= q,
    "true": lambda k, q: True, "false": lambda k, q: False,
}


def fail(node: RASPExpr, stage: int, message: str, error=RASPEvalError):
    err = error(f"{node.name}: {message}")
    err.at = (node.id, stage)
    raise err


def evaluate(expr: RASPExpr, inp) -> list:
    """``expr`` on one input (a string or a list of atoms): an s-op's value at each
    position, or a select's [query][key] booleans. Every node the output is computed
    from is evaluated, in creation order, as a batch evaluates them."""
    inp = list(inp)
    values: dict[int, list] = {}
    for node in nodes_of(expr):
        values[id(node)] = evaluate_node(node, values, inp)
    return values[id(expr)]


def nodes_of(expr: RASPExpr) -> list[RASPExpr]:
    found: dict[int, RASPExpr] = {}

    def visit(node):
        if id(node) not in found:
            found[id(node)] = node
            for child in node.children:
                visit(child)

    visit(expr)
    return sorted(found.values(), key=lambda n: n.id)


def evaluate_node(node: RASPExpr, values: dict[int, list], inp: list) -> list:
    if isinstance(node, Input):
        out = input_values(node, inp)
    elif isinstance(node, Map) and node.is_constant:
        return [node.value for _ in inp]
    elif isinstance(node, Map):
        out = [apply(node, [values[id(c)][i] for c in node.children]) for i in range(len(inp))]
    elif isinstance(node, Select):
        return selection(node, values, len(inp))
    elif isinstance(node, Aggregate):
        out = aggregate(node, values[id(node.select)], values[id(node.sop)])
    else:
        raise TypeError(f"not a RASP node: {node!r}")
    if any(isinstance(v, str) for v in out) and not all(isinstance(v, str) for v in out):
        fail(node, 1, f"a sequence mixes strings with other values: {out}")
    return out


def input_values(node: Input, inp: list) -> list:
    """``indices``: 0..n-1; ``tokens_*``: the conversion of each input element."""
    if node.kind == "indices":
        return list(range(len(inp)))
    out = []
    for v in inp:
        try:
            v = CONVERT[node.kind](v)
        except (TypeError, ValueError) as e:
            fail(node, 0, f"{node.kind}({v!r}) fails: {e}")
        if not isinstance(v, ATOMS):
            fail(node, 0, f"the input value {v!r} is not an atom")
        out.append(v)
    return out


def apply(node: Map, args: list):
    """The elementwise function at one position: an atom, or an error."""
    try:
        v = node.fn(*args)
    except Exception as e:
        fail(node, 0, f"the function raised {type(e).__name__} on {args}: {e}")
    if not isinstance(v, ATOMS):
        fail(node, 0, f"the function gave {v!r}, not an atom")
    return v


def selection(node: Select, values: dict[int, list], n: int) -> list[list[bool]]:
    """[query][key]: a comparison of each (key, query) pair of values, or and/or/not of
    the parts' selections."""
    if node.op == "and":
        a, b = (values[id(p)] for p in node.parts)
        return [[x and y for x, y in zip(ra, rb, strict=True)] for ra, rb in zip(a, b, strict=True)]
    if node.op == "or":
        a, b = (values[id(p)] for p in node.parts)
        return [[x or y for x, y in zip(ra, rb, strict=True)] for ra, rb in zip(a, b, strict=True)]
    if node.op == "not":
        return [[not x for x in row] for row in values[id(node.parts[0])]]
    keys, queries = values[id(node.keys)], values[id(node.queries)]
    try:
        return [[bool(COMPARE[node.op](k, q)) for k in keys] for q in queries]
    except TypeError as e:  # an order between a string and a number
        fail(node, 0, f"{node.op} compares strings with numbers: {e}")


def aggregate(node: Aggregate, selected: list[list[bool]], values: list) -> list:
    """Per query, over the selected keys' values: none -> the default; one -> that value;
    several -> their mean, ``sum * 1.0 / count``, which needs a numeric sequence (no
    string anywhere in it, and not only bools)."""
    numeric = (not any(isinstance(v, str) for v in values)
               and not all(isinstance(v, bool) for v in values))
    out = []
    for q, row in enumerate(selected):
        chosen = [v for v, s in zip(values, row, strict=True) if s]
        if not chosen:
            out.append(node.default)
        elif len(chosen) == 1:
            out.append(chosen[0])
        elif not numeric:
            fail(node, 0, f"query {q} averages {len(chosen)} keys of {values}",
                 RASPAggregateError)
        else:
            out.append(sum(chosen) * 1.0 / len(chosen))
    return out
