"""Evaluating RASP programs on batches of inputs (and on one input, as the REPL does).

A batch is ``ids`` LongTensor[B, n] indexing ``input_values`` (the raw input element of
each id, e.g. the alphabet's characters and BOS) with ``lengths`` LongTensor[B];
positions at or past a row's length are padding and never influence real positions.

Every s-op evaluates to a ``Column``: ``codes`` LongTensor[B, n] into ``table``, a short
list of the distinct Python values the s-op takes at the batch's real positions (codes at
padding point at any entry). So an elementwise function runs once per distinct value,
or distinct tuple of values, in the batch (``torch.unique`` + inverse), never per
position (while the combinations are few, all of them are tabulated, so a table may hold
values that occur at no real position). A select evaluates to BoolTensor[B, n, n]
([batch, query, key], False in
padded rows and columns): its comparison is done on ranks of the key and query values
in their sorted union (numbers numerically, strings by code point), as one broadcast
comparison of small integers. An aggregate is the selection matrix times the values
(integer sums over a uint8 view of the selection for small integers, a float64
product otherwise, so integer sums are exact and the mean is ``sum * 1.0 / count`` as in
the reference) where several keys are selected, a gather where exactly one is (the value
unchanged, type kept), the default where none is.

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
from dataclasses import dataclass
from typing import Any

import torch

from .lang import (
    SELECT_OPS,
    Aggregate,
    Input,
    Map,
    RASPAggregateError,
    RASPError,
    RASPEvalError,
    RASPExpr,
    RASPTypeError,
    Select,
    SOp,
)

ATOM_TYPES = (bool, int, float, str)
PRODUCT_LIMIT = 4096  # an elementwise op tabulates all combinations of up to this many
_CONVERT = {"str": str, "int": int, "float": float, "bool": bool, "asis": lambda v: v}
# a select's comparison of (key, query) as the torch op applied to (query, key)
_FLIPPED = {"==": torch.eq, "!=": torch.ne, "<": torch.gt, ">": torch.lt, "<=": torch.ge,
            ">=": torch.le}


def value_key(v: Any) -> tuple:
    """A value's identity in a table: equal Python values of different types (1, 1.0,
    True) stay apart, as the REPL shows them apart."""
    return (type(v), v)


def _show(v: Any) -> str:
    return repr(v)


@dataclass
class Column:
    """An s-op's values on a batch: ``table[codes[b, i]]`` at real positions."""

    codes: torch.Tensor
    table: list

    def values(self, lengths: torch.Tensor) -> list[list]:
        """The values of each row as Python lists (without padding)."""
        return [[self.table[c] for c in row[: int(m)]]
                for row, m in zip(self.codes.tolist(), lengths.tolist(), strict=True)]


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


