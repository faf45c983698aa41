"""RASP ("Restricted Access Sequence Processing", Weiss et al. 2021) programs: the object
model and Python API (``lang``), batched evaluation (``evaluate``), compilation to an
attention budget (``compile``), the text syntax of the reference REPL (``parse``,
``interpret``; ``load`` reads a program), and the library's s-ops and the shipped
programs in the Python API (``library``, built from their ``.rasp`` files).

    >>> from rasp_hydra.rasp import tokens, indices, select, aggregate, length, evaluate
    >>> reverse = aggregate(select(indices, length - indices - 1, "=="), tokens)
    >>> evaluate(reverse, "hello")
    ['o', 'l', 'l', 'e', 'h']
"""

import sys
import types

from .compile import Budget, Compiled, compile_program
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
    "Budget",
    "Compiled",
    "compile_program",
    "evaluate",
    "evaluate_batch",
    "load",
    "Program",
    "RaspSyntaxError",
]


# Imported on first use: the text side (so the core never depends on it), the library's
# s-ops (built by loading their RASP definitions) and the batched evaluator (it imports
# torch, which loading, compiling and value sets do not need).
_LAZY = {"load": "interpret", "Program": "interpret", "RaspSyntaxError": "interpret",
         "full_s": "library", "length": "library", "selector_width": "library",
         "selector_width_bos": "library",
         "Column": "evaluate",
         "evaluate": "evaluate", "evaluate_batch": "evaluate"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        # importing the submodule ``evaluate`` binds it here, over the function of that
        # name, which the package's ``evaluate`` stays (as when it was imported eagerly)
        if name == "evaluate" and isinstance(value, types.ModuleType):
            value = value.evaluate
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
