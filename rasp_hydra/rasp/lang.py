"""The RASP program object model and its Python API (tracr-like builders).

A RASP program is a DAG of two kinds of nodes: s-ops (``SOp``: one value per position)
and selectors (``Select``: one boolean per (query, key) pair). Nodes are built by the
functions below, evaluated by ``rasp_hydra.rasp.evaluate`` and scheduled onto attention
layers by ``rasp_hydra.rasp.compile``; this module knows nothing of either.

    >>> from rasp_hydra.rasp import evaluate, length
    >>> flip = select(indices, length - indices - 1, "==").named("flip")
    >>> reverse = aggregate(flip, tokens).named("reverse")
    >>> evaluate(reverse, "abc")
    ['c', 'b', 'a']

Semantics, matched to the reference REPL (github tech-srl/RASP, ``RASP_support/``):

- ``tokens_str`` (= ``tokens``), ``tokens_int``, ``tokens_float``, ``tokens_bool`` apply
  ``str``, ``int``, ``float``, ``bool`` to each input element; ``tokens_asis`` keeps it.
  ``indices`` is 0..n-1. All four and constants are at depth 0.
- ``select(keys, queries, op)`` selects key k for query q iff ``keys[k] op queries[q]``
  (``"<"`` selects the keys smaller than the query). ``"!="`` is ``not ==``. Values
  compare as Python compares them: numbers (bool, int, float) numerically, strings by
  code point; ``==`` between a string and a number is False, an order between them is
  an error. The extra ops ``"true"``/``"false"`` select everything/nothing.
- Selector ``and``/``or``/``not`` (``&``, ``|``, ``~``) make ONE new select whose keys and
  queries are those of its parts (one attention head), as the reference composes them.
- ``aggregate(sel, sop, default=None)`` per query: no key selected -> the default (0
  when None); exactly one -> that key's value unchanged (an int stays an int, a string
  stays a string); several -> the mean ``sum(values) * 1.0 / count`` as a float. The
  mean is an error unless the whole sequence (every position, selected or not) is
  numeric: strings are an error, and so is a sequence of only bools (the reference's
  type check; bools mixed with numbers count as numbers).
- A sequence whose values mix strings with numbers or bools is an error (the reference's
  ``Sequence`` type check), e.g. a string aggregate with the int default 0 on a row
  where some query selects nothing.
- Elementwise operations (``map``/``zipmap`` with any Python function, the operators
  ``+ - * / // % **``, comparisons, unary ``- + abs``, ``round``) apply the Python
  operation per position: ``/`` gives floats, ``round`` is Python's (banker's rounding,
  float -> int), ``%`` and ``//`` are Python's (floored). Constants may stand on either
  side (``1 - x``). ``sop_and``/``sop_or``/``sop_not`` give bools from Python truthiness
  (the reference's ``tpland``/``tplor``/``tplnot``); ``where(c, x, y)`` is
  ``x if c else y`` with both branches computed; ``indicator(x)`` is ``1 if x else 0``.
- ``full_s``, ``length``, ``selector_width`` and ``selector_width_bos`` are not
  primitives: ``rasp_hydra.rasp.library`` builds them from their RASP definitions
  (``rasplib.rasp``, ``programs/bos.rasp``), so they compile to the selects they contain.

Every node has a ``name`` (settable, ``x.named("foo")`` returns x): text programs name
nodes by the variable they are assigned to; unnamed nodes get a readable default.
Nodes compare by identity: ``a == b`` on s-ops builds an s-op, so use ``is``.
"""

from __future__ import annotations

import builtins
import itertools
import operator
from collections.abc import Callable
from typing import Any

from rasp_hydra.errors import UserError

__all__ = [
    "RASPError", "RASPTypeError", "RASPEvalError", "RASPAggregateError",
    "RASPExpr", "SOp", "Select", "Input", "Map", "Aggregate", "SELECT_OPS", "ATOM_TYPES",
    "CONVERSIONS",
    "tokens", "tokens_str", "tokens_int", "tokens_float", "tokens_bool", "tokens_asis",
    "indices", "constant", "map", "zipmap", "select", "aggregate", "sel_and", "sel_or",
    "sel_not", "sop_and", "sop_or", "sop_not", "where", "indicator", "numerical_mean",
]


