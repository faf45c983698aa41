"""Tokens, the ``Family`` base class (what a task family defines) and ``Task`` (a family
at one size, with or without BOS and attention supervision).

A family works on token ids *without* BOS; ``Task`` adds everything BOS-related: it
prepends BOS to inputs and the BOS output to targets, strips BOS before calling the
family, and wraps selectors (the BOS query row selects only BOS; every other row's BOS
column is the head's ``look_at_bos`` flag). It also masks padding: targets hold
``IGNORE`` there and selectors are False in padded rows and columns.

A family with ``sees_bos = True`` (a RASP program written for BOS, whose selects rely on
it) instead gets the ids *with* BOS (id ``len(alphabet)`` at position 0) for bos tasks:
its selectors are the targets as they are (only padding is masked), and its output at
position 0 is replaced by the BOS output.

An alphabet is a string of one-character tokens (every hand-written family), or a tuple
of token values (a RASP program over numbers or words, ``tasks.program``): then inputs
are written with tokens separated by spaces or commas ("10 2 33", "[10, 2, 33]") or given
as lists, and ``decode_inputs`` writes them so.
"""

from __future__ import annotations

import string
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rasp_hydra.config import LangConfig

ALL_TOKENS = string.ascii_letters + string.digits + string.punctuation + string.whitespace
BOS = "§"
IGNORE = -100  # the target id of padding: cross_entropy's ignore_index default, which the loss uses
BLOCK = 4096  # samples per independently seeded block (see Task.sample)
OUTPUT_CHUNK = 2048  # rows per chunk in Task.outputs
SPLIT_IDS = {"train": 0, "valid": 1, "test": 2, "test_long": 3}

Head = tuple[int, int]  # (layer, head)


@dataclass(frozen=True)
class Selector:
    """One head's boolean selector: ``fn(x, lengths) -> BoolTensor[B, n, n]``
    ([batch, query, key], ids without BOS).

    ``reference=True`` marks an addition of this project (not a target selector of the
    original experiments): it is drawn and measured, never supervised.
    """

    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    name: str
    look_at_bos: bool = True
    reference: bool = False


