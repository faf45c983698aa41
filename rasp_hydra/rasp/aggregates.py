"""How the batched evaluator computes an aggregate (``evaluate._Batch`` inherits these
methods): per query, the default where no key is selected, the one key's value where one
is (type kept), the mean ``sum * 1.0 / count`` (float64) where several are, by one of
three strategies that give the same values and differ only in speed. Its one reason to
change is how aggregates are computed fast; ``tests/rasp_reference.py`` is the plain
per-position definition they are checked against.
"""

from __future__ import annotations

import torch

from .columns import Column, lookup, pack, popcount, single_index, unique_inverse, unpack
from .lang import Aggregate, RASPAggregateError
from .values import value_key

# An aggregate takes one of three strategies, by its values (methods below):
# - ``aggregate_by_pairs``: ints spanning fewer than SMALL_INT_RANGE values, one table
#   entry per int, while the table of possible (sum, count) pairs is small (the usual
#   case: tokens, counts, indicators of short inputs): one bincount, one lookup;
# - ``aggregate_by_int_sums``: the other small ints (True beside 1 in one table, or long
#   inputs): exact sums from popcounts of the values' bit planes;
# - ``aggregate_by_float_product``: any other values (strings, floats, ints over a wide
#   range): the selection unpacked to float64 times the values, only where a query
#   selects several keys.
SMALL_INT_RANGE = 256  # ints spanning fewer values sum exactly by at most 8 bit planes:
# 8 popcounts of a query's W words, less work than unpacking its n keys for a product
PAIR_TABLE_PER_POSITION = 4  # the pairs strategy bincounts every possible (sum, count),
PAIR_TABLE_MIN = 65536  # (max - min) * n * (n + 1) keys: worth it while they are at most
# a few per position of the batch, or few anyway (65536 int64: 512 KiB)


