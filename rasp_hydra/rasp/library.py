"""The RASP library and the shipped programs in the Python API, built from their files so
that each is defined once, in RASP: ``full_s``, ``length`` and ``selector_width`` are the
library's (``rasplib.rasp``, loaded before every program as the reference REPL loads its
own), ``selector_width_bos`` is the BOS programs' (``programs/bos.rasp``, the paper's
``_with_bos_selector_width``), and ``program(name)`` is the s-op a shipped program
computes (``programs/NAME.rasp``). Its one reason to change: which of those definitions
the Python API offers. ``TABLE1`` names the seven Table 1 programs and the hand-written
families whose tasks they compute (docs/tasks.md; each file's comments say how it differs
from the paper's program).

    >>> from rasp_hydra.rasp import evaluate, select, tokens
    >>> evaluate(selector_width(select(tokens, tokens, "==")), "abba")
    [2, 2, 2, 2]
    >>> evaluate(program("sort_by_freq_bos"), "§abcbc")
    ['§', 'b', 'c', 'a', '§', '§']
"""

from __future__ import annotations

from .interpret import load, load_library
from .lang import Select, SOp, _as_select
from .source import PROGRAMS

_LIBRARY = load_library()
_BOS = load(PROGRAMS / "bos.rasp")

full_s: Select = _LIBRARY.sop("full_s")  # every query selects every key
length: SOp = _LIBRARY.sop("length")  # an aggregate over full_s: one head


def selector_width(sel: Select, name: str | None = None) -> SOp:
    """How many keys ``sel`` selects per query, as rasplib.rasp computes it: two selects,
    ``sel or first`` and ``sel and first`` (first = key index 0), on the layer after
    ``sel``'s inputs.

    >>> from rasp_hydra.rasp import compile_program, indices, select
    >>> compile_program(selector_width(select(indices, indices, "<"))).heads
    (2,)
    """
    out = _LIBRARY.call("selector_width", _as_select(sel, "selector_width"))
    return out.named(name) if name else out


def selector_width_bos(sel: Select, name: str | None = None) -> SOp:
    """For programs whose position 0 is BOS, which every query may select: the selected
    positions other than 0, with one select ``sel or first`` (bos.rasp's).

    >>> from rasp_hydra.rasp import evaluate, select, tokens
    >>> evaluate(selector_width_bos(select(tokens, tokens, "==")), "§abba")
    [0, 2, 2, 2, 2]
    """
    out = _BOS.call("selector_width_bos", _as_select(sel, "selector_width_bos"))
    return out.named(name) if name else out


# The seven Table 1 programs: shipped program -> (the hand-written family that computes
# the same task, whether the program is written for inputs that start with BOS).
TABLE1 = {
    "reverse": ("reverse", False),
    "hist_bos": ("hist", True),
    "hist2_bos": ("hist2", True),
    "sort_bos": ("sort", True),
    "sort_by_freq_bos": ("sort_by_freq", True),
    "dyck1_ptf": ("dyck1_ptf", False),
    "dyck2_ptf": ("dyck2_ptf", False),
}


def program(name: str) -> SOp:
    """The s-op that the shipped program ``programs/NAME.rasp`` computes (the one named as
    the file), freshly loaded."""
    return load(PROGRAMS / f"{name}.rasp").sop(name)
