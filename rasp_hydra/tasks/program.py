"""Any RASP program as a task family: its outputs are the targets, its compiled budget
the predicted layers/heads, its compiled selects the heads' target selectors.

    >>> from rasp_hydra.rasp import library
    >>> task = make_program_task(library.program("reverse"), alphabet="abc", name="reverse")
    >>> task.name, task.predicted_layers, task.predicted_heads
    ('reverse_3', 2, 1)
    >>> tokens, lengths = task.encode(["abc", "ca"])
    >>> task.decode_outputs(task.outputs(tokens, lengths), lengths)
    [['c', 'b', 'a'], ['a', 'c']]
    >>> task.selector_names
    {(0, 0): 'full_s', (1, 0): 'flip'}

The rules a user sees (the vocabulary and how inputs are written, BOS, output classes and
their order, samplers, the budget of a program without aggregates) are in docs/rasp_text.md,
"Programs as tasks". Two more, for readers of this module:

- Heads: every (layer, head) of the compilation, named after its select. All are target
  selectors (supervised with ``with_attns``).
- Speed: outputs and selectors of a batch are evaluated once for all heads; rows are
  sorted by length so that each chunk's [rows, n, n] selects are as small as they can be.
"""

from __future__ import annotations

import bisect
import importlib
import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rasp_hydra.config import LangConfig
from rasp_hydra.errors import UserError

from .base import ALL_TOKENS, BOS, Family, Selector, Task, task_name
from .dyck import PAIRS, Dyck

SAMPLERS = ("uniform", "dyck", "module:function")
TRIAL_INPUTS, TRIAL_LEN = 64, 32  # sampled inputs a new task's program is tried on, and
# their longest (a select's work grows with the square of the length)
CHUNK_ELEMENTS = 1 << 19  # rows * n * words per evaluated chunk: 4 MB per select, so a
# chunk's working set stays near the caches (1.3-1.7x faster than 16 MB chunks on a CPU)


class ProgramError(UserError, ValueError):
    """A program task that cannot be built; the message says what is allowed."""


RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")  # "0..99": the integers 0 to 99
SEPARATORS = set(",[]") | {BOS}  # what a token of a value vocabulary may not hold


def vocabulary(alphabet: Any, reads_numbers: bool = False, sampler="uniform") -> str | tuple:
    """The input tokens of a program task: a ``str`` of one-character tokens, or a
    ``tuple`` of token values (ints, or strings without spaces, commas or brackets).

    >>> vocabulary("abc"), vocabulary("3..6"), vocabulary(["ab", "c"]), vocabulary(3, True)
    ('abc', (3, 4, 5, 6), ('ab', 'c'), (0, 1, 2))
    """
    allowed = ("A vocabulary (lang.alphabet) is a string of one-character tokens "
               "(lang.alphabet=abc), a list of ints or strings (lang.alphabet=[10,20,30], "
               "lang.alphabet=[ab,cd]), or a range of integers 'A..B' (lang.alphabet=0..99); "
               "lang.size=k gives the first k of the project's tokens, or the integers "
               "0..k-1 for a program that reads tokens_int or tokens_float.")
    if isinstance(alphabet, bool) or alphabet is None:
        raise ProgramError(f"alphabet={alphabet!r}. {allowed}")
    if isinstance(alphabet, int):
        if sampler == "dyck":
            if not 1 <= alphabet <= len(PAIRS):
                raise ProgramError(f"With sampler 'dyck', alphabet is a number of bracket "
                                   f"pairs in 1..{len(PAIRS)}, got {alphabet}.")
            return Dyck(alphabet).alphabet
        if reads_numbers:
            if alphabet < 1:
                raise ProgramError(f"A vocabulary size must be at least 1, got {alphabet}.")
            return tuple(range(alphabet))
        if not 1 <= alphabet <= len(ALL_TOKENS):
            raise ProgramError(f"An alphabet size must be in 1..{len(ALL_TOKENS)}, got "
                               f"{alphabet}. {allowed}")
        return ALL_TOKENS[:alphabet]
    if isinstance(alphabet, str):
        m = RANGE.match(alphabet)
        if not m:
            if not alphabet or BOS in alphabet or len(set(alphabet)) != len(alphabet):
                raise ProgramError(f"The alphabet {alphabet!r} must not contain BOS {BOS!r} "
                                   f"or repeated characters, nor be empty. {allowed}")
            return alphabet
        lo, hi = int(m[1]), int(m[2])
        if hi < lo:
            raise ProgramError(f"The range {alphabet!r} is empty: write A..B with A <= B.")
        return tuple(range(lo, hi + 1))
    try:
        tokens = tuple(alphabet)
    except TypeError:
        raise ProgramError(f"alphabet={alphabet!r}. {allowed}") from None
    bad = [t for t in tokens if isinstance(t, bool) or not isinstance(t, int | str)
           or isinstance(t, str) and (not t or any(c.isspace() or c in SEPARATORS
                                                   for c in t))]
    twice = sorted(n for n, k in Counter(str(t) for t in tokens).items() if k > 1)
    if not tokens or bad or twice:
        why = (f"tokens that are neither ints nor non-empty strings without spaces, commas, "
               f"brackets or BOS {BOS!r}: {bad[:5]}" if bad else
               f"tokens written the same twice: {twice[:5]}" if twice else "no token")
        raise ProgramError(f"The vocabulary {list(tokens)[:10]} has {why}. {allowed}")
    return tokens


