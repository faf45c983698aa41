"""Task names: the grammar, lookup, and user families.

Names (docs/tasks.md)::

    {family}_{k}[_bos][_with_attns]   family in reverse, hist, hist2, sort, sort_by_freq
    dyck{i}_ptf[_bos]                 i pairs of brackets, 1..8
    module.path:Class[_{size}][_bos][_with_attns]   a user family, by import path

A user family is a ``Family`` subclass in the user's own module; reference it by import
path, or call ``register_family(Class)`` once so that its ``name`` works like a built-in.
"""

from __future__ import annotations

import difflib
import importlib
import re
from pathlib import Path

from rasp_hydra.config import LangConfig, from_dict
from rasp_hydra.errors import UserError
from rasp_hydra.rasp.source import PROGRAMS, is_source

from .base import Family, Task, task_name
from .dyck import Dyck
from .hist import Hist
from .hist2 import Hist2
from .reverse import Reverse
from .sort import Sort
from .sort_by_freq import SortByFreq

FAMILIES: dict[str, type[Family]] = {}


class UnknownTaskError(UserError, ValueError):
    """A task name or family that does not exist; the message suggests close names."""


def register_family(cls: type[Family]) -> type[Family]:
    """Make ``cls.name`` usable in task names (also works as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        raise TypeError(f"{cls!r} is not a subclass of rasp_hydra.tasks.Family")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", cls.name or ""):
        raise ValueError(f"family name {cls.name!r} must match [a-z][a-z0-9_]*")
    FAMILIES[cls.name] = cls
    return cls


for _cls in (Reverse, Hist, Hist2, Sort, SortByFreq, Dyck):
    register_family(_cls)

_SUFFIX = re.compile(r"^(?P<base>.+?)(?P<bos>_bos)?(?P<attn>_with_attns)?$")
_DYCK = re.compile(r"^dyck(?P<size>\d+)_ptf$")
_SIZED = re.compile(r"^(?P<family>[a-z][a-z0-9_]*?)_(?P<size>\d+)$")
_PATH = re.compile(r"^(?P<path>[A-Za-z_][\w.]*:[A-Za-z_]\w*?)(?:_(?P<size>\d+))?$")


def _families_with_targets() -> list[str]:
    out = []
    for name, cls in FAMILIES.items():
        impl = cls(cls.default_size)
        if any(not s.reference for s in impl.selectors().values()):
            out.append(name)
    return out


def _grammar() -> str:
    return ("Task names are {family}_{k}[_bos][_with_attns] with family in reverse, hist, "
            "hist2, sort, sort_by_freq and k in 10, 26, 52, 100 (any k in 1..100 works), "
            "dyck{i}_ptf[_bos] with i in 1..8, or a user family as "
            "'module.path:Class[_{size}][_bos][_with_attns]'")


def _unknown(what: str, detail: str = "") -> UnknownTaskError:
    close = difflib.get_close_matches(what, task_names(), n=5, cutoff=0.5)
    hint = f" Closest names: {', '.join(close)}." if close else ""
    return UnknownTaskError(
        f"Unknown task {what!r}.{(' ' + detail) if detail else ''}{hint} {_grammar()}; "
        "`python -m rasp_hydra.tasks list` prints them all.")


def resolve_family(family: str | type[Family]) -> tuple[type[Family], str]:
    """A family class and the string that names it (registered name or import path)."""
    if isinstance(family, type) and issubclass(family, Family):
        name = family.name
        if FAMILIES.get(name) is family:
            return family, name
        return family, f"{family.__module__}:{family.__qualname__}"
    if not isinstance(family, str):
        raise TypeError(f"family must be a name or a Family subclass, got {family!r}")
    if family in FAMILIES:
        return FAMILIES[family], family
    if ":" in family:
        module_name, _, attr = family.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise UnknownTaskError(
                f"Cannot import module {module_name!r} for task family {family!r} ({e}). "
                "A user family is given as 'module.path:Class', where module.path is "
                "importable (installed, or on PYTHONPATH) and Class subclasses "
                "rasp_hydra.tasks.Family.") from None
        cls = getattr(module, attr, None)
        if not (isinstance(cls, type) and issubclass(cls, Family)):
            raise UnknownTaskError(
                f"{family!r}: module {module_name!r} has no Family subclass named "
                f"{attr!r}. A user family is given as 'module.path:Class', where Class "
                "subclasses rasp_hydra.tasks.Family.")
        return cls, family
    if family.startswith("dyck") and family[4:].split("_")[0].isdigit():
        return Dyck, "dyck"
    raise _unknown(family, f"There is no task family {family!r}; families: "
                           f"{', '.join(FAMILIES)}.")


def make_task(family: str | type[Family], size: int | None = None, bos: bool = False,
              with_attns: bool = False) -> Task:
    """A task from its parts: ``make_task("hist2", 26, bos=True, with_attns=True)`` is
    ``get_task("hist2_26_bos_with_attns")``; size is the alphabet size k, or the number
    of bracket pairs for dyck; None means the family's default size."""
    cls, fam = resolve_family(family)
    if isinstance(family, str) and fam == "dyck" and family != "dyck" and size is None:
        size = int(family[4:].split("_")[0])  # "dyck2" or "dyck2_ptf"
    size = cls.default_size if size is None else int(size)
    try:
        impl = cls(size)
    except ValueError as e:
        raise UnknownTaskError(f"Invalid size for task family {fam!r}: {e}") from None
    if with_attns and all(s.reference for s in impl.selectors().values()):
        raise ValueError(
            f"Task family {fam!r} has no target selectors, so it cannot be trained "
            f"'_with_attns'. Families with target selectors: "
            f"{', '.join(_families_with_targets())}.")
    name = None
    if ":" in fam:
        name = task_name(f"{fam}_{size}", bos, with_attns)
    return Task(impl, fam, bos=bos, with_attns=with_attns, name=name)


