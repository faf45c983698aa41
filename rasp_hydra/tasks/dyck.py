"""``dyck{i}_ptf``: Dyck-i prefix classification. For each prefix: ``T`` if balanced,
``P`` if not balanced but still completable, ``F`` once a closer does not match the
innermost open bracket (or arrives with nothing open); after the first ``F`` every
output is ``F``. Neutral tokens never change the state. Output classes P, T, F
(dyck2: "(a){)(" -> P P T P F F).

Brackets are the first i pairs of ``()``, ``{}``, ``[]``, ``<>``, ``\\/``, `` `' ``, ``ab``,
``xy``; the alphabet is the bracket characters in that order, then the neutral token.
The neutral is ``a`` for i <= 6, as in the original. For i = 7 and 8 ``a`` is itself a
bracket (the pair ``ab``), so this project uses ``.`` as the neutral there (``.`` is in
no pair and reads as "nothing").

RASP (paper; Dyck-1 needs 2 layers, Dyck-i for i >= 2 needs 3, 1 head each)::

    prefix  = select(indices, indices, <=)                    # layer 0 head 0
    balance = numerical mean(prefix, opens) - mean(prefix, closes)   (per pair)
    ...       (layer 1: "was any prefix balance negative?", same prefix selector)

The original defines no target selector for Dyck. The prefix-balance selector
``select(indices, indices, <=)`` of the paper's program, placed at layer 0 head 0 where
the balances are computed, is a reference selector added by this project, for every i
(the Dyck-i program computes all its pair balances with this one selector). It looks
at BOS, like every RASP selector compiled with BOS.

Sampling (sample index j uses generator j mod 3):
0. balanced: a target length n uniform in min_len..max_len; start from the empty string
   and repeatedly insert, at a uniformly random position (one of len+1 slots), the
   neutral (probability 0.3) or a whole random bracket pair "()" (0.7), until the length
   is at least n. A pair that would make the string longer than max_len is inserted as
   the neutral instead, so lengths never exceed max_len.
1. a balanced string b as in 0, cut at a uniform position c in 0..len(b), the rest
   replaced by len(b) - c uniform random tokens.
2. length uniform in min_len..max_len, tokens uniform over the alphabet.
All samples are generated together, one insertion step at a time (vectorized over the
samples that are not yet long enough).
"""

from __future__ import annotations

import numpy as np
import torch

from .base import Family, Selector
from .primitives import indices, select_prefix, valid

PAIRS = ("()", "{}", "[]", "<>", "\\/", "`'", "ab", "xy")
NEUTRAL = "a"
NEUTRAL_FOR_MANY_PAIRS = "."  # for i >= 7, where "a" is a bracket
P, T, F = 0, 1, 2
P_NEUTRAL, P_PAIR = 0.3, 0.7


def dyck_ptf(x: torch.Tensor, lengths: torch.Tensor, pairs: int) -> torch.Tensor:
    """Output ids (P=0, T=1, F=2) for token ids where pair p is (2p, 2p+1) and the
    neutral is 2*pairs. Vectorized, O(B n log n):

    depth(j) is the running open-minus-close count. An opener's level is its depth
    after it, a closer's level its depth before it. Sort each row's brackets by
    (level, position): in a valid prefix, the element just before a closer in that
    order is the opener it closes. A closer fails unless that element is an opener of
    its pair at its level (a closer at level <= 0 never has one). Before the first
    failure this matching is exact, and every later output is F anyway.

    >>> from rasp_hydra.tasks.primitives import ids
    >>> x, n = ids("(a)", "{(})", "())(", alphabet="(){}a")
    >>> dyck_ptf(x, n, 2).tolist()
    [[0, 0, 1, 1], [0, 0, 2, 2], [0, 1, 2, 2]]
    """
    B, n = x.shape
    real = valid(x, lengths)
    is_bracket = (x < 2 * pairs) & real
    is_open = is_bracket & (x % 2 == 0)
    is_close = is_bracket & ~is_open
    step = is_open.int() - is_close.int()
    depth = step.cumsum(1, dtype=torch.int32)  # after each position
    level = depth + is_close.int()  # an opener's depth after it, a closer's before it
    i = indices(x).int()
    key = torch.where(is_bracket, (level + n + 1) * (n + 1) + i[None, :],
                      torch.full_like(level, (3 * n + 3) * (n + 1)))
    order = torch.sort(key, dim=1).indices
    sx, sl = x.gather(1, order), level.gather(1, order)
    so, sc = is_open.gather(1, order), is_close.gather(1, order)
    prev_matches = so[:, :-1] & (sl[:, :-1] == sl[:, 1:]) & (sx[:, :-1] + 1 == sx[:, 1:])
    bad_sorted = sc.clone()
    bad_sorted[:, 1:] &= ~prev_matches
    bad = torch.zeros_like(bad_sorted).scatter_(1, order, bad_sorted)
    failed = bad.int().cumsum(1, dtype=torch.int32) > 0
    return torch.where(failed, F, torch.where(depth == 0, T, P))


