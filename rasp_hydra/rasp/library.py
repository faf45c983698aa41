"""The seven Table 1 programs in the Python API, as small tracr-style builders: the same
programs as the shipped ``rasp_hydra/rasp/programs/*.rasp`` (same selects, same head
order, same values), each intermediate named as there.

They are the paper's programs (``paper_examples.rasp`` of the reference REPL) with the
changes that make them compute exactly the hand-written families' tasks:

- hist and hist2 give the families' classes: the count capped at 10, as a string
  "0".."10", and "§" at the BOS position;
- sort keys BOS as "" and sort_by_freq scores BOS 202, so that BOS ranks before every
  token and the BOS query row of the "goes before" head selects only BOS (the paper's
  key "§" sorts after every ASCII token, so its BOS row selected them all); a later copy
  scores its count minus 202 (the family's constant) instead of the paper's 300;
- dyck-k gives neutral tokens a level no bracket has (0.5): the paper's program counts a
  neutral between an opener and its closer in ``level_rank``, so "(a)" came out F.

Budgets (the reference REPL's analysis of them, and the paper's Table 1 except dyck-2):
reverse 2/1, hist_bos 1/1, hist2_bos 2/2, sort_bos 2/1, sort_by_freq_bos 3/2, dyck1 2/1,
dyck2 4 layers with 1/2/1/1 heads (Table 1's 3/1 assumes a ``best`` operation that
RASP lacks).

Selector agreement with the families' targets (after their BOS wrap): every compiled
head equals the family's target selector at the same (layer, head), except the
sort_by_freq layer 2 "place" head, whose BOS column is False in the rows after BOS where
the family's is True: the program aggregates string tokens through it, and selecting
BOS too would make two keys, whose mean is an error for strings.
"""

from __future__ import annotations

from .lang import (
    SOp,
    aggregate,
    indicator,
    indices,
    length,
    map,
    sel_and,
    sel_or,
    select,
    selector_width,
    selector_width_bos,
    sop_and,
    sop_not,
    sop_or,
    tokens,
    where,
)

COUNT_CLASSES = [str(i) for i in range(11)]
DEMOTE = 202  # subtracted from the score of a later copy (the hand-written family's)


def _min(a, b) -> SOp:
    """rasplib's ``min``: ``a if a < b else b``."""
    return where(a < b, a, b)


def _count_class(count: SOp) -> SOp:
    return map(lambda i: COUNT_CLASSES[i], _min(count, 10), name="count_class")


def reverse() -> SOp:
    """The input reversed.

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(reverse(), "abc")
    ['c', 'b', 'a']
    """
    flip = select(indices, length - indices - 1, "==").named("flip")
    return aggregate(flip, tokens).named("reverse")


def hist_bos() -> SOp:
    """How often each position's token occurs (capped at 10), with BOS.

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(hist_bos(), "§abca")
    ['§', '2', '1', '1', '2']
    """
    return where(indices == 0, "§", _count_class(_token_count())).named("hist_bos")


def _token_count() -> SOp:
    same_token = select(tokens, tokens, "==").named("same_token")
    return selector_width_bos(same_token).named("token_count")


def _has_earlier_copy() -> SOp:
    earlier_copy = sel_and(select(tokens, tokens, "=="),
                           select(indices, indices, "<")).named("earlier_copy")
    return (selector_width_bos(earlier_copy) > 0).named("has_earlier_copy")


def hist2_bos() -> SOp:
    """How many distinct tokens occur as often as my token (capped at 10), with BOS.

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(hist2_bos(), "§aabc")
    ['§', '1', '1', '2', '2']
    """
    token_count = _token_count()  # first: its select is layer 0's head 0
    has_earlier_copy = _has_earlier_copy()
    same_count_first = sel_and(select(token_count, token_count, "=="),
                               select(has_earlier_copy, False, "==")).named("same_count_first")
    with_my_count = selector_width_bos(same_count_first).named("tokens_with_my_count")
    return where(indices == 0, "§", _count_class(with_my_count)).named("hist2_bos")


def sort_with_bos(seq: SOp, key: SOp) -> SOp:
    """``seq`` reordered by ascending ``key`` (ties by position), BOS staying at 0;
    ``key`` must rank BOS before every token."""
    goes_before = sel_or(select(key, key, "<"),
                         sel_and(select(key, key, "=="), select(indices, indices, "<"))
                         ).named("goes_before")
    place = selector_width_bos(goes_before).named("place")
    place = where(indices == 0, -1, place).named("place")
    take_placed = select(place, indices - 1, "==").named("take_placed")
    bos_takes_itself = sel_and(select(indices, 0, "=="), select(indices, indices, "=="),
                               name="bos_takes_itself")
    return aggregate(sel_or(take_placed, bos_takes_itself, name="take_placed_or_bos"), seq)


