"""Batched RASP primitives shared by the task families.

Every function works on a batch: ``x`` is a LongTensor[B, n] of token ids *without* BOS
(alphabet ids 0..k-1; padding holds an id that is no alphabet id), ``lengths`` a
LongTensor[B]. Selectors return BoolTensor[B, n, n] indexed ``[batch, query, key]``;
what they hold in padded rows and columns does not matter (the Task masks it).

Speed (CPU, one thread): a [B, n, n] comparison of int64 values broadcast as
``a[:, :, None] == a[:, None, :]`` is ~20x slower than the same comparison of uint8 values
with the query side made contiguous, so pairwise comparisons go through ``compare``;
per-position quantities (counts, first occurrences, places in a sort) are computed in
O(B n) or O(B n log n), and selectors are built from them with one comparison or a scatter.

The examples below run as doctests; ``ids`` turns words into a padded batch and ``show``
prints a selector as a 0/1 matrix (rows are queries q, columns keys k).
"""

from __future__ import annotations

import torch

from .base import ALL_TOKENS


def ids(*words: str, alphabet: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``words`` as (x, lengths), ids by position in ``alphabet`` (default ALL_TOKENS).

    >>> x, n = ids("cab", "a")
    >>> x.tolist(), n.tolist()
    ([[2, 0, 1], [0, 101, 101]], [3, 1])
    """
    alphabet = ALL_TOKENS if alphabet is None else alphabet
    pad = len(alphabet) + 1
    n = max((len(w) for w in words), default=0)
    rows = [[alphabet.index(c) for c in w] + [pad] * (n - len(w)) for w in words]
    return torch.tensor(rows, dtype=torch.long).view(len(words), n), torch.tensor(
        [len(w) for w in words], dtype=torch.long
    )


def show(t: torch.Tensor) -> None:
    """Print the first item of a batch: a matrix as rows of 0/1, a vector as numbers."""
    t = t[0]
    if t.dim() == 1:
        print(" ".join(str(int(v)) for v in t))
        return
    for row in t:
        print("".join(str(int(v)) for v in row))


def indices(x: torch.Tensor) -> torch.Tensor:
    """Positions 0..n-1, shape [n]."""
    return torch.arange(x.shape[1], device=x.device)


def valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """BoolTensor[B, n]: True at real (unpadded) positions.

    >>> show(valid(*ids("abc", "a")))
    1 1 1
    """
    return indices(x)[None, :] < lengths[:, None]


def compare(q_vals: torch.Tensor, k_vals: torch.Tensor, op) -> torch.Tensor:
    """BoolTensor[B, n, n]: ``op(q_vals[b, q], k_vals[b, k])`` for integer values.

    >>> show(compare(torch.tensor([[1, 2, 3]]), torch.tensor([[2, 2, 2]]), torch.lt))
    111
    000
    000
    """
    B, n = q_vals.shape
    if q_vals.device.type != "cpu":  # reading min/max would sync the device every batch
        return op(q_vals[:, :, None], k_vals[:, None, :])
    lo = min(int(q_vals.min()), int(k_vals.min())) if q_vals.numel() else 0
    hi = max(int(q_vals.max()), int(k_vals.max())) if q_vals.numel() else 0
    if 0 <= lo and hi <= 255:  # the fast path
        q_vals, k_vals = q_vals.to(torch.uint8), k_vals.to(torch.uint8)
    q = q_vals[:, :, None].expand(B, n, n).contiguous()
    return op(q, k_vals[:, None, :])


def select_same_token(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """RASP ``select(tokens, tokens, ==)``: x[q] == x[k].

    >>> show(select_same_token(*ids("abca")))
    1001
    0100
    0010
    1001
    """
    return compare(x, x, torch.eq)


def select_earlier(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """RASP ``select(indices, indices, <)``: k < q (strictly earlier key).

    >>> show(select_earlier(*ids("abc")))
    000
    100
    110
    """
    i = indices(x)
    return (i[None, :] < i[:, None]).expand(x.shape[0], -1, -1)


def select_prefix(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """RASP ``select(indices, indices, <=)``: k <= q (the prefix up to and including q).

    >>> show(select_prefix(*ids("abc")))
    100
    110
    111
    """
    i = indices(x)
    return (i[None, :] <= i[:, None]).expand(x.shape[0], -1, -1)


def _id_bound(x: torch.Tensor) -> int:
    """More than the largest id in x. On a GPU a fixed bound: reading x.max() would sync
    the device every batch, and ids (an alphabet of at most 100 tokens, BOS, padding)
    stay below 256."""
    if x.device.type != "cpu":
        return 256
    return int(x.max()) + 1 if x.numel() else 1


def token_counts(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """LongTensor[B, n]: how often x[q] occurs in its sequence (the width of
    ``select_same_token``), computed in O(B n) with a scatter over token ids.

    >>> show(token_counts(*ids("abcaa")))
    3 1 1 3 3
    """
    real = valid(x, lengths)
    per_token = torch.zeros(x.shape[0], _id_bound(x), dtype=torch.long, device=x.device)
    per_token.scatter_add_(1, x, real.long())
    return per_token.gather(1, x)


def first_occurrence(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """BoolTensor[B, n]: whether position j holds the first occurrence of its token.

    >>> show(first_occurrence(*ids("abcab")).long())
    1 1 1 0 0
    """
    B, n = x.shape
    pos = indices(x).expand(B, n)
    first = torch.full((B, _id_bound(x)), n, dtype=torch.long, device=x.device)
    first.scatter_reduce_(1, x, pos, reduce="amin")
    return first.gather(1, x) == pos


def row_width(selector: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """RASP ``selector_width`` over real keys: LongTensor[B, n], row q's number of
    selected real keys k.

    >>> x, n = ids("abc")
    >>> show(row_width(select_earlier(x, n), n))
    0 1 2
    """
    real_k = valid(selector[:, 0, :], lengths)
    return (selector & real_k[:, None, :]).sum(-1)  # (slowish; the families use stable_place)


def stable_place(key: torch.Tensor) -> torch.Tensor:
    """LongTensor[B, n]: where each position lands in a stable ascending sort of ``key``,
    i.e. how many positions j have key[j] < key[i], or key[j] == key[i] and j < i: the
    selector width of that "before" selector, in O(n log n).

    >>> show(stable_place(torch.tensor([[5, 3, 5, 1]])))
    2 1 3 0
    """
    order = torch.sort(key, dim=1, stable=True).indices
    pos = torch.empty_like(order)
    return pos.scatter_(1, order, indices(key).expand_as(order).contiguous())


def select_before_in(place: torch.Tensor) -> torch.Tensor:
    """Select (q, k) iff place[k] < place[q] (k comes earlier in a total order).

    >>> show(select_before_in(torch.tensor([[2, 1, 3, 0]])))
    0101
    0001
    1101
    0000
    """
    return compare(place, place, torch.gt)


def select_place(pos: torch.Tensor) -> torch.Tensor:
    """Select (q, k) iff q == pos(k): move the value at k to position pos(k). Built with
    a scatter (positions >= n select nothing).

    >>> show(select_place(torch.tensor([[2, 0, 1]])))
    010
    001
    100
    """
    B, n = pos.shape
    out = torch.zeros(B, n + 1, n, dtype=torch.bool, device=pos.device)
    out.scatter_(1, pos.clamp(0, n)[:, None, :], True)
    return out[:, :n]
