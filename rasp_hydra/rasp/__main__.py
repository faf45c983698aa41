"""RASP programs from the command line.

    python -m rasp_hydra.rasp FILE.rasp                      # what the program defines
    python -m rasp_hydra.rasp FILE.rasp --eval NAME INPUT    # its values, as the REPL prints
    python -m rasp_hydra.rasp FILE.rasp --budget NAME        # layers, heads, selects by name
    python -m rasp_hydra.rasp FILE.rasp --draw NAME --input INPUT --out PATH.png
    python -m rasp_hydra.rasp FILE.rasp --weights NAME --alphabet abc --max-len 5 --out DIR

INPUT is a string (``"§abc"``), or a RASP list for programs on other token types
(``"[1, 2, 3]"`` with ``tokens_int``). ``--draw`` writes one row per attention layer: each
head's select as a boolean matrix on INPUT (query rows, key columns, labelled with the
input), and the s-ops computed in the layer. Errors are one paragraph on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rasp_hydra.cli.errors import command

from .interpret import Interpreter, Program, Scope, load
from .lang import ATOM_TYPES, RASPError, Select, SOp
from .parse import parse

FLOAT_DIGITS = 3  # the REPL shows floats rounded to 3 digits


# ----------------------------------------------------------------------------- REPL-style text

def show_atom(v: Any) -> str:
    """One value as the REPL shows it inside a sequence."""
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, float):
        return str(round(v, FLOAT_DIGITS))
    return str(v)


def type_word(values: list) -> str:
    """The REPL's name for a sequence's type: strings, bools, ints or floats."""
    for t, word in ((str, "strings"), (bool, "bools"), (int, "ints")):
        if all(isinstance(v, t) for v in values):
            return word
    return "floats"


def format_sequence(values: list) -> str:
    """``[1, 2, 3] (ints)``, or ``[5]*3 (ints)`` when all values are the same."""
    if len(values) > 1 and len({(type(v), v) for v in values}) == 1:
        body = f"[{show_atom(values[0])}]*{len(values)}"
    else:
        body = "[" + ", ".join(show_atom(v) for v in values) + "]"
    return f"{body} ({type_word(values)})"


def format_selector(matrix: list[list[bool]], inp: list) -> str:
    """The REPL's selector picture: a row per query, 1 where a key is selected."""
    labels = [str(v) for v in inp]
    width = max(len(s) for s in labels)
    head = " " * (width + 3) + " ".join(s.rjust(width) for s in labels)
    rows = [f"{q.rjust(width)} | " + " ".join(("1" if s else " ").rjust(width) for s in row)
            for q, row in zip(labels, matrix, strict=True)]
    return "\n".join([head, *rows])


def format_value(v: Any) -> str:
    """A non-s-op value as the REPL prints it (strings quoted)."""
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def parse_input(text: str) -> str | list:
    """INPUT: a RASP list literal when it starts with '[', else the string itself."""
    if not text.strip().startswith("["):
        if not text:
            raise RASPError("The input is empty; give at least one token.")
        return text
    tree = parse(f"_input = {text};", "INPUT")
    scope = Scope(None)
    Interpreter().run(tree, scope, "INPUT")
    value = scope.vars["_input"]
    if not value or not all(isinstance(v, ATOM_TYPES) for v in value):
        raise RASPError(f"INPUT {text!r} must be a non-empty list of atoms "
                        "(ints, floats, strings, bools).")
    return value


# ----------------------------------------------------------------------------- commands

def on_input(err: RASPError, name: str, shown: str, inp=None) -> RASPError:
    """An evaluation error that names the input (most of the core's already do), with a
    hint when a string that looks like a list of numbers or words was read as characters."""
    text = str(err) if "input" in str(err) else f"Evaluating {name!r} on {shown} failed: {err}"
    if isinstance(inp, str) and any(c in " ," for c in inp.strip()):
        pieces = inp.replace(",", " ").split()
        items = [p if p.lstrip("-").isdigit() else f'"{p}"' for p in pieces]
        text += (" A string input is its characters, as in the REPL; give numbers or words "
                 f"as a list: '[{', '.join(items)}]'.")
    return RASPError(text)


def cmd_names(prog: Program) -> None:
    for name in prog.names():
        v = prog.value(name)
        kind = ("s-op" if isinstance(v, SOp) else "selector" if isinstance(v, Select)
                else type(v).__name__ if not hasattr(v, "params") else "function")
        print(f"{kind}: {name}")


