"""How the batched evaluator computes an aggregate (``evaluate._Batch`` inherits these
methods): per query, the default where no key is selected, the one key's value where one
is (type kept), the mean where several are, exactly as the REPL computes it: Python's
``sum`` of the selected values left to right, ``* 1.0 / count`` (its ``Support.py``). So
ints are summed exactly (any size) before the one rounding to float64, and floats are
added one key after the other in key order, as ``sum`` adds them (with its compensation
from Python 3.12 on, see ``COMPENSATED``), never by a matrix product whose order of
additions is the library's. Four strategies give the same values and differ only in
speed. Its one reason to change is how aggregates are computed fast;
``tests/rasp_reference.py`` is the plain per-position definition they are checked
against.
"""

from __future__ import annotations

import sys

import torch

from .columns import Column, lookup, pack, popcount, single_index, unique_inverse, unpack
from .lang import Aggregate, RASPAggregateError
from .values import value_key

# An aggregate takes one of four strategies, by its values (methods below):
# - ``aggregate_by_pairs``: ints spanning fewer than SMALL_INT_RANGE values, one table
#   entry per int, while the table of possible (sum, count) pairs is small (the usual
#   case: tokens, counts, indicators of short inputs): one bincount, one lookup;
# - ``aggregate_by_int_sums``: the other small ints (True beside 1 in one table, or long
#   inputs): exact sums from popcounts of the values' bit planes;
# - ``aggregate_by_wide_ints``: ints over a wide range (any size, beyond int64 too):
#   exact sums from popcounts of the values' bit planes, kept per 32 planes so that no
#   int64 overflows, joined into Python ints for the distinct (sums, count) only;
# - ``aggregate_by_float_sums``: any other values (floats, strings): Python's ``sum``
#   replayed one key at a time over the batch (ints exactly until the first float, then
#   float64 additions in key order), only where a query selects several keys.
SMALL_INT_RANGE = 256  # ints spanning fewer values sum exactly by at most 8 bit planes:
# 8 popcounts of a query's W words, less work than unpacking its n keys for a product
PAIR_TABLE_PER_POSITION = 4  # the pairs strategy bincounts every possible (sum, count),
PAIR_TABLE_MIN = 65536  # (max - min) * n * (n + 1) keys: worth it while they are at most
# a few per position of the batch, or few anyway (65536 int64: 512 KiB)
PLANES_PER_PART = 32  # wide ints: bit planes summed per int64 part (n * 2**32 fits)
INT64_SAFE = 2**62  # floats beside ints: the int prefix sums in int64 below this bound
EXACT_IN_FLOAT = 2**53  # ... and in float64 (every partial sum an exact integer) below this
COMPENSATED = sys.version_info >= (3, 12)  # sum() of floats is Neumaier-compensated from
# Python 3.12 on (ints after the first float are added as plain doubles); the REPL's
# means follow the Python it runs on, and so do these


