"""RASP ("Restricted Access Sequence Processing", Weiss et al. 2021) programs: the object
model and Python API (``lang``), batched evaluation (``evaluate``), compilation to an
attention budget (``compile``), the paper's programs in Python (``library``), and the
text syntax of the reference REPL (``parse``, ``interpret``; ``load`` reads a program).

    >>> from rasp_hydra.rasp import tokens, indices, select, aggregate, length, evaluate
    >>> reverse = aggregate(select(indices, length - indices - 1, "=="), tokens)
    >>> evaluate(reverse, "hello")
    ['o', 'l', 'l', 'e', 'h']
"""

from .compile import Compiled, compile_program
from .evaluate import Column, evaluate, evaluate_batch
from .lang import (
    SELECT_OPS,
    Aggregate,
    Input,
    Map,
    RASPAggregateError,
    RASPError,
    RASPEvalError,
    RASPExpr,
    RASPTypeError,
    Select,
    SOp,
    aggregate,
    constant,
    full_s,
    indicator,
    indices,
    length,
    map,
    numerical_mean,
    sel_and,
    sel_not,
    sel_or,
    select,
    selector_width,
    selector_width_bos,
    sop_and,
    sop_not,
    sop_or,
    tokens,
    tokens_asis,
    tokens_bool,
    tokens_float,
    tokens_int,
    tokens_str,
    where,
    zipmap,
)

__all__ = [
    "RASPError",
    "RASPTypeError",
    "RASPEvalError",
    "RASPAggregateError",
    "RASPExpr",
    "SOp",
    "Select",
    "Input",
    "Map",
    "Aggregate",
    "SELECT_OPS",
    "tokens",
    "tokens_str",
    "tokens_int",
    "tokens_float",
    "tokens_bool",
    "tokens_asis",
    "indices",
    "constant",
    "map",
    "zipmap",
    "select",
    "aggregate",
    "sel_and",
    "sel_or",
    "sel_not",
    "sop_and",
    "sop_or",
    "sop_not",
    "where",
    "indicator",
    "full_s",
    "length",
    "selector_width",
    "selector_width_bos",
    "numerical_mean",
    "Column",
    "Compiled",
    "compile_program",
    "evaluate",
    "evaluate_batch",
    "load",
    "Program",
    "RaspSyntaxError",
]


def __getattr__(name: str):
    # the text side is imported on first use, so the core never depends on it
    if name in ("load", "Program", "RaspSyntaxError"):
        from . import interpret
        return getattr(interpret, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