def cmd_eval(prog: Program, name: str, text: str) -> None:
    inp = parse_input(text)
    value = prog.value(name)
    if not isinstance(value, SOp | Select):
        print(f"{name} = {format_value(value)}")
        return
    shown = f'"{inp}"' if isinstance(inp, str) else str(inp)
    try:
        result = prog.eval(name, inp)
    except RASPError as err:
        raise on_input(err, name, shown, inp) from None
    if isinstance(value, Select):
        print(f"{name}({shown}) =")
        print(format_selector(result, list(inp)))
    else:
        print(f"{name}({shown}) = {format_sequence(result)}")


def named_sops(compiled, layer: int) -> list[str]:
    """Names of the s-ops the program named (by assignment or call) computed in a layer."""
    return list(dict.fromkeys(s.name for s in compiled.sops_by_layer.get(layer, [])
                              if s.is_named))


def budget_text(name: str, compiled) -> str:
    """Layers, heads per layer, and each head's select and each layer's s-ops by name."""
    plural = "" if compiled.layers == 1 else "s"
    lines = [f"{name}: {compiled.layers} layer{plural}, heads per layer "
             f"{'/'.join(map(str, compiled.heads)) or '-'} (budget: "
             f"{compiled.layers} x {max(compiled.heads, default=0)})"]
    for layer in range(compiled.layers):
        lines.append(f"layer {layer}:")
        for head in range(compiled.heads[layer]):
            lines.append(f"  head {head}: {select_label(compiled.head_selects[(layer, head)])}")
        lines.append(f"  s-ops: {', '.join(named_sops(compiled, layer)) or '-'}")
    return "\n".join(lines)


def cmd_budget(prog: Program, name: str) -> None:
    print(budget_text(name, prog.compile(name)))


def cmd_draw(prog: Program, name: str, text: str, out: Path) -> None:
    inp = parse_input(text)
    compiled = prog.compile(name)
    from .evaluate import evaluate
    shown = f'"{inp}"' if isinstance(inp, str) else str(inp)
    try:
        matrices = {h: evaluate(sel, inp) for h, sel in compiled.head_selects.items()}
        result = prog.eval(name, inp)
    except RASPError as err:
        raise on_input(err, name, shown, inp) from None
    draw_compiled(name, compiled, matrices, inp, result, out)
    print(f"wrote {out}")


def select_label(sel: Select) -> str:
    """A head's select by name; a composition also shows its parts (one level)."""
    if not sel.is_named:
        return sel.name
    if sel.op in ("and", "or") and len(sel.parts) == 2:
        return f"{sel.name} = {sel.parts[0].name} {sel.op} {sel.parts[1].name}"
    if sel.op == "not" and sel.parts:
        return f"{sel.name} = not {sel.parts[0].name}"
    return sel.name