def repl_mean(total: int, count: int) -> float:
    """The REPL's mean of several ints: their exact sum ``* 1.0 / count``."""
    return total * 1.0 / count


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
        if len(ints) < len(col.table):
            return self.aggregate_by_float_sums(node, col, sel, count)
        if max(ints) - min(ints) >= SMALL_INT_RANGE:
            return self.aggregate_by_wide_ints(node, col, sel, count)
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
        if one_per_int:  # one selected key: the sum of value - lo is that key's
            ints = [int(v) for v in col.table]
            lut = torch.zeros(max(ints) - lo + 1, dtype=torch.long)
            lut[torch.tensor([i - lo for i in ints])] = torch.arange(T)
            single = lookup(lut, sums.clamp(0, len(lut) - 1))
        else:
            single = self.one_key_codes(col, sel)
        codes, count, many = self.none_or_one(node, col, count, single)
        table = col.table + [node.default]
        if bool(many.any()):
            self.check_numeric(node, col, many, count)
            key = sums.expand(B, n) * (n + 1) + count  # sums of value - lo: no overflow
            fill = key.view(-1)[many.view(-1).to(torch.uint8).argmax()]
            pairs, inv = unique_inverse(torch.where(many, key, fill).view(-1))
            means = [repl_mean(p // (n + 1) + lo * (p % (n + 1)), p % (n + 1))
                     for p in pairs.tolist()]
            codes = torch.where(many, T + 1 + inv.view(B, n), codes)
            table = table + means
        out = self.dedupe(codes, table)
        self.check_sequence_types(node, out)
        return out

    def aggregate_by_wide_ints(self, node: Aggregate, col: Column, sel: torch.Tensor,
                               count: torch.Tensor) -> Column:
        """Ints over a wide range: one selected key's value gathered at the key; where a
        query selects several, the exact sum of value - lo from the bit planes (summed
        per ``PLANES_PER_PART`` planes, in int64 without overflow), and the REPL's mean
        of each distinct (parts, count) computed once with Python ints."""
        B, n = col.codes.shape
        codes, count, many = self.none_or_one(node, col, count, self.one_key_codes(col, sel))
        table = col.table + [node.default]
        if bool(many.any()):
            self.check_numeric(node, col, many, count)
            lo = min(int(v) for v in col.table)
            offsets = [int(v) - lo for v in col.table]
            codes_rows = col.codes[:1] if col.codes.stride(0) == 0 else col.codes
            parts = []
            for start in range(0, max(offsets).bit_length(), PLANES_PER_PART):
                part = None
                for bit in range(start, min(start + PLANES_PER_PART,
                                            max(offsets).bit_length())):
                    on = torch.tensor([bool(o >> bit & 1) for o in offsets])
                    plane = pack(lookup(on, codes_rows))[:, None, :]
                    ones = popcount(sel & plane) << (bit - start)
                    part = ones if part is None else part + ones
                parts.append(part.expand(B, n)[many])
            rows = torch.stack([*parts, count[many]], 1)
            uniq, inv = torch.unique(rows, dim=0, return_inverse=True)
            means = [repl_mean(sum(p << (PLANES_PER_PART * i) for i, p in enumerate(r[:-1]))
                               + lo * r[-1], r[-1]) for r in uniq.tolist()]
            codes = codes.clone()
            codes[many] = len(col.table) + 1 + inv
            table = table + means
        out = self.dedupe(codes, table)
        self.check_sequence_types(node, out)
        return out

    def aggregate_by_float_sums(self, node: Aggregate, col: Column, sel: torch.Tensor,
                                count: torch.Tensor) -> Column:
        """Floats (strings beside them only where no query averages them): one selected
        key's value gathered at the key; where a query selects several, Python's ``sum``
        of the selected values replayed key by key (``left_to_right_sums``), ``* 1.0 /
        count``, and the distinct means."""
        B, n = col.codes.shape
        codes, count, many = self.none_or_one(node, col, count, self.one_key_codes(col, sel))
        table = col.table + [node.default]
        if bool(many.any()):
            self.check_numeric(node, col, many, count)
            total = self.left_to_right_sums(col, sel, many).expand(B, n)
            uniq, inv = torch.unique(total[many] * 1.0 / count[many], return_inverse=True)
            codes = codes.clone()
            codes[many] = len(col.table) + 1 + inv
            table = table + uniq.tolist()
        out = self.dedupe(codes, table)
        self.check_sequence_types(node, out)
        return out

    def left_to_right_sums(self, col: Column, sel: torch.Tensor, many: torch.Tensor
                           ) -> torch.Tensor:
        """Per query, ``sum`` of its selected keys' values as Python adds them: from the
        int 0, ints exactly until the first float, which adds to their sum as a float;
        from there on float64 additions in key order (floats Neumaier-compensated where
        ``COMPENSATED``, ints as plain doubles), the compensation added at the end where
        it is finite and not 0. One step per key, each over the whole batch; ints too
        large for an int64 prefix beside floats take the plain definition."""
        B, n = col.codes.shape
        ints = [int(v) if isinstance(v, bool | int) else 0 for v in col.table]
        if max(abs(i) for i in ints) * max(n, 1) >= INT64_SAFE:
            return self.python_sums(col, sel, many)
        is_float = lookup(torch.tensor([isinstance(v, float) for v in col.table]), col.codes)
        as_int = lookup(torch.tensor(ints, dtype=torch.long), col.codes)
        as_float = lookup(torch.tensor([float(v) if isinstance(v, float) else float(i)
                                        for v, i in zip(col.table, ints, strict=True)],
                                       dtype=torch.float64), col.codes)
        shape = sel.shape[:2]  # [B, n or 1]
        words = [sel[:, :, w].contiguous() for w in range(sel.shape[2])]

        def selected(j: int) -> torch.Tensor:  # [B, n or 1]: whether key j is selected
            return (words[j // 64] >> (j % 64)) & 1 != 0

        if not COMPENSATED and max(abs(i) for i in ints) * max(n, 1) < EXACT_IN_FLOAT:
            # ints this small sum exactly in float64 too, so the int prefix and its one
            # rounding are the float sum of it: from 0.0, one addition per selected key
            # (adding 0.0 at the others changes nothing: the sum is never -0.0)
            f = torch.zeros(shape, dtype=torch.float64)
            zero = f.new_zeros(())
            for j in range(n):
                f += torch.where(selected(j), as_float[:, j:j + 1], zero)
            return f
        prefix = torch.zeros(shape, dtype=torch.long)
        f = torch.zeros(shape, dtype=torch.float64)
        c = torch.zeros(shape, dtype=torch.float64)
        floating = torch.zeros(shape, dtype=torch.bool)
        for j in range(n):  # over keys: each step is the batch's j-th addition
            on = selected(j)
            fl, xi, xf = is_float[:, j:j + 1], as_int[:, j:j + 1], as_float[:, j:j + 1]
            prefix = torch.where(on & ~floating & ~fl, prefix + xi, prefix)
            start = on & ~floating & fl
            later = on & floating
            t = f + xf
            if COMPENSATED:
                step = torch.where(f.abs() >= xf.abs(), (f - t) + xf, (xf - t) + f)
                c = torch.where(later & fl, c + step, c)
            f = torch.where(later, t, f)
            f = torch.where(start, prefix.to(torch.float64) + xf, f)
            floating = floating | start
        if COMPENSATED:
            f = torch.where((c != 0) & c.isfinite(), f + c, f)
        return torch.where(floating, f, prefix.to(torch.float64))

    def python_sums(self, col: Column, sel: torch.Tensor, many: torch.Tensor
                    ) -> torch.Tensor:
        """Floats beside ints too large for an int64 prefix (rare): ``sum`` itself, at
        the queries that average several keys."""
        B, n = col.codes.shape
        dense = unpack(sel, n).expand(B, n, n)
        out = torch.zeros(B, n, dtype=torch.float64)
        for b, q in many.nonzero().tolist():
            keys = dense[b, q].nonzero()[:, 0].tolist()
            out[b, q] = float(sum(col.table[col.codes[b, k]] for k in keys))
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
        values = [node.default if c == 0 else by_int[s + lo] if c == 1
                  else repl_mean(s + lo * c, c)
                  for s, c in zip(pair_sum.tolist(), pair_count.tolist(), strict=True)]
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
