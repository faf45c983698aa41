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

Semantics (those of the reference REPL, github tech-srl/RASP; ``lang`` documents the
s-op operations themselves):

- Values are atoms (int, float, str, bool), lists, dicts, functions, s-ops and
  selectors. Everything but s-ops and selectors is computed in Python while the program
  loads; s-ops and selectors are built as ``lang`` objects and evaluated later, per input.
- An operator with an s-op operand is elementwise (atoms on the other side are
  constants); between atoms it is Python's (``1/2`` is ``0.5``, ``"a" + "b"`` is
  ``"ab"``). ``and``/``or``/``not`` on s-ops give bools from truthiness; on selectors
  they compose one new select; on atoms they are Python's (``0 or 3`` is ``3``). Mixing
  a selector with anything else, or any other operator on a selector, is an error.
- ``x if c else y``: with an s-op ``c`` both branches are computed and chosen per
  position; with an atom ``c`` only the chosen branch is evaluated.
- ``x in xs``: an s-op in a list of atoms is elementwise; an atom in a list is Python's;
  an atom in an s-op is ``aggregate(full, indicator(s == x)) > 0`` with a ``full``
  select of its own (one more head, as in the reference).
- Indexing: lists and strings by an int (negatives from the end) or elementwise by an
  s-op; dicts by an atom or elementwise by an s-op (a missing key is an error when the
  program is evaluated); an s-op by an int ``i`` is ``aggregate(select(indices, i, ==),
  s)`` (negative ``i``: ``select(indices, length + i, ==)``), so it costs a head.
- ``round(x)`` is Python's (banker's rounding; float -> int); ``indicator(x)`` needs an
  s-op; ``range`` takes 1-3 ints; ``zip`` takes lists of equal length and gives a list of
  lists; ``len`` takes a list. Comprehensions and ``for`` loops iterate over lists or dicts
  (keys); several loop names unpack each item.
- Names: ``a, b = x, y;`` assigns in order; ``a, b = f();`` unpacks a returned list.
  ``def f(x) { ...; return e; }`` runs in its own scope (parameters and local names stay
  inside; outer names are looked up when it is called); ``return a, b;`` returns a list.
  A ``for`` loop's names and assignments belong to the enclosing scope. An expression
  statement ``e;`` sets ``out``. Assigning an s-op or selector names it (last name wins).
- ``load "file";`` (``.rasp`` optional) runs the file, relative to the loading file's
  directory, in a fresh scope that sees only the library, and copies its names into the
  loader, except names starting with ``_`` (private to their file).
- The library (``rasplib.rasp`` beside this module, in RASP) is loaded first, as in the
  REPL: its names (``length``, ``full_s``, ``selector_width``, ``sort``, ...) and the
  built-ins (``tokens_str``, ``tokens_int``, ``tokens_float``, ``tokens_bool``,
  ``tokens_asis``, ``indices``, ``True``, ``False``) cannot be reassigned outside a
  function; ``tokens`` starts as ``tokens_str`` and can (``tokens = tokens_int;``).
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lark import Token, Tree

from . import lang
from .compile import Budget, Compiled, compile_program
from .lang import ATOM_TYPES, RASPError, RASPTypeError, Select, SOp
from .parse import RaspSyntaxError, parse

LIBRARY_PATH = Path(__file__).with_name("rasplib.rasp")
BUILTINS: dict[str, Any] = {
    "tokens_str": lang.tokens_str, "tokens_int": lang.tokens_int,
    "tokens_float": lang.tokens_float, "tokens_bool": lang.tokens_bool,
    "tokens_asis": lang.tokens_asis, "indices": lang.indices, "True": True, "False": False,
}
# Names no program may assign (the reference's reserved words that are not keywords).
RESERVED = frozenset(BUILTINS) | {"out", "range", "zip", "len", "get"}

BINARY_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "%": operator.mod, "^": operator.pow, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge,
}


class RASPNameError(RASPError):
    """A name that is not defined, or one that may not be assigned."""


class RASPLoadError(RASPError):
    """A ``load`` whose file cannot be found or read, or that loads itself."""


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


# ----------------------------------------------------------------------------- the interpreter

