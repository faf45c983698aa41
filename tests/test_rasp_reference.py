"""The batched evaluator against the plain per-position one (tests/rasp_reference.py) on
random well-typed programs (every primitive, depth 3 to 5, nodes shared between
branches) and random inputs (strings with and without BOS, digits, ints, bools; 1 to 12
elements, some up to 48): the same value, of the same type, at every position, or the
same error. Floats stay exact by construction: only ints, bools and dyadic floats are
averaged over several keys, so a sum's order cannot change it (the batched evaluator
adds in a matrix product's order, which is documented to differ in the last bit)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from rasp_hydra.rasp import evaluate as batched_evaluate
from rasp_hydra.rasp import evaluate_batch, full_s, length, selector_width, selector_width_bos
from rasp_hydra.rasp.evaluate import _Batch, encode
from rasp_hydra.rasp.lang import (
    RASPEvalError,
    Select,
    aggregate,
    constant,
    indicator,
    indices,
    map,
    numerical_mean,
    sel_and,
    sel_not,
    sel_or,
    select,
    sop_and,
    sop_not,
    sop_or,
    tokens_asis,
    tokens_bool,
    tokens_float,
    tokens_int,
    tokens_str,
    where,
    zipmap,
)
from tests import rasp_reference as reference

PROGRAMS = 150
AGGREGATES = 100
ROWS = 6  # inputs per program, evaluated as one batch (and the first alone too)
BOS = "§"
OPS = ["==", "!=", "<", ">", "<=", ">=", "true", "false"]
STRATEGIES = ["aggregate_by_pairs", "aggregate_by_int_sums", "aggregate_by_wide_ints",
              "aggregate_by_float_sums"]

# Each alphabet: a sampler of one input element, and the input s-ops a program on it
# reads, by kind. Kinds: str, int (ints and bools), bool, float (dyadic: sums exact in any
# order) and mean (any number, averages included: never averaged again).
ALPHABETS = {
    "letters": (lambda r: r.choice("abcde"), {"str": [tokens_str]}),
    "letters_bos": (lambda r: r.choice("abc"), {"str": [tokens_str]}),
    "digits": (lambda r: r.choice("0123456789"),
               {"str": [tokens_str], "int": [tokens_int], "float": [tokens_float],
                "bool": [tokens_bool]}),
    "digits_bos": (lambda r: r.choice("0123"), {"str": [tokens_str], "int": [tokens_int]}),
    "ints": (lambda r: r.randint(-3, 4),
             {"int": [tokens_int, tokens_asis], "str": [tokens_str], "float": [tokens_float],
              "bool": [tokens_bool]}),
    "bools": (lambda r: r.random() < 0.5, {"bool": [tokens_asis, tokens_bool],
                                           "int": [tokens_int]}),
}

# elementwise functions, module-level so that two maps of one function on one s-op are
# one computation (which the batched evaluator shares)
INT_TO_INT = [lambda x: x + 1, lambda x: x - 2, lambda x: -x, abs, lambda x: x * 3,
              lambda x: x % 3, lambda x: x // 2, lambda x: min(x, 3),
              lambda x: x * 37 - 100]
INT_TO_WIDE = [lambda x: x * 5 % 97, lambda x: x * 37 % 251, lambda x: x * 37 - 100,
               lambda x: x * 1000, lambda x: x * 1000 + 1]
INT_INT_TO_INT = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b % 7, max]
INT_TO_BOOL = [lambda x: x > 1, lambda x: x == 0, lambda x: x % 2 == 0]
INT_TO_STR = [lambda x: "abc"[x % 3], str]
INT_TO_FLOAT = [lambda x: x / 2, lambda x: x * 0.25, float]
STR_TO_STR = [str.upper, lambda s: s * 2, lambda s: s if s < "c" else "z"]
STR_TO_INT = [len, lambda s: ord(s[0]) % 4]
STR_TO_BOOL = [lambda s: s == "a", lambda s: s < "c"]
FLOAT_TO_FLOAT = [lambda x: x * 2, lambda x: x + 0.5, lambda x: -x]
FLOAT_FLOAT_TO_FLOAT = [lambda a, b: a + b, lambda a, b: a - b]
MEAN_TO_MEAN = [lambda x: x * 2, lambda x: x - 1, abs]
NUMBER_TO_INT = [round, int]
SELECT_KINDS = [("int", "int"), ("str", "str"), ("int", "float"), ("float", "mean"),
                ("mean", "int"), ("bool", "int"), ("str", "int")]  # the last: == is False


class Maker:
    """Random programs: ``sop(kind, depth)`` builds an s-op of that kind whose longest
    path to an input is at most ``depth``; earlier nodes are reused now and then."""

    def __init__(self, rng: random.Random, sources: dict):
        self.r, self.sources = rng, sources
        self.made: dict[str, list] = {}

    def sop(self, kind: str, depth: int):
        r = self.r
        if depth <= 0 or r.random() < 0.12:
            return self.leaf(kind)
        if self.made.get(kind) and r.random() < 0.2:
            return r.choice(self.made[kind])
        node = getattr(self, f"{kind}_sop")(depth - 1)
        self.made.setdefault(kind, []).append(node)
        return node

    def leaf(self, kind: str):
        """An input of that kind (a function of the indices if the alphabet has none),
        now and then a constant."""
        r = self.r
        if kind == "mean":
            kind = r.choice(["int", "float"])
        if r.random() < 0.1:
            return constant({"int": r.randint(-2, 3), "str": r.choice("bz"),
                             "bool": r.random() < 0.5, "float": 1.25}[kind])
        inputs = self.sources.get(kind, []) + ([indices, indices, length] if kind == "int"
                                               else [])
        if inputs:
            return r.choice(inputs)
        return map(self.pick({"str": INT_TO_STR, "bool": INT_TO_BOOL,
                              "float": INT_TO_FLOAT}[kind]), indices)

    def pick(self, fns):
        return self.r.choice(fns)

    # --- one maker per kind: the s-ops that give values of that kind -------------------
    def int_sop(self, d):
        r = self.r
        case = r.randrange(11)
        if case == 0:
            return map(self.pick(INT_INT_TO_INT), self.sop("int", d), self.sop("int", d))
        if case == 1:
            return map(self.pick(STR_TO_INT), self.sop("str", d))
        if case == 2:
            return indicator(self.sop("bool", d))
        if case == 3:
            return map(self.pick(NUMBER_TO_INT), self.sop("mean", d))
        if case == 4:
            return selector_width(self.select(d))
        if case == 5:
            return selector_width_bos(self.select(d))
        if case == 6:
            return aggregate(self.one_key(d), self.sop("int", d), r.choice([None, -1]))
        if case == 7:
            return where(self.sop("bool", d), self.sop("int", d), self.sop("int", d))
        if case == 8:  # True beside 1 in one sequence
            return where(self.sop("bool", d), True, self.sop("int", d))
        if case == 9:  # fails where (and only where) the divisor is 0
            return zipmap(lambda a, b: a // b, self.sop("int", d), self.sop("int", d))
        return map(self.pick(INT_TO_INT), self.sop("int", d))

    def str_sop(self, d):
        r = self.r
        case = r.randrange(5)
        if case == 0:
            return map(self.pick(INT_TO_STR), self.sop("int", d))
        if case == 1:  # None: the default 0 mixes with strings where nothing is selected
            return aggregate(self.one_key(d), self.sop("str", d), r.choice(["-", None]))
        if case == 2:
            return where(self.sop("bool", d), self.sop("str", d), self.sop("str", d))
        if case == 3:
            return map(min, self.sop("str", d), self.sop("str", d))
        return map(self.pick(STR_TO_STR), self.sop("str", d))

    def bool_sop(self, d):
        r = self.r
        case = r.randrange(7)
        if case == 0:
            return map(self.pick(INT_TO_BOOL), self.sop("int", d))
        if case == 1:
            return map(self.pick(STR_TO_BOOL), self.sop("str", d))
        if case == 2:
            return self.sop(r.choice(["int", "mean"]), d) < self.sop("int", d)
        if case == 3:
            return sop_not(self.sop("bool", d))
        if case == 4:
            return r.choice([sop_and, sop_or])(self.sop("bool", d), self.sop("bool", d))
        if case == 5:
            return aggregate(self.one_key(d), self.sop("bool", d), False)
        return self.sop("float", d) > 1.5

    def float_sop(self, d):
        r = self.r
        case = r.randrange(4)
        if case == 0:
            return map(self.pick(INT_TO_FLOAT), self.sop("int", d))
        if case == 1:
            return map(self.pick(FLOAT_FLOAT_TO_FLOAT), self.sop("float", d),
                       self.sop("float", d))
        if case == 2:
            return aggregate(self.one_key(d), self.sop("float", d), r.choice([None, 0.5]))
        return map(self.pick(FLOAT_TO_FLOAT), self.sop("float", d))

    def mean_sop(self, d):
        r = self.r
        case = r.randrange(7)
        if case <= 2:  # the numerical aggregate, over any select
            kind = r.choice(["int", "wide int", "wide int", "float", "float", "float", "bool",
                             "True beside 1"])
            if kind == "wide int":  # 100 to 250 values: each strategy, by the length
                values = map(self.pick(INT_TO_WIDE), self.sop("int", d))
            elif kind == "True beside 1":
                values = where(self.sop("bool", d), True, self.sop("int", d))
            else:
                values = self.sop(kind, d)
            default = r.choice([None, 0, -1, 2.5, True])
            sel = self.comparison(d) if r.random() < 0.6 else self.select(d)
            return aggregate(sel, values, default)
        if case == 3:
            return numerical_mean(self.select(d), self.sop("int", d))
        if case == 4:
            return aggregate(self.one_key(d), self.sop("mean", d))
        if case == 5:
            return self.sop("mean", d) + self.sop("int", d)
        return map(self.pick(MEAN_TO_MEAN), self.sop("mean", d))

    def select(self, d) -> Select:
        r = self.r
        if self.made.get("select") and r.random() < 0.25:
            return r.choice(self.made["select"])
        case = r.randrange(9) if d > 0 else 0
        if case <= 3:
            sel = self.comparison(d)
        elif case == 4:
            sel = self.one_key(d)
        elif case == 5:
            sel = sel_and(self.select(d - 1), self.select(d - 1))
        elif case == 6:
            sel = sel_or(self.select(d - 1), self.select(d - 1))
        elif case == 7:
            sel = sel_not(self.select(d - 1))
        else:
            sel = full_s
        self.made.setdefault("select", []).append(sel)
        return sel

    def comparison(self, d) -> Select:
        keys, queries = self.r.choice(SELECT_KINDS)
        if self.r.random() < 0.5:
            keys, queries = queries, keys
        return select(self.sop(keys, d), self.sop(queries, d), self.r.choice(OPS))

    def one_key(self, d) -> Select:
        """A select of at most one key per query (indices are distinct), and-ed with
        another now and then (which keeps at most one)."""
        sel = select(indices, self.sop("int", d), "==")
        if d > 0 and self.r.random() < 0.3:
            sel = sel & self.select(d - 1)
        return sel


def random_case(seed: int, aggregate_only: bool = False):
    """A program (an s-op or a select) and ROWS inputs for it; or one numeric aggregate
    over a comparison, of depth 2 or 3."""
    r = random.Random(seed)
    name = r.choice(list(ALPHABETS))
    element, sources = ALPHABETS[name]
    bos = name.endswith("bos")
    maker = Maker(r, sources)
    depth = r.randint(3, 5)
    if aggregate_only:
        fns = r.choice([INT_TO_INT, INT_TO_WIDE, INT_TO_FLOAT, [lambda x: x if x else True]])
        values = map(maker.pick(fns), maker.sop("int", r.randint(0, 1)))
        program = aggregate(maker.comparison(r.randint(0, 1)), values, r.choice([None, 2.5]))
    elif r.random() < 0.15:
        program = maker.select(depth)
    else:
        program = maker.sop(r.choice(["int", "str", "bool", "float", "mean", "mean"]), depth)
    longest = 48 if r.random() < 0.2 else 12
    inputs = []
    for _ in range(ROWS):
        items = [element(r) for _ in range(r.randint(1, longest))]
        if bos:
            items = [BOS] + items[1:]
        inputs.append("".join(items) if isinstance(items[0], str) else items)
    return program, inputs


def typed(values) -> list:
    """Values with their types: 1, 1.0 and True are different values here."""
    return [(type(v), v) for v in values]


def expected(program, inputs):
    """Per input the reference's values, or the error a batch of them raises: the one of
    the row failing first (earliest node, then a failing computation before a
    sequence's type check)."""
    rows, errors = [], []
    for inp in inputs:
        try:
            rows.append(reference.evaluate(program, inp))
        except RASPEvalError as e:
            errors.append(e)
    return rows, (min(errors, key=lambda e: e.at) if errors else None)


def check(program, inputs) -> str:
    """Compare the batch (and the first input alone) with the reference; returns
    "ok" or "error", and fails the test on any difference."""
    rows, error = expected(program, inputs)
    ids, lengths, values = encode(inputs)
    if error is not None:
        with pytest.raises(RASPEvalError) as got:
            evaluate_batch([program], ids, lengths, values)
        assert type(got.value) is type(error), (got.value, error)
        return "error"
    out = evaluate_batch([program], ids, lengths, values)[program]
    for b, want in enumerate(rows):
        m = len(inputs[b])
        if isinstance(program, Select):
            assert out[b, :m, :m].tolist() == want, (inputs[b], b)
            assert not out[b, m:].any() and not out[b, :, m:].any()
        else:
            assert typed(out.values(lengths)[b]) == typed(want), (inputs[b], b)
    got = batched_evaluate(program, inputs[0])
    assert (got == rows[0]) if isinstance(program, Select) else typed(got) == typed(rows[0])
    return "ok"


def counted(method, used: Counter):
    def spy(self, *args):
        used[method.__name__] += 1
        return method(self, *args)
    return spy


@pytest.fixture(scope="module")
def random_runs():
    """Every random case checked, with what the batched evaluator did on them: outcomes,
    aggregate strategies taken, node kinds and select comparisons built."""
    used = Counter()
    with pytest.MonkeyPatch.context() as mp:
        for name in STRATEGIES:
            mp.setattr(_Batch, name, counted(getattr(_Batch, name), used))
        outcomes, built = Counter(), Counter()
        for seed in range(PROGRAMS):
            program, inputs = random_case(seed)
            try:
                outcomes[check(program, inputs)] += 1
            except AssertionError as e:
                raise AssertionError(f"seed {seed}: {program.name} on {inputs}: {e}") from e
            for node in reference.nodes_of(program):
                built[type(node).__name__] += 1
                built[getattr(node, "op", None) or getattr(node, "kind", None)] += 1
    return outcomes, used, built


def test_batched_equals_the_reference_on_random_programs(random_runs):
    outcomes, _, _ = random_runs
    assert sum(outcomes.values()) == PROGRAMS
    # most programs run; enough fail to check that errors match too
    assert outcomes["ok"] >= PROGRAMS * 0.6 and outcomes["error"] >= 10, outcomes


def test_random_programs_take_every_primitive_and_strategy(random_runs):
    _, used, built = random_runs
    assert all(used[s] >= 3 for s in STRATEGIES), used
    for name in ["Input", "Map", "Select", "Aggregate", "and", "or", "not", "indices",
                 "str", "int", "float", "bool", "asis", *OPS]:
        assert built[name] >= 3, (name, built)


def test_aggregates_of_every_strategy_equal_the_reference():
    # shallow programs, many of them: one numeric aggregate over a comparison, of small
    # ints (narrow or 100-250 values), True beside ints, wide ints or floats, on short
    # and long inputs (each strategy; see rasp_hydra.rasp.aggregates.SMALL_INT_RANGE)
    outcomes = Counter()
    for seed in range(AGGREGATES):
        program, inputs = random_case(seed, aggregate_only=True)
        outcomes[check(program, inputs)] += 1
    assert outcomes["ok"] >= AGGREGATES * 0.7, outcomes


@pytest.mark.parametrize("seed", range(20))
def test_library_sops_count_what_the_reference_selects(seed):
    # selector_width counts the selected keys, selector_width_bos those after BOS,
    # length the positions: the rasplib definitions against plain counts
    r = random.Random(1000 + seed)
    sel = Maker(r, ALPHABETS["letters"][1]).select(2)
    width, width_bos = selector_width(sel), selector_width_bos(sel)
    word = "".join(r.choice("abcde") for _ in range(r.randint(1, 12)))
    try:
        matrix = reference.evaluate(sel, word)
    except RASPEvalError:
        return  # e.g. an order between strings and numbers
    assert reference.evaluate(width, word) == [sum(row) for row in matrix]
    assert batched_evaluate(width, word) == [sum(row) for row in matrix]
    for inp in (word, BOS + word):
        want = [sum(row[1:]) for row in reference.evaluate(sel, inp)]
        assert batched_evaluate(width_bos, inp) == want == reference.evaluate(width_bos, inp)
    assert batched_evaluate(length, word) == [len(word)] * len(word)
    assert reference.evaluate(full_s, word) == [[True] * len(word)] * len(word)


def test_reference_follows_the_documented_rules():
    # a few of docs/rasp_text.md's rules, by hand: defaults, type kept, means, errors
    ints = [3, 1, 2]
    before = select(indices, indices, "<")
    assert reference.evaluate(aggregate(before, tokens_int), ints) == [0, 3, 2.0]
    assert reference.evaluate(aggregate(before, tokens_str, "-"), "ab") == ["-", "a"]
    assert reference.evaluate(select(tokens_str, 1, "=="), "ab") == [[False, False]] * 2
    with pytest.raises(RASPEvalError):  # an order between strings and numbers
        reference.evaluate(select(tokens_str, 1, "<"), "ab")
    with pytest.raises(RASPEvalError):  # a string default beside numbers
        reference.evaluate(aggregate(before, tokens_int, "-"), ints)
    with pytest.raises(RASPEvalError):  # several keys of strings averaged
        reference.evaluate(aggregate(sel_not(before), tokens_str), "ab")
    assert reference.evaluate(selector_width(full_s), "abc") == [3, 3, 3]
