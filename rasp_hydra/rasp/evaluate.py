"""Evaluating RASP programs on batches of inputs (and on one input, as the REPL does).

A batch is ``ids`` LongTensor[B, n] indexing ``input_values`` (the raw input element of
each id, e.g. the alphabet's characters and BOS) with ``lengths`` LongTensor[B];
positions at or past a row's length are padding and never influence real positions.

Every s-op evaluates to a ``Column``: ``codes`` LongTensor[B, n] into ``table``, a short
list of Python values (codes at padding point at any entry; a value may stand in the
table more than once: a unary op keeps its input's codes). An elementwise function runs
once per distinct value, or distinct tuple of values, in the batch (all combinations are
tabulated while they are few, else ``unique`` + inverse), never per position. A select
evaluates to a packed selection: int64 [B, n, ceil(n / 64)], bit k of a query's row set
when key k is selected (``pack``/``unpack``), built per row as a table of key sets by
value rank gathered by the queries' ranks (values ranked in the sorted union of keys and
queries: numbers numerically, strings by code point), so nothing is O(n^2) bytes.
Selector and/or/not are bitwise ops on the words. An aggregate counts the selected keys
with a popcount, takes the one selected key's value where there is one (type kept), the
default where there is none, and the mean ``sum * 1.0 / count`` (float64) where there
are several, by one of three strategies (the same values; see ``aggregates``): by
(sum, count) pairs, by exact integer sums of bit planes, or by a float64 product with
the unpacked selection. A computation written twice (the same select, or the same
function of the same s-ops) is evaluated once per batch.

Values are kept with their Python type: tables hold ``1`` and ``1.0`` (and ``True``) as
different entries, as the REPL prints them differently; they compare equal in selects and
elementwise functions, as in Python. Means are float64 sums of the selected values, in
the order a matrix product adds them: for integer values that is exact, for float
values it can differ from the reference's left-to-right sum in the last bit.

    >>> from rasp_hydra.rasp.lang import tokens, indices, select, aggregate, indicator
    >>> evaluate(aggregate(select(indices, indices, "<="), indicator(tokens == "a")), "aab")
    [1, 1.0, 0.6666666666666666]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from .aggregates import Aggregates
from .columns import (
    ALL,
    Column,
    lookup,
    pack,
    popcount,
    single_index,
    unique_inverse,
    unpack,
)
from .graph import ancestors
from .lang import (
    ATOM_TYPES,
    CONVERSIONS,
    SELECT_OPS,
    Aggregate,
    Input,
    Map,
    RASPError,
    RASPEvalError,
    RASPExpr,
    RASPTypeError,
    Select,
    SOp,
)
from .values import intern, value_key

# An elementwise op with several inputs codes the tuples of their values: it tabulates
# every combination of the values (no unique needed, but the function runs on each) while
# there are at most PRODUCT_LIMIT combinations and at most one per POSITIONS_PER_PRODUCT
# positions of the batch (or PRODUCT_MIN, however small the batch), so that the function
# is not run on many combinations that never occur; otherwise it finds the distinct
# tuples that do occur (a unique over the positions).
PRODUCT_LIMIT = 4096
POSITIONS_PER_PRODUCT = 4
PRODUCT_MIN = 64
# a select's comparison of (key, query) as the torch op applied to (query, key)
_FLIPPED = {"==": torch.eq, "!=": torch.ne, "<": torch.gt, ">": torch.lt, "<=": torch.ge,
            ">=": torch.le}


def _show(v: Any) -> str:
    return repr(v)


class _Batch(Aggregates):
    """One batch being evaluated: masks and the cache of evaluated nodes."""

    def __init__(self, ids: torch.Tensor, lengths: torch.Tensor, input_values: Sequence):
        self.ids, self.lengths, self.input_values = ids, lengths, list(input_values)
        B, n = ids.shape
        self.n = n
        self.real = torch.arange(n)[None, :] < lengths[:, None]  # [B, n]
        self.W = -(-n // 64)
        longest = int(lengths.max()) if len(lengths) else 0
        self.real_any = torch.arange(n)[None, :] < longest  # [1, n]: real in some row
        self.key_mask = pack(self.real)[:, None, :]  # [B, 1, W]
        self.cache: dict[int, Any] = {}

    # --- tables --------------------------------------------------------------------------
    def compact(self, codes: torch.Tensor, table: list) -> Column:
        """Keep only the table entries used at real positions (padding points at 0)."""
        used = codes[self.real]
        if used.numel() == 0:
            return Column(torch.zeros_like(codes), [table[0] if table else 0])
        uniq, inv = unique_inverse(used)
        if len(uniq) == len(table):
            return Column(torch.where(self.real, codes, 0), table)
        out = torch.zeros_like(codes)
        out[self.real] = inv
        return Column(out, [table[i] for i in uniq.tolist()])

    def distinct(self, key: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Codes 0..d-1 of the distinct keys at real positions (padding: 0), and those
        keys."""
        used = key[real]
        if used.numel() == 0:
            return torch.zeros_like(key), [0]
        uniq, inv = unique_inverse(used)
        out = torch.zeros_like(key)
        out[real] = inv
        return out, uniq.tolist()

    def dedupe(self, codes: torch.Tensor, values: list) -> Column:
        """Merge identical values (by ``value_key``) of a freshly computed table."""
        table, remap = intern(values)
        if len(table) != len(values):
            codes = lookup(torch.tensor(remap, dtype=torch.long), codes)
        return Column(codes, table)

    def check_sequence_types(self, node: SOp, col: Column) -> None:
        """The reference's type check: no sequence mixes strings with other values."""
        is_str = [isinstance(v, str) for v in col.table]
        if all(is_str) or not any(is_str):
            return
        s = lookup(torch.tensor(is_str), col.codes)
        mixed = (s & self.real).any(1) & (~s & self.real).any(1)
        if bool(mixed.any()):
            b = int(mixed.nonzero()[0, 0])
            vals = [col.table[c] for c in col.codes[b, : int(self.lengths[b])].tolist()]
            raise RASPEvalError(
                f"The s-op {node.name!r} mixes strings with other values on input "
                f"{self.describe_row(b)}: {vals}. A sequence holds values of one type "
                "(numbers may mix ints and floats); e.g. give a string aggregate a string "
                "default.")

    def describe_row(self, b: int) -> str:
        m = int(self.lengths[b])
        return repr([self.input_values[i] for i in self.ids[b, :m].tolist()])

    # --- nodes ---------------------------------------------------------------------------
    def run(self, node: RASPExpr):
        if isinstance(node, Input):
            return self.input(node)
        if isinstance(node, Map):
            return self.map(node)
        if isinstance(node, Aggregate):
            return self.aggregate(node)
        if isinstance(node, Select):
            return self.select(node)
        raise RASPTypeError(f"Cannot evaluate {node!r}: not a RASP s-op or selector.")

    def input(self, node: Input) -> Column:
        B, n = self.ids.shape
        if node.kind == "indices":
            return Column(torch.arange(n).expand(B, n), list(range(n)))
        convert = CONVERSIONS[node.kind]
        try:  # every input value, else only those that occur
            col = Column(torch.where(self.real, self.ids, 0), self.input_values)
            table = [convert(v) for v in col.table]
        except (TypeError, ValueError):
            col = self.compact(self.ids, self.input_values)
        try:
            table = [convert(v) for v in col.table]
        except (TypeError, ValueError) as e:
            raise RASPEvalError(
                f"{node.name} applies {node.kind}() to each input element, which fails on "
                f"this input ({e}); give {node.name} inputs it can convert.") from None
        for v in table:
            if not isinstance(v, ATOM_TYPES):
                raise RASPEvalError(f"Input values must be bool, int, float or str, got "
                                    f"{v!r}.")
        out = self.dedupe(col.codes, table)
        self.check_sequence_types(node, out)
        return out

    def map(self, node: Map) -> Column:
        B, n = self.ids.shape
        if node.is_constant:
            # the same code in every row, as positional values (no [B, n] tensor written)
            return Column(torch.zeros(1, n, dtype=torch.long).expand(B, n), [node.value])
        cols = [self.cache[id(c)] for c in node.children]
        # values that depend on positions only are computed on one row
        positional = self.positional(node)
        real = self.real_any if positional else self.real
        rows = [c.codes[:1] if positional else c.codes for c in cols]
        # codes of tuples of the children's values: all combinations while they are few
        # (no unique needed), else only the distinct ones at real positions
        codes, tuples = rows[0], [(v,) for v in cols[0].table]
        for col, col_codes in zip(cols[1:], rows[1:], strict=True):
            m = len(col.table)
            if m == 1:  # one value (e.g. a constant): nothing to combine per position
                tuples = [t + (col.table[0],) for t in tuples]
            elif len(tuples) * m <= min(PRODUCT_LIMIT, max(
                    PRODUCT_MIN, codes.numel() // POSITIONS_PER_PRODUCT)):
                codes = codes * m + col_codes
                tuples = [t + (v,) for t in tuples for v in col.table]
            else:
                codes, joint = self.distinct(codes * m + col_codes, real)
                tuples = [tuples[k // m] + (col.table[k % m],) for k in joint]
        values: list = []
        errors: dict[int, str] = {}
        for i, args in enumerate(tuples):
            try:
                v = node.fn(*args)
            except Exception as e:
                errors[i] = f"the elementwise function raised {type(e).__name__}: {e}"
                values.append(None)
                continue
            if not isinstance(v, ATOM_TYPES):
                errors[i] = (f"the elementwise function gave {v!r} (a {type(v).__name__}); "
                             "s-op values must be bool, int, float or str")
                values.append(None)
                continue
            values.append(v)
        if errors:  # an error counts only where its combination occurs
            failed = torch.zeros(len(tuples), dtype=torch.bool)
            failed[list(errors)] = True
            bad = lookup(failed, codes) & real
            if bool(bad.any()):
                b, i = (int(v) for v in bad.nonzero()[0])
                k = int(codes[b, i])
                shown = ", ".join(_show(a) for a in tuples[k])
                raise RASPEvalError(
                    f"Evaluating {node.name!r} failed on input {self.describe_row(b)} at "
                    f"position {i}: {errors[k]}, on the values ({shown}).")
            fill = next((v for v in values if v is not None), 0)
            values = [fill if v is None else v for v in values]
        if len(cols) == 1 and len({value_key(v) for v in values}) * 2 > len(values):
            out = Column(codes, values)  # a unary op keeps the codes: no tensor work
        else:
            out = self.dedupe(codes, values)
        if positional:
            out = Column(out.codes.expand(B, n), out.table)
        self.check_sequence_types(node, out)
        return out

    def select(self, node: Select) -> torch.Tensor:
        """Packed selection (see ``pack``); what it holds for padded queries and keys is
        undefined (``evaluate_batch`` masks selects it returns, ``aggregate`` masks keys).

        A comparison selects, for a query of rank r, the keys whose ranks are == r (or
        < r, ...): per row, a table of packed key sets by rank (cumulated over ranks for
        the orders), gathered by the queries' ranks. Values that depend on positions only
        are the same in every row (one table); a constant side needs no table."""
        if node.parts:
            mats = [self.cache[id(p)] for p in node.parts]
            if node.op == "and":
                return mats[0] & mats[1]
            if node.op == "or":
                return mats[0] | mats[1]
            return ~mats[0]
        if node.op in ("true", "false"):
            return torch.full((1, 1, 1), ALL if node.op == "true" else 0, dtype=torch.int64)
        k, q = self.cache[id(node.keys)], self.cache[id(node.queries)]
        rk, rq = self.ranks(node, k, q)
        if len(k.table) == 1:  # every query selects all keys or none
            hit = _FLIPPED[node.op](rq, rk[:, :1])  # [B, n]: op(key value, query value)
            return torch.where(hit, ALL, 0)[:, :, None]
        if self.positional(node.keys) and self.positional(node.queries):
            rk, rq = rk[:1], rq[:1]
        Bk, n = rk.shape
        R = int(max(int(rk.max()), int(rq.max()))) + 1
        keys = torch.arange(n, dtype=torch.int64)
        table = torch.zeros(Bk, R * self.W, dtype=torch.int64)
        table.scatter_add_(1, rk * self.W + keys // 64, (1 << (keys % 64)).expand(Bk, n))
        table = table.view(Bk, R, self.W)  # [Bk, rank, W]: the keys of each rank
        op = node.op
        if op in ("<", "<=", ">", ">="):
            upto = table.cumsum(1)  # disjoint bits: the sum is the union; keys of rank <= r
            if op == "<=":
                table = upto
            elif op == "<":
                table = upto - table
            elif op == ">":
                table = upto[:, -1:] - upto
            else:
                table = upto[:, -1:] - upto + table
        elif op == "!=":
            table = ~table
        if len(q.table) == 1:
            return table[:, int(rq[0, 0])][:, None, :]  # [Bk, 1, W]
        if Bk == 1:  # one table for every row
            return table[0].index_select(0, rq.reshape(-1)).view(*rq.shape, self.W)
        rq = rq.expand(Bk, n) + torch.arange(Bk)[:, None] * R  # row b's ranks: table b
        return table.view(Bk * R, self.W).index_select(0, rq.reshape(-1)).view(Bk, n, self.W)

    def positional(self, node: SOp) -> bool:
        """Whether the s-op's values depend on positions only (indices, constants, and
        elementwise functions of them): the same in every row."""
        key = ("positional", id(node))
        if key not in self.cache:
            self.cache[key] = (isinstance(node, Input) and node.kind == "indices") or (
                isinstance(node, Map) and all(self.positional(c) for c in node.children))
        return self.cache[key]

    def ranks(self, node: Select, k: Column, q: Column) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes of keys and queries as ranks in the sorted union of their values:
        numbers (bool, int, float) by value, then strings by code point; equal values
        (1 == 1.0 == True) share a rank."""
        entries = [(isinstance(v, str), v) for v in k.table + q.table]
        mixed = len({s for s, _ in entries}) == 2
        if mixed and node.op not in ("==", "!="):
            ks = lookup(torch.tensor([isinstance(v, str) for v in k.table]), k.codes) & self.real
            qs = lookup(torch.tensor([isinstance(v, str) for v in q.table]), q.codes) & self.real
            bad = (ks.any(1) & (~qs & self.real).any(1)) | (qs.any(1) & (~ks & self.real).any(1))
            if bool(bad.any()):
                b = int(bad.nonzero()[0, 0])
                raise RASPEvalError(
                    f"The select {node.name!r} orders ({node.op}) strings against numbers "
                    f"on input {self.describe_row(b)} ({node.keys.name!r} vs "
                    f"{node.queries.name!r}); '<'-like comparisons need values of one kind.")
        order = sorted(range(len(entries)), key=lambda i: entries[i])
        rank = [0] * len(entries)
        r = -1
        prev = None
        for i in order:
            if prev is None or entries[i] != prev:
                r += 1
                prev = entries[i]
            rank[i] = r
        rank_t = torch.tensor(rank, dtype=torch.long)
        return (lookup(rank_t[: len(k.table)], k.codes),
                lookup(rank_t[len(k.table):].contiguous(), q.codes))



def structure(node: RASPExpr, cache: dict) -> tuple:
    """What a node computes, for evaluating each distinct computation once per batch (a
    program may write the same select twice, e.g. ``select(tokens, tokens, "==")`` in
    two library functions): the node's kind and parameters with its children's
    structures (as the first node of each, ``cache[("structure", id(child))]``). Maps
    are the same when they apply the same function object (or are equal constants)."""
    kids = tuple(cache[("structure", id(c))] for c in node.children)
    if isinstance(node, Input):
        return ("input", node.kind)
    if isinstance(node, Map):
        if node.is_constant:
            return ("constant", value_key(node.value))
        return ("map", id(node.fn), kids)
    if isinstance(node, Aggregate):
        return ("aggregate", value_key(node.default), kids)
    if isinstance(node, Select):
        return ("select", node.op, kids)
    return ("node", id(node))


def evaluate_batch(outputs: Iterable[RASPExpr], ids: torch.Tensor, lengths: torch.Tensor,
                   input_values: Sequence) -> dict[RASPExpr, Column | torch.Tensor]:
    """Evaluate ``outputs`` on a batch: a Column per s-op, BoolTensor[B, n, n] per select
    (keyed by the node objects)."""
    outputs = list(outputs)
    for o in outputs:
        if not isinstance(o, SOp | Select):
            raise RASPTypeError(f"Cannot evaluate {o!r}: not a RASP s-op or selector.")
    batch = _Batch(ids.long(), lengths.long(), input_values)
    first: dict[tuple, RASPExpr] = {}  # a node's structure -> the first node with it
    for node in ancestors(outputs):
        done = first.setdefault(structure(node, batch.cache), node)
        batch.cache[("structure", id(node))] = ("node", id(done))
        batch.cache[id(node)] = batch.cache[id(done)] if done is not node else batch.run(node)
    out: dict = {}
    B, n = ids.shape
    for o in outputs:
        r = batch.cache[id(o)]
        if isinstance(o, Select):
            dense = unpack((r & batch.key_mask).expand(B, n, batch.W), n)
            out[o] = dense & batch.real[:, :, None]
        else:
            out[o] = r
    return out


def encode(inputs: Sequence[Sequence]) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Raw inputs (strings or lists of atoms) as (ids, lengths, input_values)."""
    values, flat = intern([v for inp in inputs for v in inp])
    rows, start = [], 0
    for inp in inputs:
        rows.append(flat[start:start + len(inp)])
        start += len(inp)
    n = max((len(r) for r in rows), default=0)
    ids = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, torch.tensor([len(r) for r in rows], dtype=torch.long), values


def evaluate(expr: RASPExpr, inp: Sequence) -> list:
    """``expr`` on one input (a string or a list of atoms), as the REPL holds it: an s-op
    gives a list of Python values, a select a [query][key] list of lists of bools.

    >>> from rasp_hydra.rasp.lang import tokens_int, indices
    >>> evaluate(tokens_int * 2 + indices, [3, 1, 2])
    [6, 3, 6]
    """
    if isinstance(inp, str | list | tuple):
        items = list(inp)
    else:
        raise RASPTypeError(f"An input is a string or a list of atoms, got {inp!r}.")
    if not items:
        raise RASPEvalError("RASP evaluates non-empty inputs only (as the REPL).")
    for v in items:
        if not isinstance(v, ATOM_TYPES):
            raise RASPTypeError(f"Input elements must be bool, int, float or str, got {v!r}.")
    ids, lengths, values = encode([items])
    out = evaluate_batch([expr], ids, lengths, values)[expr]
    if isinstance(out, Column):
        return out.values(lengths)[0]
    return out[0].tolist()


__all__ = ["Column", "RASPError", "evaluate", "evaluate_batch", "encode", "ancestors",
           "value_key", "SELECT_OPS", "lookup", "pack", "popcount", "single_index",
           "unique_inverse", "unpack"]