class RASPError(UserError):
    """Any error of a RASP program; the message is one paragraph for the user."""


class RASPTypeError(RASPError):
    """A program built from arguments of the wrong kind (found while building)."""


class RASPEvalError(RASPError):
    """A program that fails on a given input (found while evaluating)."""


class RASPAggregateError(RASPEvalError):
    """An aggregate that averages several keys of a non-numeric sequence."""


# The values a sequence holds, and what each ``tokens_*`` input (``Input.kind``) applies to
# an input element to get them.
ATOM_TYPES = (bool, int, float, str)
CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "str": str, "int": int, "float": float, "bool": bool, "asis": lambda v: v}

_next_id = itertools.count()


class RASPExpr:
    """A node of a RASP program: ``children`` are the nodes it is computed from."""

    label = "expr"

    def __init__(self, children: tuple[RASPExpr, ...], default_name: str):
        self.id = next(_next_id)  # creation order: a topological order of the DAG
        self.children = tuple(children)
        self._default_name = default_name
        self._name: str | None = None

    @property
    def name(self) -> str:
        return self._name if self._name is not None else self._default_name

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value)

    @property
    def is_named(self) -> bool:
        """Whether a name was given (by the user or a program's assignment)."""
        return self._name is not None

    def named(self, name: str):
        self.name = name
        return self

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# --- s-ops -------------------------------------------------------------------------------

def _as_sop(x: Any) -> SOp:
    if isinstance(x, SOp):
        return x
    if isinstance(x, Select):
        raise RASPTypeError(f"Expected an s-op or an atom, got the selector {x.name!r}; "
                            "a selector can only be aggregated or combined with and/or/not.")
    if isinstance(x, ATOM_TYPES):
        return constant(x)
    raise RASPTypeError(f"Expected an s-op or an atom (bool, int, float, str), got {x!r} "
                        f"of type {type(x).__name__}.")


def _nm(x: Any) -> str:
    return x.name if isinstance(x, RASPExpr) else repr(x)


def _binary(op: Callable, sym: str, rev: bool = False):
    def method(self, other):
        if rev:
            return map(lambda a, b: op(b, a), self, other,
                       name=f"({_nm(other)} {sym} {self.name})")
        return map(op, self, other, name=f"({self.name} {sym} {_nm(other)})")
    return method


class SOp(RASPExpr):
    """A sequence operation. Arithmetic, comparisons and ``round``/``abs`` apply
    elementwise and give new s-ops; atoms may stand on either side."""

    label = "s-op"

    __add__ = _binary(operator.add, "+")
    __radd__ = _binary(operator.add, "+", rev=True)
    __sub__ = _binary(operator.sub, "-")
    __rsub__ = _binary(operator.sub, "-", rev=True)
    __mul__ = _binary(operator.mul, "*")
    __rmul__ = _binary(operator.mul, "*", rev=True)
    __truediv__ = _binary(operator.truediv, "/")
    __rtruediv__ = _binary(operator.truediv, "/", rev=True)
    __floordiv__ = _binary(operator.floordiv, "//")
    __rfloordiv__ = _binary(operator.floordiv, "//", rev=True)
    __mod__ = _binary(operator.mod, "%")
    __rmod__ = _binary(operator.mod, "%", rev=True)
    __pow__ = _binary(operator.pow, "^")
    __rpow__ = _binary(operator.pow, "^", rev=True)
    __eq__ = _binary(operator.eq, "==")  # type: ignore[assignment]
    __ne__ = _binary(operator.ne, "!=")  # type: ignore[assignment]
    __lt__ = _binary(operator.lt, "<")
    __le__ = _binary(operator.le, "<=")
    __gt__ = _binary(operator.gt, ">")
    __ge__ = _binary(operator.ge, ">=")
    __hash__ = RASPExpr.__hash__

    def __neg__(self):
        return map(operator.neg, self, name=f"(-{self.name})")

    def __pos__(self):
        return map(operator.pos, self, name=f"(+{self.name})")

    def __abs__(self):
        return map(abs, self, name=f"abs({self.name})")

    def __round__(self, ndigits=None):
        if ndigits is None:
            return map(builtins.round, self, name=f"round({self.name})")
        return map(lambda a: builtins.round(a, ndigits), self,
                   name=f"round({self.name}, {ndigits})")

    def __bool__(self):
        raise RASPTypeError(
            f"The s-op {self.name!r} has no truth value while the program is built; use "
            "sop_and/sop_or/sop_not or where(c, x, y) for elementwise logic.")