def draw_compiled(name, compiled, matrices, inp, result, out: Path):
    """One row per layer: its heads' select matrices (query rows, key columns) and the
    names of the s-ops computed in the layer, titled ``name(inp) = result`` (``inp``: a
    string or a list). Returns the (saved) Figure."""
    # bare Figure + Agg canvas (as rasp_hydra.draw): no pyplot state, any backend
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = max(compiled.layers, 1)
    cols = max(max(compiled.heads, default=1), 1)
    n = len(inp)
    cell = max(2.2, 0.25 * n + 1.0)
    width = cols * cell + 1.0
    fig = Figure(figsize=(width, layers * (cell + 1.1) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    # the input as given: a string 'abc', a list as the list [10, 2, 33]
    shown = repr(inp) if isinstance(inp, str) else "[" + ", ".join(map(repr, inp)) + "]"
    inp = list(inp)
    labels = [str(v) for v in inp]
    fig.suptitle(f"{name}: {compiled.layers} layers, heads per layer "
                 f"{'/'.join(map(str, compiled.heads))}\n{name}({shown}) = "
                 f"{format_sequence(result)}", fontsize=9)
    rows = fig.subfigures(layers, 1, squeeze=False)[:, 0]
    for layer in range(compiled.layers):
        computed = ", ".join(named_sops(compiled, layer)) or "(unnamed s-ops only)"
        rows[layer].suptitle(textwrap.fill(f"layer {layer} computes: {computed}",
                                           int(width * 14)), fontsize=8)
        axes = rows[layer].subplots(1, cols, squeeze=False)[0]
        for head, ax in enumerate(axes):
            if head >= compiled.heads[layer]:
                ax.axis("off")
                continue
            sel = compiled.head_selects[(layer, head)]
            ax.imshow([[1.0 if v else 0.0 for v in row] for row in matrices[(layer, head)]],
                      cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks(range(n), labels, fontsize=7)
            ax.set_yticks(range(n), labels, fontsize=7)
            line = int(cell * 12)  # characters per title line; at most two lines
            title = textwrap.shorten(f"head {head}: {select_label(sel)}", 2 * line - 4,
                                     placeholder=" ...")
            ax.set_title(textwrap.fill(title, line), fontsize=7)
            ax.set_xlabel("key", fontsize=7)
            if head == 0:
                ax.set_ylabel("query", fontsize=7)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return fig


# ----------------------------------------------------------------------------- weights

def _vocab(args) -> Any:
    if (args.alphabet is None) == (args.size is None):
        raise RASPError("--weights needs the vocabulary: --alphabet ABC (characters, a list "
                        "[10,20] or a range 0..9) or --size K, one of them.")
    if args.size is not None:
        return args.size
    a = args.alphabet
    if a.startswith("["):
        items = [t.strip() for t in a.strip("[]").split(",") if t.strip()]
        return [int(t) if t.lstrip("-").isdigit() else t for t in items]
    return a


def cmd_weights(args) -> int:
    import time

    from rasp_hydra.compiled import write_compiled_run

    from .weights import build, check_weights
    if args.max_len is None or args.max_len < 1 or args.out is None:
        raise RASPError("--weights NAME needs --max-len N (N >= 1) and --out DIR.")
    vocab = _vocab(args)
    sop = load(Path(args.file)).sop(args.weights)
    t = time.perf_counter()
    w = build(sop, vocab, args.max_len, args.bos)
    check = check_weights(w.model, sop, vocab, args.max_len, args.bos)
    seconds = time.perf_counter() - t
    sizes = {f"{k}_size": v for k in ("train", "valid", "test")
             if (v := getattr(args, f"{k}_size")) is not None}
    record = write_compiled_run(w, check, args.out, args.file, args.weights, vocab,
                                args.max_len, args.bos, seconds, **sizes)
    cfg = w.model.cfg
    accs = " ".join(f"{k} {v['token_acc']:.4f}" for k, v in record["final"].items())
    print(f"{args.weights}: {cfg.layers} layers x {cfg.heads} heads, residual width "
          f"{w.residual_width} (d_model {cfg.d_model}, ff {cfg.ff}); checked on "
          f"{check.inputs} inputs ({'all' if check.exhaustive else 'sampled'}), 0 "
          f"mismatches; {seconds:.1f}s; final accuracy {accs}; wrote {args.out}")
    return 0


# ----------------------------------------------------------------------------- entry point

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rasp_hydra.rasp",
        description="Load a RASP program (the reference REPL's syntax), evaluate an s-op, "
                    "show its compiled layer/head budget, or draw its selects.")
    p.add_argument("file", help="a .rasp file")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--eval", nargs=2, metavar=("NAME", "INPUT"),
                     help="print NAME's values on INPUT (a string, or a list like '[1, 2]')")
    act.add_argument("--budget", metavar="NAME", help="print NAME's layers, heads and selects")
    act.add_argument("--draw", metavar="NAME", help="draw NAME's compiled selects on --input")
    act.add_argument("--weights", metavar="NAME",
                     help="compile NAME to an Encoder's weights, check it on every input, "
                          "write the run directory --out (docs/compiled.md)")
    p.add_argument("--input", help="the input for --draw")
    p.add_argument("--out", type=Path, help="the .png file --draw writes; the run directory "
                                            "--weights writes")
    p.add_argument("--alphabet", help="--weights: the vocabulary (abc, [10,20], 0..9)")
    p.add_argument("--size", type=int, help="--weights: the first K tokens (0..K-1 for "
                                            "a program of tokens_int)")
    p.add_argument("--max-len", type=int, help="--weights: the longest input (BOS aside)")
    p.add_argument("--bos", action="store_true", help="--weights: inputs start with BOS")
    for split in ("train", "valid", "test"):
        p.add_argument(f"--{split}-size", type=int,
                       help=f"--weights: the {split} split the run is evaluated on (lang."
                            f"{split}_size, default as training's)")
    return p


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.draw and (args.input is None or args.out is None):
            raise RASPError("--draw NAME needs --input INPUT and --out PATH.png.")
        if args.weights:
            return cmd_weights(args)
        if (args.input is not None or args.out is not None) and not args.draw:
            raise RASPError("--input and --out go with --draw NAME.")
        if not Path(args.file).is_file():
            raise RASPError(f"No RASP file {args.file!r}.")
        prog = load(Path(args.file))
        if args.eval:
            cmd_eval(prog, *args.eval)
        elif args.budget:
            cmd_budget(prog, args.budget)
        elif args.draw:
            cmd_draw(prog, args.draw, args.input, args.out)
        else:
            cmd_names(prog)
    except BrokenPipeError:  # e.g. piped into head: the reader has what it wanted
        sys.stdout = None
        return 0
    except RecursionError:
        raise RASPError("the program nests too deeply (a function that calls itself?).") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