class Family:
    """Base class of a task family. Subclass it to add a task (see ``tasks.registry``).

    A subclass sets ``name``, ``layers``, ``heads`` (the RASP-predicted budget) and
    implements ``outputs``; it may override ``make_alphabet``, ``make_out_classes``,
    ``sample`` and ``selectors``. An instance is the family at one ``size``.
    """

    name: str = ""
    sizes: tuple[int, ...] = (10, 26, 52, 100)  # the sizes ``task_names()`` lists
    default_size: int = 10  # used when a name or config gives no size
    max_size: int = len(ALL_TOKENS)
    sees_bos: bool = False  # True: bos tasks pass ids with BOS (see the module docstring)
    output_chunk: int = 0  # rows per ``outputs`` call in Task.outputs (0: OUTPUT_CHUNK)
    layers: int = 1
    heads: int = 1
    description: str = ""

    def __init__(self, size: int):
        self.check_size(size)
        self.size = int(size)
        self.alphabet: str | tuple = self.make_alphabet(self.size)
        self.out_classes: tuple[str, ...] = tuple(self.make_out_classes())
        if BOS in self.alphabet:
            raise ValueError(f"{self.name}: the alphabet must not contain BOS {BOS!r}")
        if len(set(self.alphabet)) != len(self.alphabet):
            raise ValueError(f"{self.name}: the alphabet has repeated characters")

    # --- what a family defines -------------------------------------------------------
    @classmethod
    def check_size(cls, size: int) -> None:
        if not 1 <= int(size) <= cls.max_size:
            raise ValueError(f"{cls.name}: size must be in 1..{cls.max_size}, got {size}")

    @classmethod
    def base_name(cls, size: int) -> str:
        """The task name without suffixes; also what seeds the data."""
        return f"{cls.name}_{size}"

    def make_alphabet(self, size: int) -> str | tuple:
        """A string of one-character tokens, or a tuple of token values."""
        return ALL_TOKENS[:size]

    def make_out_classes(self) -> Sequence[str]:
        return tuple(self.alphabet)

    def sample(self, rng: np.random.Generator, count: int, min_len: int, max_len: int,
               start: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` samples with global indices start..start+count-1, as (ids int64
        [count, max_len], lengths int64 [count]); entries past a length are ignored.
        Default: length uniform in min_len..max_len, tokens uniform over the alphabet."""
        lengths = rng.integers(min_len, max_len + 1, size=count)
        ids = rng.integers(0, len(self.alphabet), size=(count, max_len))
        return ids, lengths

    def outputs(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """LongTensor[B, n] of output class ids (anything at padding)."""
        raise NotImplementedError

    def selectors(self) -> dict[Head, Selector]:
        """The family's selectors by (layer, head): target ones and reference ones."""
        return {}

    def compute_selectors(self, x: torch.Tensor, lengths: torch.Tensor,
                          heads: Iterable[Head]) -> dict[Head, torch.Tensor]:
        """Evaluate several heads at once; override to share intermediate values."""
        table = self.selectors()
        return {h: table[h].fn(x, lengths) for h in heads}


def task_name(base: str, bos: bool, with_attns: bool) -> str:
    """A task's name from its base name (``hist2_26``) and variants, the one place names are
    made (``registry.get_task`` parses them).

    >>> task_name("hist2_26", bos=True, with_attns=True)
    'hist2_26_bos_with_attns'
    """
    return base + ("_bos" if bos else "") + ("_with_attns" if with_attns else "")


def _stable_crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


class Task:
    """A family at one size, with or without BOS and attention supervision.

    Build one with ``get_task(name)`` or ``make_task(...)``, not directly.
    """

    def __init__(self, impl: Family, family: str, bos: bool = False, with_attns: bool = False,
                 name: str | None = None):
        self.family_impl = impl  # the Family object at this size: outputs, selectors, sampler
        self.family = family  # its name (or "module:Class" path), which make_task accepts
        self.size = impl.size
        self.bos = bool(bos)
        self.with_attns = bool(with_attns)
        if impl.sees_bos and not self.bos:
            raise ValueError(f"{impl.name}: this family is written for inputs that start with "
                             f"BOS {BOS!r}; make its task with bos=True.")
        self._pass_bos = self.bos and impl.sees_bos
        self.base_name = impl.base_name(impl.size)
        self.name = name or task_name(self.base_name, bos, with_attns)
        self.alphabet: str | tuple = impl.alphabet
        self.spaced = not isinstance(self.alphabet, str)  # tokens are values, written apart
        k = len(self.alphabet)
        self.bos_id, self.pad_id, self.vocab_size = k, k + 1, k + 2
        out = tuple(impl.out_classes)
        if bos and BOS not in out:
            out = out + (BOS,)
        self.out_classes: tuple[str, ...] = out
        # each class's value (a program's ints, floats, bools; else the class name)
        values = tuple(getattr(impl, "out_values", None) or impl.out_classes)
        self.out_values: tuple = values + out[len(values):]
        self.n_out = len(out)
        self.bos_out_id = out.index(BOS) if BOS in out else None
        self.predicted_layers = impl.layers
        self.predicted_heads = impl.heads
        self._table = impl.selectors()
        self.selector_heads: tuple[Head, ...] = tuple(sorted(self._table))
        targets = tuple(h for h in self.selector_heads if not self._table[h].reference)
        self.supervised_heads: tuple[Head, ...] = targets if with_attns else ()
        self.look_at_bos: dict[Head, bool] = {h: s.look_at_bos for h, s in self._table.items()}
        self.selector_names: dict[Head, str] = {h: s.name for h, s in self._table.items()}
        self.reference_heads: tuple[Head, ...] = tuple(
            h for h in self.selector_heads if self._table[h].reference)
        self._char_to_id = {str(c) if self.spaced else c: i
                            for i, c in enumerate(self.alphabet)}

    def __repr__(self) -> str:
        return f"Task({self.name!r})"

    # --- strings <-> ids ---------------------------------------------------------------
    def split(self, word: str | Sequence) -> list:
        """A word's tokens, BOS kept: its characters, or for a value vocabulary the
        pieces between spaces or commas (``"[10, 2, 33]"`` too); a list as it is."""
        if not isinstance(word, str):
            return list(word)
        if not self.spaced:
            return list(word)
        body = word.strip()
        head = [BOS] if body.startswith(BOS) else []
        body = body[len(head):].strip()
        if body.startswith("[") and body.endswith("]"):
            body = body[1:-1]
        return head + body.replace(",", " ").split()

    def encode(self, words: Sequence[str | Sequence]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids and lengths; BOS is prepended for bos tasks (a word that already
        starts with BOS keeps it). A word is a string (see ``split``) or a list of
        tokens."""
        rows = []
        for w in words:
            w = self.split(w)
            if self.bos and w[:1] == [BOS]:
                w = w[1:]
            try:
                row = [self._char_to_id[str(c) if self.spaced else c] for c in w]
            except (KeyError, TypeError):
                bad = next(c for c in w if (str(c) if self.spaced else c)
                           not in self._char_to_id)
                shown = repr(self.alphabet) if not self.spaced else (
                    f"of {len(self.alphabet)} tokens {self.words(self.alphabet, cut=True)}")
                raise ValueError(f"{self.name}: {bad!r} is not in the alphabet "
                                 f"{shown}") from None
            rows.append(([self.bos_id] if self.bos else []) + row)
        n = max((len(r) for r in rows), default=0)
        tokens = torch.full((len(rows), n), self.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return tokens, torch.tensor([len(r) for r in rows], dtype=torch.long)

    def words(self, tokens: Sequence, cut: bool = False) -> str:
        """Tokens as one input string: joined, or space-separated for a value vocabulary
        (``cut``: more than 25 tokens shown as their first and last ten)."""
        if not self.spaced:
            return "".join(tokens)
        shown = [str(t) for t in tokens]
        if cut and len(shown) > 25:
            shown = shown[:10] + ["..."] + shown[-10:]
        return " ".join(shown)

    def decode_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor) -> list[list]:
        """Each row's input tokens (BOS included), as values."""
        values = tuple(self.alphabet) + (BOS,)
        return [[values[int(t)] for t in row[: int(n)]]
                for row, n in zip(tokens, lengths, strict=True)]

    def decode_inputs(self, tokens: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return [self.words(row) for row in self.decode_tokens(tokens, lengths)]

    def decode_outputs(self, ids: torch.Tensor, lengths: torch.Tensor) -> list[list[str]]:
        """Output class names per row."""
        return [[self.out_classes[int(t)] for t in row[: int(n)]]
                for row, n in zip(ids, lengths, strict=True)]

    def decode_values(self, ids: torch.Tensor, lengths: torch.Tensor) -> list[list]:
        """Output values per row: a program's values as it computes them (ints, floats,
        bools, strings), else the class names."""
        return [[self.out_values[int(t)] for t in row[: int(n)]]
                for row, n in zip(ids, lengths, strict=True)]

    # --- targets -------------------------------------------------------------------------
    def _strip(self, tokens: torch.Tensor, lengths: torch.Tensor):
        if self.bos and not self._pass_bos:
            return tokens[:, 1:], (lengths - 1).clamp(min=0)
        return tokens, lengths

    def outputs(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """LongTensor[B, n] of target ids, IGNORE at padding. Large batches are processed
        in chunks of OUTPUT_CHUNK rows (cache-sized: several times faster on a CPU)."""
        chunk = self.family_impl.output_chunk or OUTPUT_CHUNK
        if tokens.shape[0] > chunk:
            return torch.cat([self.outputs(tokens[i:i + chunk], lengths[i:i + chunk])
                              for i in range(0, tokens.shape[0], chunk)])
        x, n = self._strip(tokens, lengths)
        y = self.family_impl.outputs(x, n) if x.shape[1] else x.clone()
        if self._pass_bos:
            y[:, :1] = self.bos_out_id
        elif self.bos:
            y = torch.cat([torch.full_like(tokens[:, :1], self.bos_out_id), y], dim=1)
        real = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
        return torch.where(real, y, torch.full_like(y, IGNORE))

    def selectors(self, tokens: torch.Tensor, lengths: torch.Tensor,
                  heads: Iterable[Head] | None = None) -> dict[Head, torch.Tensor]:
        """BoolTensor[B, n, n] per head, after the BOS wrap, False in padded rows/cols."""
        heads = self.selector_heads if heads is None else tuple(heads)
        for h in heads:
            if h not in self._table:
                raise KeyError(f"{self.name} has no selector for head {h}; "
                               f"it has {list(self.selector_heads)}")
        if not heads:
            return {}
        x, n = self._strip(tokens, lengths)
        raw = self.family_impl.compute_selectors(x, n, heads)
        B, m = x.shape
        real = torch.arange(m, device=x.device)[None, :] < n[:, None]
        pair = None
        # some padding: mask padded rows and columns (on a GPU always: asking would sync)
        if x.device.type != "cpu" or not bool((n == m).all()):
            r8 = real.to(torch.uint8)
            pair = (r8[:, :, None] * r8[:, None, :]).view(torch.bool)  # fast form on CPU
        out = {}
        for h in heads:
            s = raw[h] if pair is None else raw[h] & pair
            if self.bos and not self._pass_bos:
                w = torch.zeros(B, m + 1, m + 1, dtype=torch.bool, device=x.device)
                w[:, 0, 0] = lengths > 0
                w[:, 1:, 1:] = s
                if self._table[h].look_at_bos:
                    w[:, 1:, 0] = real
                s = w
            out[h] = s
        return out

    # --- data -----------------------------------------------------------------------------
    def sample(self, count: int, seed: int = 0, split: str = "train",
               min_len: int = LangConfig.min_len, max_len: int = LangConfig.max_len,
               start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples start..start+count-1 of a split as (tokens, lengths), with BOS for bos
        tasks, padded with pad_id to the longest.

        Sample i is a pure function of (base name, seed, split, i, min_len, max_len):
        samples come in blocks of BLOCK, block b drawn by its own numpy Generator seeded
        with SeedSequence([seed, crc32(base name), split id, b]). So the bos and
        with_attns variants of a task share their sequences, and neither global RNG
        state nor thread count matters."""
        if count < 0 or start < 0:
            raise ValueError("count and start must be >= 0")
        if not 0 <= min_len <= max_len:
            raise ValueError(f"need 0 <= min_len <= max_len, got {min_len}, {max_len}")
        split_id = SPLIT_IDS.get(split, None)
        if split_id is None:
            split_id = 1000 + _stable_crc(split)
        name_id = _stable_crc(self.base_name)
        first, last = start // BLOCK, (start + count + BLOCK - 1) // BLOCK
        ids_parts, len_parts = [], []
        for b in range(first, last):
            rng = np.random.Generator(np.random.PCG64(
                np.random.SeedSequence([int(seed), name_id, split_id, b])))
            ids, lens = self.family_impl.sample(rng, BLOCK, min_len, max_len, b * BLOCK)
            ids_parts.append(np.asarray(ids, dtype=np.int64)[:, :max_len])
            len_parts.append(np.asarray(lens, dtype=np.int64))
        if ids_parts:
            ids = np.concatenate(ids_parts)[start - first * BLOCK:][:count]
            lens = np.concatenate(len_parts)[start - first * BLOCK:][:count]
        else:
            ids, lens = np.zeros((0, max_len), np.int64), np.zeros(0, np.int64)
        width = int(lens.max()) if len(lens) else 0
        ids = ids[:, :width]
        ids = np.where(np.arange(width)[None, :] < lens[:, None], ids, self.pad_id)
        tokens = torch.from_numpy(np.ascontiguousarray(ids))
        lengths = torch.from_numpy(lens.copy())
        if self.bos:
            tokens = torch.cat([torch.full((len(lens), 1), self.bos_id, dtype=torch.long),
                                tokens], dim=1)
            lengths = lengths + 1
        return tokens, lengths