class Interpreter:
    """Runs parsed statements. One per program: the ``in`` operator's full select and
    the load stack are per program."""

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

    # --- expressions
    def expr(self, node: Tree | Token, scope: Scope) -> Any:
        return getattr(self, "e_" + node.data)(node, scope)

    def e_var(self, node, scope):
        return scope.lookup(str(node.children[0]))

    def e_int_(self, node, scope):
        return int(node.children[0])

    def e_float_(self, node, scope):
        return float(node.children[0])

    def e_string(self, node, scope):
        return str(node.children[0])[1:-1]

    def e_list_(self, node, scope):
        exprs = node.children[0]
        return [] if exprs is None else [self.expr(e, scope) for e in exprs.children]

    def e_dict_(self, node, scope):
        out = {}
        for pair in node.children:
            if pair is None:
                continue
            out[self.dict_key(pair.children[0], scope)] = self.expr(pair.children[1], scope)
        return out

    def dict_key(self, node, scope):
        key = self.expr(node, scope)
        if not is_atom(key):
            raise RASPTypeError(f"Dict keys must be atoms (int, float, str, bool), got "
                                f"{describe(key)}.")
        return key

    def comprehension(self, names, iterable, scope, make):
        items = self.expr(iterable, scope)
        if not isinstance(items, list | dict):
            raise RASPTypeError(f"A comprehension goes over a list or dict, got "
                                f"{describe(items)}.")
        names = [str(t) for t in names.children]
        out = []
        for item in list(items):
            inner = Scope(scope, reserved=frozenset(RESERVED))
            self.bind(names, item, inner)
            out.append(make(inner))
        return out

    def e_listcomp(self, node, scope):
        val, names, iterable = node.children
        return self.comprehension(names, iterable, scope, lambda s: self.expr(val, s))

    def e_dictcomp(self, node, scope):
        key, val, names, iterable = node.children
        pairs = self.comprehension(
            names, iterable, scope, lambda s: (self.dict_key(key, s), self.expr(val, s)))
        return dict(pairs)

    def e_range_(self, node, scope):
        args = [self.expr(e, scope) for e in node.children[1].children]
        if not 1 <= len(args) <= 3 or not all(
                isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise RASPTypeError(f"range takes 1 to 3 ints, got "
                                f"{', '.join(describe(a) for a in args)}.")
        return list(range(*args))

    def e_zip_(self, node, scope):
        lists = [self.expr(e, scope) for e in node.children[1].children]
        for i, v in enumerate(lists):
            if not isinstance(v, list):
                raise RASPTypeError(f"zip takes lists; argument {i + 1} is {describe(v)}.")
        if len({len(v) for v in lists}) > 1:
            raise RASPTypeError(f"zip takes lists of one length, got lengths "
                                f"{[len(v) for v in lists]}.")
        return [list(t) for t in zip(*lists, strict=True)]

    def e_len_(self, node, scope):
        value = self.expr(node.children[1], scope)
        if not isinstance(value, list):
            raise RASPTypeError(f"len takes a list, got {describe(value)}.")
        return len(value)

    def e_select(self, node, scope):
        _, keys, queries, op = node.children
        keys, queries = self.expr(keys, scope), self.expr(queries, scope)
        for role, v in (("keys", keys), ("queries", queries)):
            if not (isinstance(v, SOp) or is_atom(v)):
                raise RASPTypeError(f"select's {role} must be an s-op or an atom, got "
                                    f"{describe(v)}.")
        return lang.select(keys, queries, str(op))

    def e_aggregate(self, node, scope):
        _, sel, values, default = node.children
        sel, values = self.expr(sel, scope), self.expr(values, scope)
        default = None if default is None else self.expr(default, scope)
        if not isinstance(sel, Select):
            raise RASPTypeError(f"aggregate's first argument must be a selector, got "
                                f"{describe(sel)}.")
        if not (isinstance(values, SOp) or is_atom(values)):
            raise RASPTypeError(f"aggregate's second argument must be an s-op (or an atom), "
                                f"got {describe(values)}.")
        if default is not None and not is_atom(default):
            raise RASPTypeError(f"aggregate's default must be an atom, got {describe(default)}.")
        return lang.aggregate(sel, values, default)

    def e_round_(self, node, scope):
        value = self.expr(node.children[1], scope)
        if isinstance(value, SOp):
            return lang.map(round, value, name=f"round({value.name})")
        if isinstance(value, int | float):
            return round(value)
        raise RASPTypeError(f"round takes a number or an s-op, got {describe(value)}.")

    def e_indicator(self, node, scope):
        value = self.expr(node.children[1], scope)
        if not isinstance(value, SOp):
            raise RASPTypeError(f"indicator takes an s-op, got {describe(value)}.")
        return lang.indicator(value)

    def e_unop(self, node, scope):
        op, operand = str(node.children[0]), self.expr(node.children[1], scope)
        if op == "not":
            if isinstance(operand, Select):
                return lang.sel_not(operand)
            if isinstance(operand, SOp):
                return lang.sop_not(operand)
            return not operand
        fn = operator.neg if op == "-" else operator.pos
        if isinstance(operand, SOp):
            return lang.map(fn, operand, name=f"({op}{operand.name})")
        return self.python(fn, op, operand)

    def python(self, fn, op, *args):
        if any(isinstance(a, Select | RaspFunction) for a in args) or not all(
                is_atom(a) or isinstance(a, list | dict) for a in args):
            raise RASPTypeError(f"Cannot apply {op} to "
                                f"{' and '.join(describe(a) for a in args)}.")
        try:
            return fn(*args)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as err:
            raise RASPTypeError(f"Cannot apply {op} to "
                                f"{' and '.join(describe(a) for a in args)} ({err}).") from None

    def e_binop(self, node, scope):
        left, op, right = node.children
        op = str(op)
        left, right = self.expr(left, scope), self.expr(right, scope)
        sel_l, sel_r = isinstance(left, Select), isinstance(right, Select)
        if op in ("and", "or"):
            if sel_l or sel_r:
                if not (sel_l and sel_r):
                    raise RASPTypeError(f"Cannot apply {op} between a selector and "
                                        f"something else ({describe(left)}, {describe(right)}).")
                return (lang.sel_and if op == "and" else lang.sel_or)(left, right)
            if isinstance(left, SOp) or isinstance(right, SOp):
                self.check_elementwise(op, left, right)
                return (lang.sop_and if op == "and" else lang.sop_or)(left, right)
            return left and right if op == "and" else left or right
        if sel_l or sel_r:
            raise RASPTypeError(f"Cannot apply {op} to a selector ({describe(left)}, "
                                f"{describe(right)}); selectors combine with and/or/not.")
        fn = BINARY_OPS[op]
        if isinstance(left, SOp) or isinstance(right, SOp):
            self.check_elementwise(op, left, right)
            return lang.map(fn, left, right, name=f"({name_of(left)} {op} {name_of(right)})")
        return self.python(fn, op, left, right)

    def check_elementwise(self, op, *operands):
        for v in operands:
            if not (isinstance(v, SOp) or is_atom(v)):
                raise RASPTypeError(f"Cannot apply {op} elementwise to {describe(v)}: "
                                    "an s-op combines with s-ops and atoms only.")

    def e_ternary(self, node, scope):
        yes, cond, no = node.children
        c = self.expr(cond, scope)
        if isinstance(c, Select):
            raise RASPTypeError(f"The condition of 'x if c else y' cannot be a selector "
                                f"({describe(c)}).")
        if isinstance(c, SOp):
            x, y = self.expr(yes, scope), self.expr(no, scope)
            self.check_elementwise("'if ... else'", x, y)
            return lang.where(c, x, y)
        return self.expr(yes, scope) if c else self.expr(no, scope)

    def e_contains(self, node, scope):
        item, container = self.expr(node.children[0], scope), self.expr(node.children[1], scope)
        if isinstance(item, SOp):
            if not isinstance(container, list) or not all(is_atom(v) for v in container):
                raise RASPTypeError(f"'s in X' with an s-op s needs X to be a list of atoms, "
                                    f"got {describe(container)}.")
            members = list(container)
            return lang.map(lambda v: v in members, item,
                            name=f"({item.name} in {describe(container)})")
        if is_atom(item):
            if isinstance(container, list):
                return item in [v for v in container if not isinstance(v, SOp | Select)]
            if isinstance(container, SOp):
                if self._in_full_s is None:
                    self._in_full_s = lang.select(1, 1, "==", name="full (for 'in')")
                found = lang.aggregate(self._in_full_s,
                                       lang.map(lambda v: int(v == item), container))
                return lang.map(lambda f: f > 0, found, name=f"({item!r} in {container.name})")
            raise RASPTypeError(f"'a in X' with an atom a needs X to be a list or an s-op, got "
                                f"{describe(container)}.")
        raise RASPTypeError(f"'a in X' needs a to be an s-op or an atom, got {describe(item)}.")

    def e_index(self, node, scope):
        target, index = self.expr(node.children[0], scope), self.expr(node.children[1], scope)
        if isinstance(target, list | str):
            kind = "list" if isinstance(target, list) else "string"
            items = list(target) if isinstance(target, list) else target

            def at(i):
                if not isinstance(i, int) or isinstance(i, bool):
                    raise RASPTypeError(f"A {kind} index must be an int, got {describe(i)}.")
                if not -len(items) <= i < len(items):
                    raise RASPTypeError(f"Index {i} is out of range for a {kind} of length "
                                        f"{len(items)}.")
                return items[i]
            if isinstance(index, SOp):
                return lang.map(at, index, name=f"{kind}[{index.name}]")
            return at(index)
        if isinstance(target, dict):
            table = dict(target)

            def get(k):
                if k not in table:
                    raise RASPTypeError(f"Key {describe(k)} is not in the dict (keys: "
                                        f"{list(table)[:10]}).")
                return table[k]
            if isinstance(index, SOp):
                return lang.map(get, index, name=f"dict[{index.name}]")
            if not is_atom(index):
                raise RASPTypeError(f"A dict index must be an atom or an s-op, got "
                                    f"{describe(index)}.")
            return get(index)
        if isinstance(target, SOp):
            if not isinstance(index, int) or isinstance(index, bool):
                raise RASPTypeError(f"An s-op index must be an int, got {describe(index)}.")
            where = index if index >= 0 else scope.lookup("length") + index
            sel = lang.select(lang.indices, where, "==", name=f"load from {index}")
            return lang.aggregate(sel, target, name=f"{target.name}[{index}]")
        raise RASPTypeError(f"Only lists, strings, dicts and s-ops can be indexed, got "
                            f"{describe(target)}.")

    def e_call(self, node, scope):
        callee = self.expr(node.children[0], scope)
        args = [] if node.children[1] is None else [
            self.expr(e, scope) for e in node.children[1].children]
        if isinstance(callee, RaspFunction):
            return self.call(callee, args)
        if isinstance(callee, SOp | Select):
            if len(args) != 1 or not isinstance(args[0], list | str) or not args[0]:
                raise RASPTypeError(f"Applying {describe(callee)} needs one non-empty input "
                                    f"(a string or a list), got {len(args)} arguments.")
            from .evaluate import evaluate
            return evaluate(callee, args[0])
        raise RASPTypeError(f"Only functions can be called (and s-ops applied to an input); "
                            f"{describe(callee)} is neither.")

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


def name_of(value: Any) -> str:
    if isinstance(value, SOp | Select):
        return value.name
    if isinstance(value, str):
        return f'"{value}"'
    return str(value) if len(str(value)) <= 20 else f"({type(value).__name__})"


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


def _is_path(text: str) -> bool:
    return "\n" not in text and ";" not in text and "{" not in text


def read_source(path: Path) -> str:
    """A .rasp file's text, or a RASPLoadError naming the file when it is not UTF-8 text
    (a binary file, a Latin-1 one) or cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RASPLoadError(
            f"{path} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
            f"{err.start} is not UTF-8), so it cannot be a RASP program: a .rasp file is "
            "UTF-8 text. Give a RASP source file, or convert this one (e.g. `iconv -f "
            "latin1 -t utf-8`).") from None
    except OSError as err:
        raise RASPLoadError(f"Cannot read {path}: {err.strerror or err}.") from None


def load(path_or_source: str | Path) -> Program:
    """Load a RASP program from a ``.rasp`` file or from source text.

    A ``Path``, or a one-line string without ``;`` is a file name (``.rasp`` may be
    left out); anything else is source (its loads are relative to the current directory).
    Errors, all ``RASPError``: ``RaspSyntaxError`` (line and column), ``RASPProgramError``
    (file and line of the failing statement; unknown names suggest close ones),
    ``RASPLoadError`` (a file that is missing, unreadable or not UTF-8 text).
    """
    path = None
    if isinstance(path_or_source, Path) or _is_path(path_or_source):
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
           "RaspFunction", "RaspSyntaxError", "load"]