class Input(SOp):
    """``tokens_*`` (``kind`` str, int, float, bool, asis) or ``indices``."""

    label = "input"

    def __init__(self, kind: str, name: str):
        super().__init__((), name)
        self.kind = kind


class Map(SOp):
    """``fn`` applied per position to the values of ``children`` (none: a constant)."""

    label = "map"

    def __init__(self, fn: Callable, children: tuple[SOp, ...], name: str,
                 value: Any = None):
        super().__init__(children, name)
        self.fn = fn
        self.is_constant = not children
        self.value = value  # the constant's value


class Aggregate(SOp):
    """Per query, the selected keys' values of ``sop`` (see the module docstring)."""

    label = "aggregate"

    def __init__(self, sel: Select, sop: SOp, default: Any, name: str):
        super().__init__((sel, sop), name)
        self.select, self.sop, self.default = sel, sop, default


# The comparisons of `select`: (key, query) -> selected. Their meaning on a batch lives in
# the evaluator (evaluate.py); the reference per position is tests/rasp_reference.py.
SELECT_OPS = ("==", "!=", "<", ">", "<=", ">=", "true", "false")


class Select(RASPExpr):
    """A selector. ``op`` is a comparison of ``SELECT_OPS`` (``keys``, ``queries`` set)
    or ``and``/``or``/``not`` of ``parts``; either way one head when aggregated."""

    label = "select"

    def __init__(self, op: str, children: tuple, name: str):
        super().__init__(children, name)
        self.op = op
        if op in SELECT_OPS:
            self.keys, self.queries = children
            self.parts: tuple[Select, ...] = ()
        else:
            self.keys = self.queries = None
            self.parts = tuple(children)

    def leaf_sops(self) -> list[SOp]:
        """The s-ops this select compares (of every part of a composition)."""
        if self.op in SELECT_OPS:
            return [self.keys, self.queries]
        return [s for p in self.parts for s in p.leaf_sops()]

    def __and__(self, other):
        return sel_and(self, other)

    def __or__(self, other):
        return sel_or(self, other)

    def __invert__(self):
        return sel_not(self)

    def __bool__(self):
        raise RASPTypeError(f"The selector {self.name!r} has no truth value; combine "
                            "selectors with sel_and/sel_or/sel_not (or & | ~).")


# --- builders --------------------------------------------------------------------------

tokens_str = Input("str", "tokens")
tokens = tokens_str
tokens_int = Input("int", "tokens_int")
tokens_float = Input("float", "tokens_float")
tokens_bool = Input("bool", "tokens_bool")
tokens_asis = Input("asis", "tokens_asis")
indices = Input("indices", "indices")


def constant(value: Any, name: str | None = None) -> Map:
    """An s-op with ``value`` at every position (depth 0, no head).

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(constant(3) + indices, "abc")
    [3, 4, 5]
    """
    if not isinstance(value, ATOM_TYPES):
        raise RASPTypeError(f"A constant must be a bool, int, float or str, got {value!r}.")
    return Map(lambda: value, (), repr(value) if name is None else name, value=value)


def map(fn: Callable, *sops: Any, name: str | None = None) -> Map:
    """Elementwise ``fn(v1, v2, ...)`` of one or more s-ops (atoms become constants).
    ``fn`` is called once per distinct tuple of values in a batch, so it must be pure.

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(map(lambda t, i: t * (i + 1), tokens, indices), "abc")
    ['a', 'bb', 'ccc']
    """
    if not callable(fn):
        raise RASPTypeError(f"map needs a function first, got {fn!r}.")
    if not sops:
        raise RASPTypeError("map needs at least one s-op; use constant(v) for a constant.")
    children = tuple(_as_sop(s) for s in sops)
    fname = getattr(fn, "__name__", "fn")
    return Map(fn, children, name or f"{fname}({', '.join(c.name for c in children)})")