def _balanced(rng: np.random.Generator, target: np.ndarray, pairs: int, max_len: int,
              neutral: int) -> tuple[np.ndarray, np.ndarray]:
    """Generator 0 for each target length, step-synchronous over the rows: every row that
    is still shorter than its target inserts one item per step.

    Instead of shifting strings, each row keeps its characters in insertion order with
    their current positions: an insertion of width w at slot s adds w to every position
    >= s. The strings are laid out once at the end."""
    m = len(target)
    far = np.int32(1 << 20)  # position of a character not yet inserted
    pos = np.full((m, max_len), far, dtype=np.int32)
    tok = np.full((m, max_len), neutral, dtype=np.int64)
    cur = np.zeros(m, dtype=np.int64)
    live = np.arange(m)  # rows (of the block) still held in the compact arrays
    lpos, ltok, lcur, ltarget = pos, tok, cur, target.astype(np.int64)
    while True:
        act = lcur < ltarget
        if not act.any():
            break
        if act.mean() < 0.7:  # drop finished rows from the working arrays
            pos[live], tok[live], cur[live] = lpos, ltok, lcur
            live, lpos, ltok = live[act], lpos[act], ltok[act]
            lcur, ltarget, act = lcur[act], ltarget[act], act[act]
        # Draws are made for every row of the block (fixed shapes -> reproducible).
        u_pair, u_slot = rng.random(m)[live], rng.random(m)[live]
        pair = rng.integers(0, pairs, size=m)[live]
        w = np.where((u_pair < P_PAIR) & (lcur + 2 <= max_len), 2, 1) * act
        slot = np.minimum((u_slot * (lcur + 1)).astype(np.int64), lcur)
        width = int(lcur.max())
        view = lpos[:, :width]
        view += (view >= slot[:, None]) * w[:, None].astype(np.int32)
        r = np.nonzero(act)[0]
        c, s = lcur[r], slot[r]
        first = np.where(w[r] == 2, 2 * pair[r], neutral)
        lpos[r, c], ltok[r, c] = s, first
        two = r[w[r] == 2]
        lpos[two, lcur[two] + 1] = slot[two] + 1
        ltok[two, lcur[two] + 1] = 2 * pair[two] + 1
        lcur = lcur + w
    pos[live], tok[live], cur[live] = lpos, ltok, lcur
    out = np.full((m, max_len), neutral, dtype=np.int64)
    used = np.arange(max_len)[None, :] < cur[:, None]
    rows = np.broadcast_to(np.arange(m)[:, None], used.shape)
    out[rows[used], pos[used]] = tok[used]
    return out, cur


class Dyck(Family):
    name = "dyck"
    sizes = (1, 2, 3, 4, 5, 6, 7, 8)
    default_size = 1
    max_size = len(PAIRS)
    heads = 1
    description = "Dyck prefix class P/T/F"

    def __init__(self, size):
        super().__init__(size)
        self.layers = 2 if size == 1 else 3

    @classmethod
    def base_name(cls, size):
        return f"dyck{size}_ptf"

    @property
    def neutral(self) -> str:
        return NEUTRAL if self.size <= 6 else NEUTRAL_FOR_MANY_PAIRS

    def make_alphabet(self, size):
        return "".join(PAIRS[:size]) + (NEUTRAL if size <= 6 else NEUTRAL_FOR_MANY_PAIRS)

    def make_out_classes(self):
        return ("P", "T", "F")

    def outputs(self, x, lengths):
        return dyck_ptf(x, lengths, self.size)

    def selectors(self):
        return {(0, 0): Selector(select_prefix, "prefix (k <= q)", reference=True)}

    def sample(self, rng, count, min_len, max_len, start):
        k = len(self.alphabet)
        neutral = k - 1
        gen = (start + np.arange(count)) % 3
        target = rng.integers(min_len, max_len + 1, size=count)
        uniform = rng.integers(0, k, size=(count, max_len))
        cut_u = rng.random(count)
        ids = uniform.copy()
        lengths = target.copy()
        rows = np.nonzero(gen != 2)[0]
        if len(rows) and max_len > 0:
            bal, blen = _balanced(rng, target[rows], self.size, max_len, neutral)
            # generator 1: keep a uniform prefix c in 0..len(b), noise after it
            cut = np.minimum((cut_u[rows] * (blen + 1)).astype(np.int64), blen)
            cut = np.where(gen[rows] == 1, cut, blen)
            keep = np.arange(max_len)[None, :] < cut[:, None]
            ids[rows] = np.where(keep, bal, uniform[rows])
            lengths[rows] = blen
        return ids, lengths
