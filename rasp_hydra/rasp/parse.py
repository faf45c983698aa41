"""The RASP text syntax: a lark LALR grammar for the language of the reference REPL.

The grammar follows the reference's ANTLR grammar (github tech-srl/RASP,
``RASP_support/RASP.g4``), including its operator precedence, which differs from
Python's in places (tightest first):

1. postfix: indexing ``x[i]`` and calls ``f(a, b)``
2. prefix: ``not x``, ``-x``, ``+x`` (so ``not a == b`` is ``(not a) == b`` and
   ``-2 ^ 2`` is ``4``)
3. ``^`` (left-associative: ``2 ^ 3 ^ 2`` is ``64``)
4. ``*`` ``/``
5. ``%`` (below ``*``: ``a % b * c`` is ``a % (b * c)``)
6. ``+`` ``-``
7. comparisons ``== <= >= > <`` (and ``!=``, which the reference lacks as an elementwise
   operator; accepted here as an extension)
8. ``and`` ``or`` (one level, left-associative)
9. ``x if c else y`` (left-associative: write ``a if c else (b if d else e)``)
10. ``x in xs`` (loosest: ``a + b in xs`` is ``(a + b) in xs``)

Primaries: numbers (``3``, ``3.5``; negatives come from prefix ``-``), strings in double
quotes (no escapes), names, ``( ... )``, list and dict literals and comprehensions,
``select(k, q, op)``, ``aggregate(s, v[, default])``, ``round(x)``, ``indicator(x)``,
``range(...)``, ``zip(...)``, ``len(x)``.

Statements end in ``;`` except ``def`` and ``for``: ``e;``, ``a, b = e1, e2;``,
``load "file";``, ``draw(e[, input]);`` (accepted and ignored: drawing is the REPL's),
``def f(a, b) { ...; return e; }``, ``for x in xs { ... }``. ``#`` starts a comment that
runs to the end of the line. The REPL's own commands (``set example``, ``examples off``,
...) are not part of programs.

Deviations, all making more programs parse and none changing the meaning of one the
reference accepts: whitespace may separate ``select``/``aggregate``/``range``/``zip``/
``len`` from their ``(``; comments may stand anywhere; ``!=`` is an elementwise operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from lark import Lark, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .lang import RASPError

GRAMMAR = r"""
start: _statement*

_statement: expr_stmt | assign | load | draw | funcdef | forloop
expr_stmt: expr ";"
assign: names "=" exprs ";"
load: "load" STRING ";"
draw: "draw" "(" expr ("," expr)? ")" ";"
funcdef: "def" NAME "(" [names] ")" "{" _statement* return_stmt "}"
return_stmt: "return" exprs ";"
forloop: "for" names "in" expr "{" _statement+ "}"

names: NAME ("," NAME)*
exprs: expr ("," expr)*

?expr: in_expr
?in_expr: ternary
    | in_expr "in" ternary -> contains
?ternary: andor
    | ternary "if" expr "else" andor -> ternary
?andor: comparison
    | andor AND comparison -> binop
    | andor OR comparison -> binop
?comparison: sum
    | comparison COMPARE sum -> binop
?sum: modulo
    | sum ADD_SUB modulo -> binop
?modulo: product
    | modulo MOD product -> binop
?product: power
    | product MUL_DIV power -> binop
?power: unary
    | power POW unary -> binop
?unary: postfix
    | NOT unary -> unop
    | ADD_SUB unary -> unop
?postfix: primary
    | postfix "[" expr "]" -> index
    | postfix "(" [exprs] ")" -> call
?primary: "(" expr ")"
    | NAME -> var
    | INT -> int_
    | FLOAT -> float_
    | STRING -> string
    | "[" [exprs] "]" -> list_
    | "{" [pair ("," pair)*] "}" -> dict_
    | "[" expr "for" names "in" expr "]" -> listcomp
    | "{" expr ":" expr "for" names "in" expr "}" -> dictcomp
    | SELECT expr "," expr "," COMPARE ")" -> select
    | AGGREGATE expr "," expr ["," expr] ")" -> aggregate
    | ROUND "(" expr ")" -> round_
    | INDICATOR "(" expr ")" -> indicator
    | RANGE exprs ")" -> range_
    | ZIP exprs ")" -> zip_
    | LEN expr ")" -> len_
pair: expr ":" expr