def sort_bos() -> SOp:
    """The tokens sorted by code point, with BOS.

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(sort_bos(), "§cAab")
    ['§', 'A', 'a', 'b', 'c']
    """
    sort_key = where(indices == 0, "", tokens).named("sort_key")
    return sort_with_bos(tokens, sort_key).named("sort_bos")


def sort_by_freq_bos() -> SOp:
    """The distinct tokens by descending count (ties by first occurrence), then "§".

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(sort_by_freq_bos(), "§abcbc")
    ['§', 'b', 'c', 'a', '§', '§']
    """
    token_count = _token_count()  # first: its select is layer 0's head 0
    has_earlier_copy = _has_earlier_copy()
    score = where(indices == 0, DEMOTE,
                  token_count - indicator(has_earlier_copy) * DEMOTE).named("score")
    shown = where(has_earlier_copy, "§", tokens).named("shown")
    return sort_with_bos(shown, -score).named("sort_by_freq_bos")


def dyck1_ptf() -> SOp:
    """Dyck-1 prefixes: "T" balanced, "P" completable, "F" once broken.

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(dyck1_ptf(), "(a))(")
    ['P', 'P', 'T', 'F', 'F']
    """
    prefix = select(indices, indices, "<=").named("prefix")
    n_opens = round((indices + 1) * aggregate(prefix, indicator(tokens == "("))).named(
        "n_opens")
    n_closes = round((indices + 1) * aggregate(prefix, indicator(tokens == ")"))).named(
        "n_closes")
    balance = (n_opens - n_closes).named("balance")
    went_negative = (aggregate(prefix, indicator(balance < 0)) > 0).named("went_negative")
    return where(went_negative, "F", where(balance == 0, "T", "P")).named("dyck1_ptf")


def dyckk_ptf(pairs: list[str]) -> SOp:
    """Dyck-k prefixes for bracket ``pairs`` (e.g. ["()", "{}"]), neutrals allowed.

    >>> from rasp_hydra.rasp import evaluate
    >>> evaluate(dyckk_ptf(["()", "{}"]), "(a){)(")
    ['P', 'P', 'T', 'P', 'F', 'F']
    """
    openers = [p[0] for p in pairs]
    closers = [p[1] for p in pairs]
    opens = indicator(map(lambda t: t in openers, tokens)).named("opens")
    closes = indicator(map(lambda t: t in closers, tokens)).named("closes")
    prefix = select(indices, indices, "<=").named("prefix")
    n_opens = round((indices + 1) * aggregate(prefix, opens)).named("n_opens")
    n_closes = round((indices + 1) * aggregate(prefix, closes)).named("n_closes")
    depth = (n_opens - n_closes).named("depth")
    level = (depth + closes).named("level")
    level = where(opens + closes == 0, 0.5, level).named("level")
    level_rank = selector_width(sel_and(select(level, level, "=="), prefix)).named(
        "level_rank")
    opener_of = sel_and(sel_and(select(opens, True, "=="), select(level, level, "==")),
                        select(level_rank, level_rank - 1, "==")).named("opener_of")
    matched_opener = aggregate(opener_of, tokens, "-").named("matched_opener")
    matches = map(lambda s: s in pairs, matched_opener + tokens).named("matches")
    mismatch = sop_and(closes, sop_not(matches)).named("mismatch")
    had_problem = (aggregate(prefix, indicator(sop_or(mismatch, depth < 0))) > 0).named(
        "had_problem")
    return where(had_problem, "F", where(depth == 0, "T", "P")).named("dyck_ptf")


def dyck2_ptf() -> SOp:
    """Dyck-2 over "()", "{}" (and the neutral "a")."""
    return dyckk_ptf(["()", "{}"]).named("dyck2_ptf")


# name -> (builder, family task name, BOS?), the Table 1 tasks
TABLE1 = {
    "reverse": (reverse, "reverse", False),
    "hist_bos": (hist_bos, "hist", True),
    "hist2_bos": (hist2_bos, "hist2", True),
    "sort_bos": (sort_bos, "sort", True),
    "sort_by_freq_bos": (sort_by_freq_bos, "sort_by_freq", True),
    "dyck1_ptf": (dyck1_ptf, "dyck1_ptf", False),
    "dyck2_ptf": (dyck2_ptf, "dyck2_ptf", False),
}
