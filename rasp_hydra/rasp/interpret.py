"""Run RASP text: statements build s-op objects through the Python API of ``lang``.

    >>> from rasp_hydra.rasp import load
    >>> prog = load('flip = select(indices, length - indices - 1, ==); '
    ...             'reverse = aggregate(flip, tokens);')
    >>> prog.eval("reverse", "abc")
    ['c', 'b', 'a']
    >>> prog.budget("reverse")
    Budget(layers=2, heads=(1, 1))
    >>> prog.names()
    ['flip', 'reverse']

Semantics are those of the reference REPL (github tech-srl/RASP): docs/rasp_text.md,
"Semantics matched to the reference REPL", lists each rule (values and operators, ``if``
and ``in``, indexing, names and scopes, ``load``, the library loaded first); ``lang``
documents the s-op operations themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lark import Tree

from . import lang
from .compile import Budget, Compiled, compile_program
from .expressions import Expressions
from .lang import RASPError, RASPTypeError, Select, SOp
from .parse import RaspSyntaxError, parse
from .scope import (
    BUILTINS,
    RESERVED,
    RaspFunction,
    RASPNameError,
    RASPProgramError,
    Scope,
    describe,
    name_of,
)
from .source import LIBRARY_PATH, RASPLoadError, is_source, read_source


class Interpreter(Expressions):
    """Runs parsed statements (the expressions are ``Expressions``'). One per program:
    the ``in`` operator's full select and the load stack are per program."""

    def __init__(self):
        self._in_full_s: Select | None = None
        self._loading: list[Path] = []

    # --- statements
    def run(self, tree: Tree, scope: Scope, source_name: str) -> None:
        for stmt in tree.children:
            self.statement(stmt, scope, source_name)

    def statement(self, stmt: Tree, scope: Scope, source_name: str) -> None:
        try:
            getattr(self, "s_" + stmt.data)(stmt, scope, source_name)
        except (RASPProgramError, RaspSyntaxError):  # a loaded file's: it names its place
            raise
        except (RASPError, RecursionError) as err:
            if isinstance(err, RecursionError):
                err = RASPError("recursion too deep (a function that calls itself?)")
            where = f"{source_name}, line {stmt.meta.line}"
            raise RASPProgramError(str(err), where) from None

    def s_expr_stmt(self, stmt, scope, source_name):
        scope.vars["out"] = self.expr(stmt.children[0], scope)

    def s_assign(self, stmt, scope, source_name):
        names, exprs = stmt.children
        names = [str(t) for t in names.children]
        values = [self.expr(e, scope) for e in exprs.children]
        if len(names) == 1:
            scope.assign(names[0], values[0] if len(values) == 1 else values, rename=True)
            return
        if len(values) == 1:
            if not isinstance(values[0], list):
                raise RASPTypeError(f"Assigning {len(names)} names needs {len(names)} "
                                    f"values or a list of them, got {describe(values[0])}.")
            values = values[0]
        if len(values) != len(names):
            raise RASPTypeError(f"Assigning {len(names)} names ({', '.join(names)}) but got "
                                f"{len(values)} values.")
        for name, value in zip(names, values, strict=True):
            scope.assign(name, value, rename=True)

    def s_load(self, stmt, scope, source_name):
        self.load_file(str(stmt.children[0])[1:-1], scope)

    def s_draw(self, stmt, scope, source_name):
        for e in stmt.children:  # drawing is the REPL's; check the arguments only
            if e is not None:
                self.expr(e, scope)

    def s_funcdef(self, stmt, scope, source_name):
        name, params, *body, ret = stmt.children
        params = [str(t) for t in params.children] if params is not None else []
        if len(set(params)) != len(params):
            raise RASPNameError(f"Function {name!r} names a parameter twice: {params}.")
        fn = RaspFunction(str(name), params, body, ret.children[0], scope, source_name)
        scope.assign(str(name), fn)

    def s_forloop(self, stmt, scope, source_name):
        names, iterable, *body = stmt.children
        names = [str(t) for t in names.children]
        items = self.expr(iterable, scope)
        if not isinstance(items, list | dict):
            raise RASPTypeError(f"A for loop goes over a list or dict, got {describe(items)}.")
        for item in list(items):
            self.bind(names, item, scope)
            for s in body:
                self.statement(s, scope, source_name)

    def bind(self, names: list[str], item: Any, scope: Scope) -> None:
        if len(names) == 1:
            scope.assign(names[0], item)
            return
        if not isinstance(item, list | str) or len(item) != len(names):
            raise RASPTypeError(f"Looping with {len(names)} names ({', '.join(names)}) needs "
                                f"items of {len(names)} values, got {describe(item)}.")
        for n, v in zip(names, item, strict=True):
            scope.assign(n, v)

    def load_file(self, name: str, scope: Scope) -> None:
        base = scope.path.parent if scope.path is not None else Path.cwd()
        candidates = [base / name, base / (name + ".rasp")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise RASPLoadError(f"Cannot load {name!r}: no file {candidates[0]} or "
                                f"{candidates[1]} (a load is relative to the loading file).")
        path = path.resolve()
        if path in self._loading:
            raise RASPLoadError(f"{path.name} loads itself (through "
                                f"{' -> '.join(p.name for p in self._loading)}).")
        library = scope
        while library.parent is not None and library.parent.parent is not None:
            library = library.parent
        file_scope = Scope(library, reserved=scope.reserved, export_to=scope, path=path,
                           own_file=True)
        self._loading.append(path)
        try:
            self.run(parse(read_source(path), str(path.name)), file_scope, path.name)
        finally:
            self._loading.pop()

    def call(self, fn: RaspFunction, args: list[Any]) -> Any:
        if len(args) != len(fn.params):
            raise RASPTypeError(f"{fn.name} takes {len(fn.params)} arguments "
                                f"({', '.join(fn.params)}), got {len(args)}.")
        local = Scope(fn.scope, reserved=RESERVED)
        for name, value in zip(fn.params, args, strict=True):
            local.assign(name, value)
        for stmt in fn.body:
            self.statement(stmt, local, fn.source_name)
        try:
            values = [self.expr(e, local) for e in fn.returns.children]
        except RASPProgramError:
            raise
        except RASPError as err:
            raise RASPProgramError(f"in the return of {fn.name}: {err}",
                                   f"{fn.source_name}, line {fn.returns.meta.line}") from None
        result = values[0] if len(values) == 1 else values
        if isinstance(result, SOp | Select) and not isinstance(result, lang.Input):
            result.name = f"{fn.name}({', '.join(name_of(a) for a in args)})"
        return result


# ----------------------------------------------------------------------------- programs

class Program:
    """A loaded RASP program: its names and values, evaluation and compilation."""

    def __init__(self, scope: Scope, library: Scope, source_name: str):
        self.scope, self.library, self.source_name = scope, library, source_name

    def names(self) -> list[str]:
        """What the program defines (also through loads), in order, without ``_``
        names, ``out`` and the library's names."""
        return [n for n in self.scope.vars if not n.startswith("_") and n != "out"]

    def value(self, name: str) -> Any:
        """Any value the program (or the library) defines, by name."""
        if name.startswith("_") and name not in self.scope.vars:
            raise RASPNameError(self.scope._unknown(name))
        return self.scope.lookup(name)

    def sop(self, name: str) -> SOp | Select:
        """The ``lang`` object (s-op or selector) named ``name``."""
        value = self.value(name)
        if not isinstance(value, SOp | Select):
            raise RASPTypeError(f"{name!r} is {describe(value)}, not an s-op or a selector.")
        return value

    __getitem__ = sop

    def eval(self, name: str, inp: str | list) -> list:
        """The values of s-op ``name`` on one input (a string, or a list of raw values,
        e.g. ints for ``tokens_int``), as the REPL holds them; for a selector, its
        boolean matrix [query][key]."""
        if not isinstance(inp, str | list | tuple) or len(inp) == 0:
            raise RASPTypeError(f"An input must be a non-empty string or list, got {inp!r}.")
        from .evaluate import evaluate
        return evaluate(self.sop(name), inp if isinstance(inp, str) else list(inp))

    def call(self, name: str, *args: Any) -> Any:
        """Call the function ``name`` (a ``def`` of the program or the library) with
        Python values (s-ops, selectors, atoms, lists), as a statement of the program
        would; an s-op or selector it returns is named after the call."""
        fn = self.value(name)
        if not isinstance(fn, RaspFunction):
            raise RASPTypeError(f"{name!r} is {describe(fn)}, not a function.")
        return Interpreter().call(fn, list(args))

    def compile(self, name: str) -> Compiled:
        """The compiled program of ``name``."""
        return compile_program(self.sop(name))

    def budget(self, name: str) -> Budget:
        """Attention layers and heads per layer that s-op ``name`` needs."""
        return self.compile(name).budget

    def __repr__(self) -> str:
        return f"Program({self.source_name!r}, names={self.names()})"


def _library(interpreter: Interpreter) -> Scope:
    base = Scope(None, path=LIBRARY_PATH)
    base.vars.update(BUILTINS)
    library = Scope(base, path=LIBRARY_PATH, own_file=True)
    interpreter.run(_parse_library(), library, LIBRARY_PATH.name)
    library.vars["tokens"] = lang.tokens_str
    return library


_LIBRARY_TREE: Tree | None = None


def _parse_library() -> Tree:
    global _LIBRARY_TREE
    if _LIBRARY_TREE is None:
        _LIBRARY_TREE = parse(LIBRARY_PATH.read_text(), LIBRARY_PATH.name)
    return _LIBRARY_TREE


def load_library() -> Program:
    """The library alone (``rasplib.rasp``), as a program: its names and functions."""
    library = _library(Interpreter())
    return Program(library, library, LIBRARY_PATH.name)


def load(path_or_source: str | Path) -> Program:
    """Load a RASP program from a ``.rasp`` file or from source text.

    A ``Path``, or a string that is not source text (``source.is_source``: no newline,
    ``;`` or ``{``), is a file name (``.rasp`` may be left out); anything else is source
    (its loads are relative to the current directory).
    Errors, all ``RASPError``: ``RaspSyntaxError`` (line and column), ``RASPProgramError``
    (file and line of the failing statement; unknown names suggest close ones),
    ``RASPLoadError`` (a file that is missing, unreadable or not UTF-8 text).
    """
    path = None
    if isinstance(path_or_source, Path) or not is_source(path_or_source):
        path = Path(path_or_source)
        if not path.is_file() and path.with_name(path.name + ".rasp").is_file():
            path = path.with_name(path.name + ".rasp")
        if not path.is_file():
            raise RASPLoadError(f"No RASP file {str(path_or_source)!r} (give a path to a "
                                ".rasp file, or program text with ';' after each statement).")
        source, source_name = read_source(path), path.name
        path = path.resolve()
    else:
        source, source_name = str(path_or_source), "<source>"
    tree = parse(source, source_name)
    interpreter = Interpreter()
    library = _library(interpreter)
    reserved = RESERVED | frozenset(k for k in library.vars if k != "tokens")
    scope = Scope(library, reserved=reserved, path=path, own_file=True)
    if path is not None:
        interpreter._loading.append(path)
    interpreter.run(tree, scope, source_name)
    return Program(scope, library, source_name)


__all__ = ["Budget", "Program", "RASPLoadError", "RASPNameError", "RASPProgramError",
           "RaspFunction", "RaspSyntaxError", "load", "load_library"]