SELECT.3: /select\s*\(/
AGGREGATE.3: /aggregate\s*\(/
RANGE.3: /range\s*\(/
ZIP.3: /zip\s*\(/
LEN.3: /len\s*\(/
ROUND: "round"
INDICATOR: "indicator"
AND: "and"
OR: "or"
NOT: "not"
COMPARE: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADD_SUB: "+" | "-"
MOD: "%"
MUL_DIV: "*" | "/"
POW: "^"
NAME: /[a-zA-Z_][a-zA-Z_0-9]*/
FLOAT.2: /[0-9]+\.[0-9]+/
INT: /[0-9]+/
STRING: /"[^"\r\n]*"/
COMMENT: /#[^\r\n]*/
%ignore COMMENT
%ignore /[ \t\r\n\f]+/
"""

KEYWORDS = ("def", "return", "for", "in", "if", "else", "not", "and", "or", "load", "draw",
            "round", "indicator")

# What a person would call the terminals lark names in "expected ..." lists.
_TERMINAL_WORDS = {
    "SEMICOLON": "';'", "NAME": "a name", "INT": "a number", "FLOAT": "a number",
    "STRING": "a string", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "LBRACE": "'{'", "RBRACE": "'}'", "COMMA": "','", "EQUAL": "'='", "COLON": "':'",
    "SELECT": "'select('", "AGGREGATE": "'aggregate('", "RANGE": "'range('",
    "ZIP": "'zip('", "LEN": "'len('", "ROUND": "'round'", "INDICATOR": "'indicator'",
    "AND": "'and'", "OR": "'or'", "NOT": "'not'", "COMPARE": "a comparison (== != < > <= >=)",
    "ADD_SUB": "'+'/'-'",
    "MOD": "'%'", "MUL_DIV": "'*'/'/'", "POW": "'^'", "$END": "the end of the program",
}


@dataclass
class RaspSyntaxError(RASPError):
    """Source text that is not RASP: where (1-based line and column) and what was found.
    A ``RASPError``, so one ``except RASPError`` catches every error of a program."""

    message: str
    line: int
    column: int
    source_name: str = "<source>"

    def __str__(self) -> str:
        return f"{self.source_name}, line {self.line}, column {self.column}: {self.message}"


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True,
                maybe_placeholders=True)


def _expected_words(expected) -> str:
    words = sorted({_TERMINAL_WORDS.get(t, f"'{t.lower()}'") for t in expected})
    if len(words) > 8:
        return ", ".join(words[:8]) + ", ..."
    return ", ".join(words)


def parse(source: str, source_name: str = "<source>") -> Tree:
    """Parse RASP source text into a lark ``Tree`` (rule ``start``; nodes carry
    ``meta.line``/``meta.column``). Raises ``RaspSyntaxError`` with line and column.

    >>> parse("x = indices + 1;").children[0].data
    Token('RULE', 'assign')
    """
    try:
        return _parser().parse(source)
    except UnexpectedInput as err:
        raise _syntax_error(err, source, source_name) from None


def _syntax_error(err: UnexpectedInput, source: str, source_name: str) -> RaspSyntaxError:
    line, column = getattr(err, "line", -1), getattr(err, "column", -1)
    if isinstance(err, UnexpectedEOF) or (
        isinstance(err, UnexpectedToken) and err.token.type == "$END"
    ):
        lines = source.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        msg = ("the program ends in the middle of a statement (a missing ';', ')', ']' or '}'?"
               f"; expected {_expected_words(err.expected)})")
    elif isinstance(err, UnexpectedCharacters):
        msg = f"unexpected character {source[err.pos_in_stream]!r}"
        if source[err.pos_in_stream] == "'":
            msg += " (strings are written in double quotes)"
    elif isinstance(err, UnexpectedToken):
        found = err.token
        what = f"'{found}'" if found.type != "STRING" else f"the string {found}"
        if found.type == "NAME" or str(found) in KEYWORDS:
            what = f"'{found}'"
        msg = f"unexpected {what}; expected {_expected_words(err.expected)}"
        if str(found) in KEYWORDS and "NAME" in err.expected:
            msg += f" ('{found}' is a keyword and cannot be used as a name)"
    else:  # pragma: no cover - lark raises only the three above
        msg = str(err)
    return RaspSyntaxError(msg, line, column, source_name)
