"""How the batched evaluator holds values in tensors: an s-op's ``Column`` (codes into a
table of Python values) and a select's packed selection (bit k of a query's words: key k
selected), with the tensor operations on them (``pack``, ``unpack``, ``popcount``,
``single_index``, ``lookup``, ``unique_inverse``). Its one reason to change is this
representation; what the nodes compute is ``evaluate``'s and ``aggregates``'.

    >>> unpack(pack(torch.tensor([[True, False, True]])), 3).tolist()
    [[True, False, True]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Column:
    """An s-op's values on a batch: ``table[codes[b, i]]`` at real positions."""

    codes: torch.Tensor
    table: list

    def values(self, lengths: torch.Tensor) -> list[list]:
        """The values of each row as Python lists (without padding)."""
        return [[self.table[c] for c in row[: int(m)]]
                for row, m in zip(self.codes.tolist(), lengths.tolist(), strict=True)]


# ``unique_inverse`` counts (a bincount over the values' span hi - lo, then a cumsum)
# instead of sorting while the span is at most a few entries per element, or small anyway:
# counting is linear in the span, a sort n log n in the elements, and the values it gets
# (codes, ranks, sums of small ints) are mostly dense.
COUNTING_SPAN_PER_ELEMENT = 4
COUNTING_SPAN_MIN = 1024


def unique_inverse(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(x, return_inverse=True)`` for a 1-d integer tensor; by counting
    when the values span a small range (several times faster than sorting)."""
    if x.numel() == 0:
        return x.new_zeros(0), x.new_zeros(0)
    lo, hi = int(x.min()), int(x.max())
    if hi - lo > COUNTING_SPAN_PER_ELEMENT * x.numel() + COUNTING_SPAN_MIN:
        return torch.unique(x, return_inverse=True)
    present = torch.bincount(x - lo, minlength=hi - lo + 1) > 0
    rank = present.cumsum(0) - 1
    return present.nonzero()[:, 0] + lo, rank[x - lo]


# Selections are packed: bit k % 64 of word k // 64 of a query's row says whether key k
# is selected, so a [B, n, n] selection is an int64 tensor [B, n, ceil(n / 64)] (and
# broadcasts: [B, 1, W] when no query matters, [B, n, 1] holding 0 or ALL when no key does).
ALL = -1  # every bit of a word
_M1, _M2, _M4 = 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F
_BYTES = 0x0101010101010101
_np_bitwise_count = getattr(np, "bitwise_count", None)


def popcount(words: torch.Tensor) -> torch.Tensor:
    """Set bits of each row of int64 words [..., W] -> int64 [...]: numpy's
    ``bitwise_count`` (numpy >= 2, a machine instruction), else SWAR arithmetic (wrapping
    int64 arithmetic is two's complement). The W words are added one by one (W is small,
    and a reduction over a short last dimension is slow)."""
    if _np_bitwise_count is not None:
        per_word = torch.from_numpy(_np_bitwise_count(words.contiguous().numpy().view(
            np.uint64)))
    else:
        x = words - ((words >> 1) & _M1)
        x = (x & _M2) + ((x >> 2) & _M2)
        x = (x + (x >> 4)) & _M4
        per_word = ((x * _BYTES) >> 56) & 0xFF
    out = per_word[..., 0]
    if per_word.shape[-1] * 64 > 255:  # the sum may not fit a byte
        out = out.long()
    for w in range(1, per_word.shape[-1]):
        out = out + per_word[..., w]
    return out.long()


def pack(bits: torch.Tensor) -> torch.Tensor:
    """BoolTensor[..., n] -> int64 [..., ceil(n / 64)] (bytes of a word are little-endian)."""
    n = bits.shape[-1]
    W = -(-n // 64)
    padded = torch.zeros(*bits.shape[:-1], W * 64, dtype=torch.uint8)
    padded[..., :n] = bits
    by = (padded.view(*bits.shape[:-1], W * 8, 8) << torch.arange(8, dtype=torch.uint8)).sum(
        -1, dtype=torch.uint8)
    return by.view(torch.int64)


def lookup(values: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``values[codes]`` for a 1-d ``values`` (``index_select`` is several times faster
    than advanced indexing; codes broadcast over rows are looked up once)."""
    if codes.dim() == 2 and codes.shape[0] > 1 and codes.stride(0) == 0:
        return lookup(values, codes[:1]).expand(codes.shape)
    return values.index_select(0, codes.reshape(-1)).view(codes.shape)


_BYTE_BITS = ((torch.arange(256)[:, None] >> torch.arange(8)) & 1).bool()  # [256, 8]


def unpack(words: torch.Tensor, n: int) -> torch.Tensor:
    """int64 [..., W] -> BoolTensor[..., n] (bytes of a word are little-endian)."""
    by = words.contiguous().view(torch.uint8)  # [..., W * 8]
    bits = _BYTE_BITS.index_select(0, by.reshape(-1).long()).view(*by.shape, 8)
    return bits.reshape(*words.shape[:-1], words.shape[-1] * 64)[..., :n]


def single_index(words: torch.Tensor) -> torch.Tensor:
    """For packed rows with exactly one bit set, its index (anything for other rows)."""
    if words.shape[-1] == 1:
        word, base = words, 0
    else:
        w_idx = (words != 0).to(torch.uint8).max(-1).indices
        word, base = words.gather(-1, w_idx[..., None]), w_idx * 64
    # a word with only bit b set, minus one, has exactly the bits below b set (bit 63:
    # int64 wraps from the minimum to the maximum, 63 bits)
    return base + popcount(word - 1)