def unique_inverse(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(x, return_inverse=True)`` for a 1-d integer tensor; by counting
    when the values span a small range (several times faster than sorting)."""
    if x.numel() == 0:
        return x.new_zeros(0), x.new_zeros(0)
    lo, hi = int(x.min()), int(x.max())
    if hi - lo > 4 * x.numel() + 1024:
        return torch.unique(x, return_inverse=True)
    present = torch.bincount(x - lo, minlength=hi - lo + 1) > 0
    rank = present.cumsum(0) - 1
    return present.nonzero()[:, 0] + lo, rank[x - lo]


_BYTE_SUM = 0x0101010101010101


def _count_bytes(u8: torch.Tensor) -> torch.Tensor:
    """Row sums of a 0/1 uint8 tensor [..., m] (m a multiple of 8, sums < 256): the
    bytes of each int64 word are added lane by lane, then the lanes by one multiply."""
    words = u8.view(torch.int64).sum(-1)  # each byte lane holds at most m / 8
    return ((words * _BYTE_SUM) >> 56) & 0xFF


def _single_index(u8: torch.Tensor) -> torch.Tensor:
    """For 0/1 rows [..., m] with exactly one 1, its index (anything for other rows):
    the first nonzero int64 word, then the byte within it from the word's log2."""
    words = u8.view(torch.int64)
    w_idx = (words != 0).to(torch.uint8).max(-1).indices  # [...]
    word = words.gather(-1, w_idx[..., None])[..., 0]
    byte = torch.log2(word.clamp(min=1).to(torch.float64)).long() // 8
    return (w_idx * 8 + byte).clamp(0, u8.shape[-1] - 1)


class _Batch:
    """One batch being evaluated: masks and the cache of evaluated nodes."""

    def __init__(self, ids: torch.Tensor, lengths: torch.Tensor, input_values: Sequence):
        self.ids, self.lengths, self.input_values = ids, lengths, list(input_values)
        B, n = ids.shape
        self.n = n
        self.real = torch.arange(n)[None, :] < lengths[:, None]  # [B, n]
        r8 = self.real.to(torch.uint8)
        self.pair = (r8[:, :, None] * r8[:, None, :]).bool()  # [B, q, k]
        self.key_mask = self.real[:, None, :]  # [B, 1, k]
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

    def distinct(self, key: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Codes 0..d-1 of the distinct keys at real positions (padding: 0), and those
        keys."""
        used = key[self.real]
        if used.numel() == 0:
            return torch.zeros_like(key), [0]
        uniq, inv = unique_inverse(used)
        out = torch.zeros_like(key)
        out[self.real] = inv
        return out, uniq.tolist()

    def dedupe(self, codes: torch.Tensor, values: list) -> Column:
        """Merge identical values (by ``value_key``) of a freshly computed table."""
        index: dict[tuple, int] = {}
        remap = []
        table = []
        for v in values:
            k = value_key(v)
            if k not in index:
                index[k] = len(table)
                table.append(v)
            remap.append(index[k])
        if len(table) != len(values):
            codes = torch.tensor(remap, dtype=torch.long)[codes]
        return Column(codes, table)

    def check_sequence_types(self, node: SOp, col: Column) -> None:
        """The reference's type check: no sequence mixes strings with other values."""
        is_str = [isinstance(v, str) for v in col.table]
        if all(is_str) or not any(is_str):
            return
        s = torch.tensor(is_str)[col.codes]
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
        col = self.compact(self.ids, self.input_values)
        convert = _CONVERT[node.kind]
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
            return Column(torch.zeros(B, n, dtype=torch.long), [node.value])
        cols = [self.cache[id(c)] for c in node.children]
        # codes of tuples of the children's values: all combinations while they are few
        # (no unique needed), else only the distinct ones at real positions
        codes, tuples = cols[0].codes, [(v,) for v in cols[0].table]
        for col in cols[1:]:
            m = len(col.table)
            if len(tuples) * m <= PRODUCT_LIMIT:
                codes = codes * m + col.codes
                tuples = [t + (v,) for t in tuples for v in col.table]
            else:
                codes, joint = self.distinct(codes * m + col.codes)
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
            bad = failed[codes] & self.real
            if bool(bad.any()):
                b, i = (int(v) for v in bad.nonzero()[0])
                k = int(codes[b, i])
                shown = ", ".join(_show(a) for a in tuples[k])
                raise RASPEvalError(
                    f"Evaluating {node.name!r} failed on input {self.describe_row(b)} at "
                    f"position {i}: {errors[k]}, on the values ({shown}).")
            fill = next((v for v in values if v is not None), 0)
            values = [fill if v is None else v for v in values]
        out = self.dedupe(codes, values)
        self.check_sequence_types(node, out)
        return out

    def select(self, node: Select) -> torch.Tensor:
        """BoolTensor[B, q, k]; what it holds in padded rows and columns is undefined
        (``evaluate_batch`` masks selects it returns, ``aggregate`` masks keys)."""
        if node.parts:
            mats = [self.cache[id(p)] for p in node.parts]
            if node.op == "and":
                return mats[0] & mats[1]
            if node.op == "or":
                return mats[0] | mats[1]
            return ~mats[0]
        if node.op in ("true", "false"):
            return torch.full((1, 1, 1), node.op == "true", dtype=torch.bool)
        k, q = self.cache[id(node.keys)], self.cache[id(node.queries)]
        rk, rq = self.ranks(node, k, q)
        # the matrix only as large as it varies: a constant side broadcasts, and values
        # that depend on positions only are the same in every row
        if len(k.table) == 1:
            rk = rk[:1, :1]
        elif self.positional(node.keys) and self.positional(node.queries):
            rk, rq = rk[:1], rq[:1]
        if len(q.table) == 1:
            rq = rq[:1, :1]
        dtype = torch.uint8 if max(int(rk.max()), int(rq.max())) < 256 else torch.long
        rq = rq.to(dtype)[:, :, None]
        if rq.shape[1] > 1 and rk.shape[1] > 1:  # a contiguous query side is faster
            rq = rq.expand(rq.shape[0], rq.shape[1], rk.shape[1]).contiguous()
        return _FLIPPED[node.op](rq, rk.to(dtype)[:, None, :])

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
            ks = torch.tensor([isinstance(v, str) for v in k.table])[k.codes] & self.real
            qs = torch.tensor([isinstance(v, str) for v in q.table])[q.codes] & self.real
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
        return rank_t[: len(k.table)][k.codes], rank_t[len(k.table):][q.codes]

    def aggregate(self, node: Aggregate) -> Column:
        col = self.cache[id(node.sop)]
        B, n = col.codes.shape
        sel = (self.cache[id(node.select)] & self.key_mask).expand(B, n, n)  # [B, q, k]
        T = len(col.table)
        ints = [int(v) for v in col.table if isinstance(v, bool | int)]
        small_ints = len(ints) == T and max(ints) - min(ints) < 256
        packed = n < 256 and n % 8 == 0  # evaluate_batch pads widths to multiples of 8
        if packed:
            # counts over a uint8 view of the selection, 8 keys per int64 word (several
            # times faster than a reduction over bytes or a float product)
            u8 = sel.contiguous().view(torch.uint8)
            count = _count_bytes(u8)
            first = _single_index(u8)
        else:
            small_ints = False
            f = sel.to(torch.float64)
            count = f.sum(-1).round().long()
            first = (f * torch.arange(n, dtype=torch.float64)).sum(-1).round().long()
            first = first.clamp(0, n - 1)
        count = torch.where(self.real, count, 0)  # padded queries fall back to the default
        codes = torch.where(count == 0, T, col.codes.gather(1, first))
        table = col.table + [node.default]
        many = count > 1
        if bool(many.any()):
            self.check_numeric(node, col, many, count)
            if small_ints:  # sum by bit planes of (value - lo): exact integers
                lo = min(ints)
                w = torch.tensor([int(v) - lo for v in col.table], dtype=torch.long)[col.codes]
                total = lo * count
                for bit in range(int(w.max()).bit_length()):
                    plane = ((w >> bit) & 1).bool()[:, None, :]
                    total = total + (_count_bytes((sel & plane).view(torch.uint8)) << bit)
                total = total.to(torch.float64)
            else:
                vals = torch.tensor([float(v) for v in col.table], dtype=torch.float64)
                total = torch.bmm(sel.to(torch.float64), vals[col.codes][:, :, None])[..., 0]
            mean = total[many] / count[many]
            uniq, inv = torch.unique(mean, return_inverse=True)
            codes = codes.clone()
            codes[many] = T + 1 + inv
            table = table + uniq.tolist()
        out = self.compact(codes, table)
        out = self.dedupe(out.codes, out.table)
        self.check_sequence_types(node, out)
        return out

    def check_numeric(self, node: Aggregate, col: Column, many: torch.Tensor,
                      count: torch.Tensor) -> None:
        """The reference averages several keys only if the whole sequence is numbers
        (ints and floats, bools mixed in allowed; strings or all-bools are an error)."""
        is_str = torch.tensor([isinstance(v, str) for v in col.table])[col.codes]
        is_bool = torch.tensor([isinstance(v, bool) for v in col.table])[col.codes]
        bad = (is_str & self.real).any(1) | (is_bool | ~self.real).all(1)
        bad &= many.any(1)
        if bool(bad.any()):
            b = int(bad.nonzero()[0, 0])
            q = int(many[b].nonzero()[0, 0])
            vals = [col.table[c] for c in col.codes[b, : int(self.lengths[b])].tolist()]
            raise RASPAggregateError(
                f"The aggregate {node.name!r} averages several keys (query {q} selects "
                f"{int(count[b, q])}) of the non-numeric "
                f"s-op {node.sop.name!r} on input {self.describe_row(b)}: {vals}. "
                "Several selected keys are averaged, which needs numbers (not strings, not "
                "only bools); select exactly one key per query to move other values.")


def evaluate_batch(outputs: Iterable[RASPExpr], ids: torch.Tensor, lengths: torch.Tensor,
                   input_values: Sequence) -> dict[RASPExpr, Column | torch.Tensor]:
    """Evaluate ``outputs`` on a batch: a Column per s-op, BoolTensor[B, n, n] per select
    (keyed by the node objects)."""
    outputs = list(outputs)
    for o in outputs:
        if not isinstance(o, SOp | Select):
            raise RASPTypeError(f"Cannot evaluate {o!r}: not a RASP s-op or selector.")
    B, n = ids.shape
    width = -(-n // 8) * 8  # padded so that selections pack into int64 words
    padded = torch.zeros(B, width, dtype=torch.long)
    padded[:, :n] = ids
    batch = _Batch(padded, lengths.long(), input_values)
    for node in ancestors(outputs):
        batch.cache[id(node)] = batch.run(node)
    out: dict = {}
    for o in outputs:
        r = batch.cache[id(o)]
        if isinstance(o, Select):
            out[o] = (r & batch.pair)[:, :n, :n]
        else:
            out[o] = Column(r.codes[:, :n], r.table)
    return out


def encode(inputs: Sequence[Sequence]) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Raw inputs (strings or lists of atoms) as (ids, lengths, input_values)."""
    index: dict[tuple, int] = {}
    values: list = []
    rows = []
    for inp in inputs:
        row = []
        for v in inp:
            k = value_key(v)
            if k not in index:
                index[k] = len(values)
                values.append(v)
            row.append(index[k])
        rows.append(row)
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
           "value_key", "SELECT_OPS"]