def get_task(name: str | Task) -> Task:
    """Parse a task name (see the module docstring) into a Task."""
    if isinstance(name, Task):
        return name
    if not isinstance(name, str) or not name:
        raise UnknownTaskError(f"Unknown task {name!r}. {_grammar()}.")
    m = _SUFFIX.match(name)
    base, bos, attn = m["base"], bool(m["bos"]), bool(m["attn"])
    if ":" in base:
        p = _PATH.match(base)
        if not p:
            raise _unknown(name)
        size = int(p["size"]) if p["size"] else None
        return make_task(p["path"], size, bos=bos, with_attns=attn)
    d = _DYCK.match(base)
    if d:
        return make_task("dyck", int(d["size"]), bos=bos, with_attns=attn)
    s = _SIZED.match(base)
    if s and s["family"] in FAMILIES and s["family"] != "dyck":
        return make_task(s["family"], int(s["size"]), bos=bos, with_attns=attn)
    raise _unknown(name)


def task_names(family: str | None = None, grouped: bool = False):
    """Every listed task name, grouped by family in registration order: a flat list,
    or with ``grouped=True`` a dict family -> names. Sizes are each family's ``sizes``;
    ``_with_attns`` variants exist for families with target selectors."""
    out: dict[str, list[str]] = {}
    for fam, cls in FAMILIES.items():
        if family is not None and fam != family:
            continue
        impl = cls(cls.default_size)
        has_targets = any(not s.reference for s in impl.selectors().values())
        variants = [(False, False), (True, False)] + (
            [(False, True), (True, True)] if has_targets else [])
        names = [task_name(cls.base_name(size), bos, attns)
                 for size in cls.sizes for bos, attns in variants]
        out[fam] = names
    if grouped:
        return out
    return [n for names in out.values() for n in names]


def task_of_lang(lang: LangConfig | dict, base_dir=None) -> Task:
    """The task a `lang` config section describes (a config.LangConfig, or a plain dict of
    its fields): a family by name, or, with family "rasp", a RASP program's output
    (tasks.program). A relative program path is looked up in `base_dir` (default: the
    working directory), then among the shipped programs (rasp_hydra/rasp/programs/)."""
    lang = from_dict(LangConfig, lang)
    if lang.family != "rasp":
        return make_task(lang.family, lang.size, bool(lang.bos), bool(lang.with_attns))
    from rasp_hydra.config import long_test_lengths

    from .program import make_program_task

    if not lang.program:
        raise ValueError(
            "lang=rasp needs a program: lang.program=FILE.rasp (or a shipped program's name, "
            "e.g. lang.program=sort_bos, or inline source), with lang.output=NAME for the "
            "s-op to learn.")
    max_len = int(lang.max_len)
    # the longest input of any split
    longest = max(max_len, int(long_test_lengths(max_len, lang.long_min_len,
                                                 lang.long_max_len)[1])
                  if lang.long_test_size else 0)
    from rasp_hydra.rasp import load

    path_or_source = find_program(lang.program, base_dir)
    program = load(path_or_source)
    names = program.names()
    output = lang.output or (  # default: the s-op named as the file, else the last one
        path_or_source.stem if isinstance(path_or_source, Path)
        and path_or_source.stem in names else (names[-1] if names else None))
    alphabet = lang.alphabet
    if isinstance(alphabet, int | float) and not isinstance(alphabet, bool):
        alphabet = str(alphabet)  # lang.alphabet=123 is characters, as it always was
    elif alphabet is not None and not isinstance(alphabet, str):
        alphabet = list(alphabet)  # a list of ints or strings
    alphabet = alphabet or lang.size or None  # None: make_program_task's default
    return make_program_task(
        program, output=output, **({} if alphabet is None else {"alphabet": alphabet}),
        bos=bool(lang.bos), with_attns=bool(lang.with_attns), sampler=lang.sampler,
        max_len=longest, base=lang.name, min_len=int(lang.min_len),
        classes=(lang.classes if isinstance(lang.classes, str | None)
                 else list(lang.classes)))


def find_program(program: str, base_dir=None) -> Path | str:
    """A .rasp file by path (relative to base_dir, default the working directory; ".rasp"
    may be left out), else a shipped program by name (``sort_bos``); source text
    (``rasp.source.is_source``: a newline, ";" or "{") is returned as it is."""
    if is_source(program):
        return program
    given = Path(program).expanduser()
    if not given.is_absolute() and base_dir is not None:
        given = Path(base_dir) / given
    for path in (given, given.with_name(given.name + ".rasp"), PROGRAMS / f"{program}.rasp"):
        if path.is_file():
            return path.resolve()
    shipped = ", ".join(sorted(p.stem for p in PROGRAMS.glob("*.rasp")))
    raise ValueError(f"lang.program={program!r}: no such .rasp file (looked in "
                     f"{given.parent}) and no shipped program of that name; shipped: "
                     f"{shipped}.")
