"""What RASP expressions evaluate to while a program loads: atoms, lists and dicts in
Python, s-ops and selectors as ``lang`` objects (the rules are ``interpret``'s module
docstring). ``Expressions`` holds one method per expression kind of the grammar
(``e_<rule>``); ``interpret.Interpreter`` adds the statements and function calls. Its one
reason to change is the meaning of an expression.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from lark import Token, Tree

from . import lang
from .lang import RASPTypeError, Select, SOp
from .scope import RESERVED, RaspFunction, Scope, describe, is_atom, name_of

BINARY_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "%": operator.mod, "^": operator.pow, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge,
}


class Expressions:
    """The expression methods of the interpreter (``expr`` dispatches on the rule)."""

    _in_full_s: Select | None  # the ``in`` operator's full select, one per program

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