class Aggregates:
    """The aggregate of ``_Batch`` (which holds ``cache``, ``real``, ``key_mask``, ``W``
    and the table helpers ``dedupe``, ``check_sequence_types`` and ``describe_row``)."""

    def aggregate(self, node: Aggregate) -> Column:
        """Per query: the default if no key is selected, the key's value if one is, the
        mean if several are; picks the strategy (see ``SMALL_INT_RANGE``)."""
        col = self.cache[id(node.sop)]
        B, n = col.codes.shape
        sel = self.cache[id(node.select)] & self.key_mask  # [B, n or 1, W]
        sel = sel.expand(B, sel.shape[1], self.W)
        count = popcount(sel)  # [B, n or 1]
        ints = [int(v) for v in col.table if isinstance(v, bool | int)]
        if len(ints) < len(col.table) or max(ints) - min(ints) >= SMALL_INT_RANGE:
            return self.aggregate_by_float_product(node, col, sel, count)
        lo, hi = min(ints), max(ints)
        sums = self.bit_plane_sums(col, sel, lo, hi)
        # one table entry per int value (no True beside 1): an int sum names its entry
        one_per_int = len(set(ints)) == len({value_key(v) for v in col.table})
        if one_per_int and (hi - lo) * n * (n + 1) <= (PAIR_TABLE_PER_POSITION * B * n
                                                       + PAIR_TABLE_MIN):
            return self.aggregate_by_pairs(node, col, sums, count, lo)
        return self.aggregate_by_int_sums(node, col, sel, sums, count, lo, one_per_int)

    def bit_plane_sums(self, col: Column, sel: torch.Tensor, lo: int, hi: int
                       ) -> torch.Tensor:
        """Per query, the exact sum of (value - lo) over the selected keys: the popcount
        of the selection and each bit plane of the values, shifted to its bit."""
        w = lookup(torch.tensor([int(v) - lo for v in col.table]), col.codes)
        rows = w[:1] if w.stride(0) == 0 else w  # positional values: one row
        sums = None
        for bit in range((hi - lo).bit_length()):
            plane = pack(((rows >> bit) & 1).bool())[:, None, :]
            part = popcount(sel & plane)
            sums = part if sums is None else sums + (part << bit)
        if sums is None:  # one value: every selected key adds 0
            sums = torch.zeros(sel.shape[:2], dtype=torch.long)
        return sums

    def aggregate_by_int_sums(self, node: Aggregate, col: Column, sel: torch.Tensor,
                              sums: torch.Tensor, count: torch.Tensor, lo: int,
                              one_per_int: bool) -> Column:
        """Small ints, from their exact sums: one selected key's value is the sum (looked
        up in the table when it has one entry per int, else gathered at the key); the
        means of the distinct (sum, count) pairs at queries selecting several."""
        B, n = col.codes.shape
        T = len(col.table)
        total = sums + lo * count if lo else sums
        if one_per_int:
            ints = [int(v) for v in col.table]
            lut = torch.zeros(max(ints) - lo + 1, dtype=torch.long)
            lut[torch.tensor(ints) - lo] = torch.arange(T)
            single = lookup(lut, (total - lo).clamp(0, len(lut) - 1))
        else:
            single = self.one_key_codes(col, sel)
        codes, count, many = self.none_or_one(node, col, count, single)
        table = col.table + [node.default]
        if bool(many.any()):
            self.check_numeric(node, col, many, count)
            total = total.expand(B, n)
            lo_total = int(total.min())
            key = (total - lo_total) * (n + 1) + count
            fill = key.view(-1)[many.view(-1).to(torch.uint8).argmax()]
            pairs, inv = unique_inverse(torch.where(many, key, fill).view(-1))
            means = ((pairs // (n + 1) + lo_total).to(torch.float64) / (pairs % (n + 1))
                     ).tolist()
            codes = torch.where(many, T + 1 + inv.view(B, n), codes)
            table = table + means
        out = self.dedupe(codes, table)
        self.check_sequence_types(node, out)
        return out

    def aggregate_by_float_product(self, node: Aggregate, col: Column, sel: torch.Tensor,
                                   count: torch.Tensor) -> Column:
        """Any values: one selected key's value gathered at the key; where a query
        selects several, the sum of the float64 values times the unpacked selection (a
        batched matrix product), and the distinct means."""
        B, n = col.codes.shape
        codes, count, many = self.none_or_one(node, col, count, self.one_key_codes(col, sel))
        table = col.table + [node.default]
        if bool(many.any()):
            self.check_numeric(node, col, many, count)
            vals = torch.tensor([0.0 if isinstance(v, str) else float(v)  # unused here
                                 for v in col.table], dtype=torch.float64)
            dense = unpack(sel, n).to(torch.float64)
            total = torch.bmm(dense, lookup(vals, col.codes)[:, :, None])[..., 0]
            total = total.expand(B, n)
            uniq, inv = torch.unique(total[many] / count[many], return_inverse=True)
            codes = codes.clone()
            codes[many] = len(col.table) + 1 + inv
            table = table + uniq.tolist()
        out = self.dedupe(codes, table)
        self.check_sequence_types(node, out)
        return out

    def one_key_codes(self, col: Column, sel: torch.Tensor) -> torch.Tensor:
        """Per query selecting one key, that key's code (anything elsewhere)."""
        B, n = col.codes.shape
        first = single_index(sel).clamp(0, n - 1)
        first = first.expand(B, n) if first.shape[1] == 1 else first
        return col.codes.gather(1, first)

    def none_or_one(self, node: Aggregate, col: Column, count: torch.Tensor,
                    single: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Codes into ``col.table + [default]``: the default where a query selects no key
        (padded queries too), ``single`` where one; the count per query (0 at padding);
        where several are selected."""
        B, n = col.codes.shape
        count = torch.where(self.real, count.expand(B, n), 0)
        codes = torch.where(count == 0, len(col.table), single.expand(B, n))
        return codes, count, count > 1

    def aggregate_by_pairs(self, node: Aggregate, col: Column, sums: torch.Tensor,
                           count: torch.Tensor, lo: int) -> Column:
        """Small ints, one table entry per int value: the result at a query is a function
        of (sum of value - lo, count) alone, so the pairs that occur are counted in one
        pass, each gets its table entry (the default for no key, the one key's value, the
        mean of several), and one lookup gives every position its code."""
        B, n = col.codes.shape
        pad = sums.new_tensor((max(int(v) for v in col.table) - lo) * n * (n + 1) + n + 1)
        key = torch.where(self.real, sums * (n + 1) + count, pad)  # padding: its own key
        present = torch.bincount(key.view(-1), minlength=int(pad) + 1)[:-1].nonzero()[:, 0]
        pair_sum, pair_count = present // (n + 1), present % (n + 1)
        many = pair_count > 1
        if bool(many.any()) and any(isinstance(v, str | bool) for v in col.table):
            self.check_numeric(node, col, key.remainder(n + 1) > 1, key.remainder(n + 1))
        by_int = {int(v): v for v in col.table}
        means = ((pair_sum + lo * pair_count).to(torch.float64)
                 / pair_count.clamp(min=1)).tolist()
        values = [node.default if c == 0 else by_int[s + lo] if c == 1 else m
                  for s, c, m in zip(pair_sum.tolist(), pair_count.tolist(), means,
                                     strict=True)]
        if not values:
            values = [node.default]
        out = self.dedupe(torch.arange(len(values)), values)
        lut = torch.zeros(int(pad) + 1, dtype=torch.long)
        lut[present] = out.codes[: len(present)]
        out = Column(lookup(lut, key), out.table)
        self.check_sequence_types(node, out)
        return out

    def check_numeric(self, node: Aggregate, col: Column, many: torch.Tensor,
                      count: torch.Tensor) -> None:
        """The reference averages several keys only if the whole sequence is numbers
        (ints and floats, bools mixed in allowed; strings or all-bools are an error)."""
        if not any(isinstance(v, str | bool) for v in col.table):
            return
        is_str = lookup(torch.tensor([isinstance(v, str) for v in col.table]), col.codes)
        is_bool = lookup(torch.tensor([isinstance(v, bool) for v in col.table]), col.codes)
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
