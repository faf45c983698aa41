"""The names and values of RASP text: the built-in and reserved names, a ``Scope`` of
names (of a file, a function call or a comprehension), a ``def``'s ``RaspFunction``, the
errors about names and statements, and how values are shown in error messages. Its one
reason to change is the language's rules for names; ``interpret`` runs statements.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lark import Tree

from . import lang
from .lang import ATOM_TYPES, RASPError, Select, SOp

BUILTINS: dict[str, Any] = {
    "tokens_str": lang.tokens_str, "tokens_int": lang.tokens_int,
    "tokens_float": lang.tokens_float, "tokens_bool": lang.tokens_bool,
    "tokens_asis": lang.tokens_asis, "indices": lang.indices, "True": True, "False": False,
}
# Names no program may assign (the reference's reserved words that are not keywords).
RESERVED = frozenset(BUILTINS) | {"out", "range", "zip", "len", "get"}


class RASPNameError(RASPError):
    """A name that is not defined, or one that may not be assigned."""


class RASPProgramError(RASPError):
    """An error while running a program, with the file and line of the statement."""

    def __init__(self, message: str, where: str):
        super().__init__(f"{where}: {message}")
        self.message, self.where = message, where


def is_atom(value: Any) -> bool:
    return isinstance(value, ATOM_TYPES)


def describe(value: Any) -> str:
    """A value as error messages show it: its kind and (short) text."""
    if isinstance(value, SOp):
        return f"the s-op {value.name!r}"
    if isinstance(value, Select):
        return f"the selector {value.name!r}"
    if isinstance(value, RaspFunction):
        return f"the function {value.name!r}"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, bool):
        return f"the bool {value}"
    if isinstance(value, int | float):
        return f"the number {value}"
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"the {type(value).__name__} {text}"


def name_of(value: Any) -> str:
    if isinstance(value, SOp | Select):
        return value.name
    if isinstance(value, str):
        return f'"{value}"'
    return str(value) if len(str(value)) <= 20 else f"({type(value).__name__})"


# ----------------------------------------------------------------------------- scopes

class Scope:
    """Names of one file, function call or comprehension. ``export_to``: the loader's
    scope, which also receives every non-private name assigned here (a loaded file)."""

    def __init__(self, parent: Scope | None, reserved: frozenset[str] = RESERVED,
                 export_to: Scope | None = None, path: Path | None = None,
                 own_file: bool = False):
        self.vars: dict[str, Any] = {}
        self.parent, self.reserved, self.export_to = parent, reserved, export_to
        # a file's scope has its own path (None: source text, loads from the current
        # directory); function and comprehension scopes use their file's
        self.path = path if own_file or parent is None else parent.path

    def lookup(self, name: str) -> Any:
        scope = self
        while scope is not None:
            if name in scope.vars:
                return scope.vars[name]
            scope = scope.parent
        raise RASPNameError(self._unknown(name))

    def visible_names(self) -> set[str]:
        names, scope = set(), self
        while scope is not None:
            names |= set(scope.vars)
            scope = scope.parent
        return names

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, sorted(self.visible_names()), n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        if name.startswith("_"):
            hint += (" Names starting with '_' are private to the file that defines them"
                     " (a load does not export them).")
        return f"Unknown name {name!r}.{hint}"

    def assign(self, name: str, value: Any, rename: bool = False) -> None:
        """Bind ``name``; ``rename``: an assignment statement, which also names an s-op or
        selector (parameters and loop names do not, as in the REPL)."""
        if name in self.reserved:
            raise RASPNameError(
                f"Cannot assign {name!r}: it is a built-in or library name (reserved: "
                "tokens_str/int/float/bool/asis, indices, True, False, out, range, zip, len,"
                " get and the library's names). Use another name, or assign it inside a "
                "function, where library names may be shadowed.")
        if rename and isinstance(value, SOp | Select) and not isinstance(value, lang.Input):
            value.name = name  # the REPL's setname: the last assignment names it
        self.vars[name] = value
        if self.export_to is not None and not name.startswith("_"):
            self.export_to.assign(name, value)


# ----------------------------------------------------------------------------- functions

@dataclass
class RaspFunction:
    """A ``def``: called with a fresh scope inside the scope it was defined in."""

    name: str
    params: list[str]
    body: list[Tree]
    returns: Tree
    scope: Scope
    source_name: str = "<source>"  # the file it is defined in, for error messages

    def __str__(self) -> str:
        return f"function {self.name}({', '.join(self.params)})"