def _given_classes(classes: Any) -> dict[str, Any]:
    """Explicit output classes, name -> value: a list of values, or "A..B" (integers)."""
    if isinstance(classes, str):
        m = RANGE.match(classes)
        if not m or int(m[2]) < int(m[1]):
            raise ProgramError(f"classes={classes!r}: give a list of the output's values "
                               "(lang.classes=[0,1,2]) or a range of integers A..B with "
                               "A <= B (lang.classes=0..99).")
        classes = range(int(m[1]), int(m[2]) + 1)
    out: dict[str, Any] = {}
    for c in classes:
        out.setdefault(class_name(c), c)
    return out


def class_name(value: Any) -> str:
    """The output class of a value: ``str(value)``, except that an integral float is
    named as its int, so that equal numbers are one class (0 and 0.0 are "0")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _resolve_sampler(sampler: str | Callable, alphabet: str):
    if callable(sampler):
        return sampler
    if sampler == "uniform":
        return None
    if sampler == "dyck":
        for size in range(1, len(PAIRS) + 1):
            if Dyck(size).alphabet == alphabet:
                return Dyck(size)
        raise ProgramError(
            f"sampler 'dyck' needs a Dyck alphabet (the bracket pairs, then the neutral "
            f"token), one of {[Dyck(i).alphabet for i in range(1, len(PAIRS) + 1)]}; got "
            f"{alphabet!r}.")
    if isinstance(sampler, str) and ":" in sampler:
        module_name, _, attr = sampler.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attr, None)
        except ImportError as e:
            raise ProgramError(f"Cannot import the sampler module {module_name!r} ({e}); a "
                               "sampler is 'uniform', 'dyck' or 'module:function'.") from None
        if not callable(fn):
            raise ProgramError(f"Sampler {sampler!r}: {module_name!r} has no function "
                               f"{attr!r}; a sampler is 'uniform', 'dyck' or "
                               "'module:function'.")
        return fn
    raise ProgramError(f"Unknown sampler {sampler!r}; allowed: 'uniform' (default), 'dyck', "
                       "or 'module:function' for a function of your own.")


class ProgramFamily(Family):
    """A RASP program's output s-op as a family (see the module docstring)."""

    name = "program"
    output_chunk = 1 << 16  # the program family sorts and chunks rows itself

    def __init__(self, output, alphabet: str | tuple, bos: bool = False,
                 sampler=LangConfig.sampler, max_len: int = LangConfig.max_len,
                 name: str = "program", base: str | None = None,
                 classes: Sequence | None = None):
        from rasp_hydra.rasp import compile_program
        from rasp_hydra.rasp.lang import SOp
        if not isinstance(output, SOp):
            raise ProgramError(f"The output of a program task must be an s-op, got "
                               f"{output!r}.")
        alphabet = vocabulary(alphabet)
        self.output = output
        self.name = name
        self.sees_bos = bool(bos)
        self.max_len = int(max_len)
        self._alphabet = alphabet
        self._base = base
        self._classes = None if classes is None else _given_classes(classes)
        self.input_values = list(alphabet) + [BOS]  # id len(alphabet) is BOS
        self.compiled = compile_program(output)
        self.layers, self.heads = self.compiled.layers, self.compiled.budget.max_heads  # 0, 0: no
        # aggregate (arch=predicted then trains the smallest model)
        self.description = f"RASP program {output.name!r}"
        self.sampler = _resolve_sampler(sampler, alphabet)
        super().__init__(len(alphabet))
        self._class_id = {c: i for i, c in enumerate(self.out_classes)}

    @classmethod
    def check_size(cls, size: int) -> None:
        if int(size) < 1:
            raise ProgramError("The alphabet must have at least one token.")

    def base_name(self, size: int) -> str:  # an instance's name (seeds the data)
        return self._base or f"{self.name}_{size}"

    def make_alphabet(self, size: int) -> str | tuple:
        return self._alphabet

    def make_out_classes(self) -> Sequence[str]:
        if self._classes is not None:
            self.out_values = tuple(self._classes.values())
            return tuple(self._classes)
        from rasp_hydra.rasp.values import sort_values, value_set
        longest = self.max_len + (1 if self.sees_bos else 0)
        values = value_set(self.output, self.input_values if self.sees_bos
                           else list(self._alphabet), longest)
        if values is None:
            raise ProgramError(
                f"The values of {self.output.name!r} cannot be enumerated (e.g. it averages "
                "many different numbers, or it is an aggregate of numbers that selects one "
                "key, like a sort, which the inference cannot tell); give the output "
                "classes explicitly (lang.classes=[...], or lang.classes=0..99 for the "
                "integers 0 to 99), or round/bucket the output in the program.")
        alphabet = {c: i for i, c in enumerate(self._alphabet)}

        def order(v):  # numbers; alphabet tokens; decimal strings by number; the rest
            if not isinstance(v, str):
                return (0, 0, 0, "")
            if v in alphabet:
                return (1, alphabet[v], 0, "")
            if v.isascii() and v.isdecimal():
                return (2, 0, int(v), "")
            return (3, 0, 0, v)

        by_name: dict[str, Any] = {}  # a class per name; its value: the first (an int
        for v in sorted(sort_values(values), key=order):  # before an equal float)
            by_name.setdefault(class_name(v), v)
        self.out_values = tuple(by_name.values())
        return tuple(by_name)

    # --- evaluation ----------------------------------------------------------------------
    @cached_property
    def _evaluate_batch(self):
        from rasp_hydra.rasp import evaluate_batch
        return evaluate_batch

    @cached_property
    def _lookup(self):
        from rasp_hydra.rasp.evaluate import lookup
        return lookup

    def _chunks(self, lengths: torch.Tensor):
        """(rows, width) chunks: rows sorted by length, rows * width * ceil(width / 64)
        (a packed selection's int64 words) <= CHUNK_ELEMENTS."""
        order = torch.argsort(lengths, stable=True)
        width = lengths[order].clamp(min=1).tolist()
        i = 0
        while i < len(width):
            # the size of rows i..j-1 grows with j (widths ascend): the last j that fits
            # by bisection, at least one row
            fits = bisect.bisect_right(
                range(i + 1, len(width) + 1), CHUNK_ELEMENTS,
                key=lambda j, i=i: (j - i) * width[j - 1] * -(-width[j - 1] // 64))
            j = i + max(1, fits)
            yield order[i:j], width[j - 1]
            i = j

    def _run(self, nodes: list, x: torch.Tensor, lengths: torch.Tensor) -> list:
        """Evaluate ``nodes`` on (x, lengths); results per chunk, with the rows and width."""
        out = []
        for rows, width in self._chunks(lengths):
            ids = x[rows, :width]
            res = self._evaluate_batch(nodes, ids, lengths[rows], self.input_values)
            out.append((rows, width, res))
        return out

    def outputs(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, n = x.shape
        y = torch.zeros(B, n, dtype=torch.long)
        for rows, width, res in self._run([self.output], x, lengths):
            col = res[self.output]
            lut = torch.tensor([self._class_id.get(class_name(v), -1) for v in col.table],
                               dtype=torch.long)
            ids = self._lookup(lut, col.codes)
            if bool((lut < 0).any()):  # a value that is no class: at a real position?
                real = torch.arange(width)[None, :] < lengths[rows][:, None]
                missing = (ids < 0) & real
                ids = ids.clamp(min=0)
            else:
                missing = None
            if missing is not None and bool(missing.any()):
                from rasp_hydra.rasp.lang import RASPEvalError
                b, i = (int(v) for v in missing.nonzero()[0])
                value = col.table[int(col.codes[b, i])]
                raise RASPEvalError(
                    f"The output {self.output.name!r} took the value {value!r}, which is "
                    f"not among its classes {list(self.out_classes)} (inferred for inputs "
                    f"of up to {self.max_len} tokens): build the task with max_len at "
                    "least the longest input, or give classes explicitly.")
            y[rows, :width] = ids
        return y

    def selectors(self) -> dict[tuple[int, int], Selector]:
        return {h: Selector(lambda x, n, h=h: self.compute_selectors(x, n, [h])[h],
                            sel.name, look_at_bos=True)
                for h, sel in self.compiled.head_selects.items()}

    def compute_selectors(self, x, lengths, heads) -> dict[tuple[int, int], torch.Tensor]:
        heads = list(heads)
        sels = [self.compiled.head_selects[h] for h in heads]
        B, n = x.shape
        out = {h: torch.zeros(B, n, n, dtype=torch.bool) for h in heads}
        for rows, width, res in self._run(sels, x, lengths):
            for h, sel in zip(heads, sels, strict=True):
                out[h][rows, :width, :width] = res[sel]
        return out

    def sample(self, rng: np.random.Generator, count: int, min_len: int, max_len: int,
               start: int) -> tuple[np.ndarray, np.ndarray]:
        if self.sampler is None:
            return super().sample(rng, count, min_len, max_len, start)
        if isinstance(self.sampler, Dyck):
            return self.sampler.sample(rng, count, min_len, max_len, start)
        return self.sampler(rng, count, min_len, max_len, start, self._alphabet)


def _reads_numbers(sop) -> bool:
    """Whether the program reads its tokens as numbers (tokens_int or tokens_float)."""
    from rasp_hydra.rasp.graph import ancestors
    from rasp_hydra.rasp.lang import Input
    return any(isinstance(n, Input) and n.kind in ("int", "float") for n in ancestors([sop]))


def _load_output(program: Any, output: str | None):
    """The output s-op from a program given as an s-op, a loaded program, a path or
    source text."""
    from rasp_hydra.rasp.lang import SOp
    if isinstance(program, SOp):
        return program
    if isinstance(program, str | Path):
        from rasp_hydra.rasp import load
        program = load(program)
    if not hasattr(program, "sop"):
        raise ProgramError(f"A program is an s-op, a loaded RASP program, or a .rasp path "
                           f"or source; got {program!r}.")
    if not output:
        raise ProgramError(f"Name the output s-op to learn; the program defines "
                           f"{', '.join(program.names())}.")
    return program.sop(output)


def make_program_task(program: Any, output: str | None = None,
                      alphabet: str | int | Sequence = 10, bos: bool = False,
                      with_attns: bool = False, sampler=LangConfig.sampler,
                      max_len: int = LangConfig.max_len,
                      name: str | None = None, base: str | None = None,
                      classes: Sequence | None = None, sees_bos: bool | None = None,
                      min_len: int = LangConfig.min_len) -> Task:
    """A Task from a RASP program (see the module docstring).

    ``program``: an s-op, a loaded program (``rasp_hydra.rasp.load``), or a .rasp path or
    source (then ``output`` names the s-op to learn); ``alphabet``: the vocabulary (see
    ``vocabulary``: a string of characters, a list of ints or strings, "A..B", or a size
    k; with sampler "dyck", k is the number of bracket pairs); ``bos``: the task's inputs
    start with BOS; ``sees_bos`` (default: ``bos``): the program is written for inputs
    starting with BOS and sees it (False with bos=True: the program runs without BOS and
    its selects get the families' BOS wrap); ``max_len``: the longest input of any split
    (for the output classes); ``classes``: the output classes (a list of values, or
    "A..B"), when they cannot be inferred; ``name``: the task's name
    stem (default: the output's name), the task is named ``{name}_{k}[_bos][_with_attns]``
    unless ``base`` gives the stem with the size (e.g. "dyck1_ptf": the data seed is the
    same as the hand-written task of that base name); ``min_len``: the shortest input.

    The program is tried on inputs of the task (``try_inputs``) before the task is
    returned, so a program that fails on some inputs fails here, naming one of them."""
    sop = _load_output(program, output)
    alphabet = vocabulary(alphabet, reads_numbers=_reads_numbers(sop), sampler=sampler)
    stem = name or sop.name
    impl = ProgramFamily(sop, alphabet, bos=bos if sees_bos is None else sees_bos,
                         sampler=sampler, max_len=max_len, name=stem, base=base,
                         classes=classes)
    if with_attns and not impl.compiled.head_selects:
        raise ProgramError(f"{sop.name!r} has no select, so it cannot be trained "
                           "with_attns.")
    task = Task(impl, "program", bos=bos, with_attns=with_attns,
                name=task_name(impl.base_name(impl.size), bos, with_attns))
    try_inputs(task, min_len, max_len)
    return task


def try_inputs(task: Task, min_len: int, max_len: int) -> None:
    """Evaluate the task's output on inputs it will see, so that a program that fails on
    some of them (a dict without a key for one token, strings averaged where a query
    selects several keys, a value that is no class) fails now, before any work, with the
    evaluator's error naming the s-op and the input. The inputs: TRIAL_INPUTS samples of
    the task's own sampler with lengths up to TRIAL_LEN and, with the uniform sampler
    (where any string is an input), each token repeated to the shortest length and the
    alphabet in order and reversed. Longer inputs are met when the data is built."""
    longest = max(min(max_len, TRIAL_LEN), min_len)
    task.outputs(*task.sample(TRIAL_INPUTS, seed=0, split="trial", min_len=min_len,
                              max_len=longest))
    if task.family_impl.sampler is None:
        a = list(task.alphabet)  # characters, numbers or words: each word a list of tokens
        words = [[c] * max(min_len, 1) for c in a]
        words += [(a * longest)[:longest], (a[::-1] * longest)[:longest]]
        task.outputs(*task.encode(words))