def zipmap(fn: Callable, *sops: Any, name: str | None = None) -> Map:
    """The same as ``map`` (the reference's name for it)."""
    return map(fn, *sops, name=name)


def select(keys: Any, queries: Any, op: str, name: str | None = None) -> Select:
    """Key k is selected for query q iff ``keys[k] op queries[q]``.

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(select(indices, indices, "<"), "abc")  # [query][key]
    [[False, False, False], [True, False, False], [True, True, False]]
    """
    if op not in SELECT_OPS:
        raise RASPTypeError(f"Unknown select comparison {op!r}; allowed: "
                            f"{', '.join(SELECT_OPS)}.")
    k, q = _as_sop(keys), _as_sop(queries)
    return Select(op, (k, q), name or f"select({k.name}, {q.name}, {op})")


def _as_select(x: Any, what: str) -> Select:
    if not isinstance(x, Select):
        raise RASPTypeError(f"{what} needs selectors, got {_nm(x)!r} "
                            f"({type(x).__name__}).")
    return x


def sel_and(a: Select, b: Select, name: str | None = None) -> Select:
    """Selected by both (one new select: one head)."""
    a, b = _as_select(a, "and"), _as_select(b, "and")
    return Select("and", (a, b), name or f"({a.name} and {b.name})")


def sel_or(a: Select, b: Select, name: str | None = None) -> Select:
    """Selected by either (one new select: one head)."""
    a, b = _as_select(a, "or"), _as_select(b, "or")
    return Select("or", (a, b), name or f"({a.name} or {b.name})")


def sel_not(a: Select, name: str | None = None) -> Select:
    """Selected where ``a`` is not (one new select: one head)."""
    a = _as_select(a, "not")
    return Select("not", (a,), name or f"(not {a.name})")


def aggregate(sel: Select, sop: Any, default: Any = None, name: str | None = None
              ) -> Aggregate:
    """Per query: the default (0 when None) if nothing is selected, the value itself if
    one key is, the float mean if several are.

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(aggregate(select(indices, indices, "<="), indices), "abcd")
    [0, 0.5, 1.0, 1.5]
    >>> evaluate(aggregate(select(indices, indices, "<"), tokens, "-"), "ab")
    ['-', 'a']
    """
    sel = _as_select(sel, "aggregate")
    if isinstance(default, RASPExpr):
        raise RASPTypeError(f"An aggregate's default must be an atom, got {default.name!r}.")
    if default is not None and not isinstance(default, ATOM_TYPES):
        raise RASPTypeError(f"An aggregate's default must be a bool, int, float or str, "
                            f"got {default!r}.")
    sop = _as_sop(sop)
    return Aggregate(sel, sop, 0 if default is None else default,
                     name or f"aggregate({sel.name}, {sop.name})")


def sop_and(a: Any, b: Any) -> Map:
    """Elementwise ``bool(a) and bool(b)``."""
    return map(lambda x, y: bool(x) and bool(y), a, b, name=f"({_nm(a)} and {_nm(b)})")


def sop_or(a: Any, b: Any) -> Map:
    """Elementwise ``bool(a) or bool(b)``."""
    return map(lambda x, y: bool(x) or bool(y), a, b, name=f"({_nm(a)} or {_nm(b)})")


def sop_not(a: Any) -> Map:
    """Elementwise ``not a``."""
    return map(lambda x: not x, a, name=f"(not {_nm(a)})")


def where(cond: Any, x: Any, y: Any) -> Map:
    """Elementwise ``x if cond else y`` (both branches are computed).

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(where(indices == 1, "one", tokens), "abc")
    ['a', 'one', 'c']
    """
    return map(lambda c, a, b: a if c else b, cond, x, y,
               name=f"({_nm(x)} if {_nm(cond)} else {_nm(y)})")


def indicator(x: Any) -> Map:
    """Elementwise ``1 if x else 0``."""
    return map(lambda a: 1 if a else 0, x, name=f"indicator({_nm(x)})")


def numerical_mean(sel: Select, sop: Any, default: Any = 0) -> Aggregate:
    """``aggregate`` (named as tracr's numerical aggregate; the same operation)."""
    return aggregate(sel, sop, default)
