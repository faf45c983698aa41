"""``python -m rasp_hydra.tasks list`` and ``python -m rasp_hydra.tasks peep NAME``."""

from __future__ import annotations

import argparse
import sys

from rasp_hydra import _lazytorch
from rasp_hydra.cli.errors import command

_lazytorch.install()  # `list` never computes with torch; `peep` loads it when it does
from .base import BOS, SPLIT_IDS  # noqa: E402  (after the stand-in)
from .registry import FAMILIES, get_task, task_names  # noqa: E402

MATRIX_MAX = 20  # selectors are printed for sequences (BOS included) shorter than this
PEEP_SAMPLES = 1000  # peep shows at most this many samples at once (--start..--stop)
PEEP_LEN = 1000  # ... each of at most this many tokens (--max-len)


def _show_char(c: str) -> str:
    return c if c.isprintable() and c != " " else repr(c)[1:-1] if c != " " else "␣"


def _show_word(w: str) -> str:
    return "".join(_show_char(c) for c in w)


def cmd_list(args) -> int:
    for fam, names in task_names(grouped=True).items():
        cls = FAMILIES[fam]
        impl = cls(cls.default_size)
        table = impl.selectors()
        targets = [f"{l},{h}" for (l, h), s in sorted(table.items()) if not s.reference]
        refs = [f"{l},{h}" for (l, h), s in sorted(table.items()) if s.reference]
        sel = []
        if targets:
            sel.append("target selectors " + " ".join(targets))
        if refs:
            sel.append("reference selectors " + " ".join(refs))
        print(f"{fam}: {impl.description}")
        print(f"  {'name':<32} {'alphabet':>8} {'bos':>4} {'layers':>6} {'heads':>5}")
        for name in names:
            t = get_task(name)
            print(f"  {name:<32} {len(t.alphabet):>8} {'yes' if t.bos else 'no':>4} "
                  f"{t.predicted_layers:>6} {t.predicted_heads:>5}")
        print(f"  selectors: {'; '.join(sel) if sel else 'none'}")
        print()
    print("User families: 'module.path:Class[_{size}][_bos][_with_attns]' "
          "(a rasp_hydra.tasks.Family subclass).")
    return 0


def _list_arg(text: str | None):
    """'[ab,cd]' or '[10, 20]' as a list (ints where they are ints), else the text."""
    if text is None or not text.strip().startswith("["):
        return text
    items = text.strip()[1:-1].replace(",", " ").split()
    return [int(t) if t.lstrip("-").isdigit() else t for t in items]


def peep_task(args):
    """A task name, or a RASP program (a .rasp file or a shipped program's name) with
    the lang options given."""
    program = args.name.endswith(".rasp") or any(
        getattr(args, k) is not None for k in ("alphabet", "size", "classes", "output"))
    if not program:
        return get_task(args.name)
    from .registry import task_of_lang
    return task_of_lang({"family": "rasp", "program": args.name, "output": args.output,
                         "alphabet": _list_arg(args.alphabet), "size": args.size,
                         "classes": _list_arg(args.classes), "bos": args.bos,
                         "max_len": args.max_len})


def selectors_left_out(length: int, bos: bool) -> str:
    """Why a long sequence's selectors are not printed, and how to see them.

    >>> selectors_left_out(20, bos=True)
    'selectors left out: a grid of 21 x 21 per head (BOS included) is too wide for a \
terminal; they are shown up to length 18 (--max-len 18)'
    """
    tokens, longest = length + bos, MATRIX_MAX - 1 - bos
    return (f"selectors left out: a grid of {tokens} x {tokens} per head"
            f"{' (BOS included)' if bos else ''} is too wide for a terminal; they are shown "
            f"up to length {longest} (--max-len {longest})")


def check_range(start: int, stop: int, min_len: int, max_len: int) -> None:
    """A range peep can print: ValueError with the way out otherwise (a terminal's worth,
    so that a typo such as --stop 100000000000 never fills the memory).

    >>> check_range(10**11 - 5, 10**11, 1, 100)
    >>> check_range(0, 10**11, 1, 100)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --start 0 --stop 100000000000 asks for 100,000,000,000 samples: peep ...
    """
    if start < 0 or stop < start:
        raise ValueError(f"--start {start} --stop {stop}: the samples shown are those "
                         "numbered start to stop - 1, so 0 <= --start <= --stop.")
    if stop - start > PEEP_SAMPLES:
        raise ValueError(
            f"--start {start} --stop {stop} asks for {stop - start:,} samples: peep shows "
            f"at most {PEEP_SAMPLES:,} at a time; give a narrower range, e.g. --start "
            f"{start} --stop {start + PEEP_SAMPLES} (any start works: --start "
            f"{max(0, stop - PEEP_SAMPLES)} --stop {stop}).")
    if not 1 <= min_len <= max_len <= PEEP_LEN:
        raise ValueError(
            f"--min-len {min_len} --max-len {max_len}: peep shows sequences of 1 to "
            f"{PEEP_LEN:,} tokens, so 1 <= --min-len <= --max-len <= {PEEP_LEN:,}.")


def cmd_peep(args) -> int:
    check_range(args.start, args.stop, args.min_len, args.max_len)
    task = peep_task(args)
    tokens, lengths = task.sample(args.stop - args.start, seed=args.seed, split=args.split,
                                  min_len=args.min_len, max_len=args.max_len,
                                  start=args.start)
    outputs = task.outputs(tokens, lengths)
    rows = task.decode_tokens(tokens, lengths)
    outs = task.decode_outputs(outputs, lengths)
    alphabet = (task.words(task.alphabet, cut=True) if task.spaced
                else repr(_show_word(task.alphabet)))
    print(f"{task.name}: alphabet {alphabet} ({len(task.alphabet)}), "
          f"out classes {' '.join(_show_char(c) for c in task.out_classes)}, "
          f"RASP {task.predicted_layers} layers / {task.predicted_heads} heads; "
          f"split {args.split}, seed {args.seed}")
    for i, (row, out) in enumerate(zip(rows, outs, strict=True)):
        idx = args.start + i
        w = [_show_char(str(c)) for c in row]
        width = max(map(len, w), default=1)  # a column per token: 1 for characters
        print(f"\n[{idx}] length {len(w) - (1 if task.bos else 0)}")
        print(f"  in : {' '.join(w)}")
        print(f"  out: {' '.join(_show_char(c) for c in out)}")
        if len(w) >= MATRIX_MAX and task.selector_heads:
            print(f"  {selectors_left_out(len(w) - task.bos, task.bos)}")
        elif task.selector_heads:
            sel = task.selectors(tokens[i:i + 1, : len(w)], lengths[i:i + 1])
            for h in task.selector_heads:
                kind = ("reference" if h in task.reference_heads
                        else "supervised" if h in task.supervised_heads else "target")
                bos = ", looks at BOS" if task.bos and task.look_at_bos[h] else ""
                print(f"  selector layer {h[0]} head {h[1]} "
                      f"\"{task.selector_names[h]}\" ({kind}{bos}):")
                print(" " * (5 + max(2, width)) + " ".join(c.ljust(width) for c in w))
                for q, row_q in enumerate(sel[h][0].tolist()):
                    print(f"    {w[q]:>{max(2, width)}} "
                          + " ".join(("1" if v else "0").ljust(width) for v in row_q))
    return 0


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rasp_hydra.tasks",
        description="List the task suite, or peep at a task's samples, outputs and selectors.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="all task names, grouped by family")
    peep = sub.add_parser("peep", help="inputs, outputs and (short sequences) selectors")
    peep.add_argument("name", help="task name, e.g. hist2_10_bos_with_attns, or a RASP "
                      "program (FILE.rasp, or a shipped one's name with the options below)")
    peep.add_argument("--alphabet", help="a program's vocabulary, as lang.alphabet: abc, "
                      "0..99, or [10,20,30]")
    peep.add_argument("--size", type=int, help="a program's vocabulary size, as lang.size")
    peep.add_argument("--classes", help="a program's output classes: [a,b] or 0..99")
    peep.add_argument("--output", help="the program's s-op to show (default: the file's "
                      "name)")
    peep.add_argument("--bos", action="store_true", help="a program's inputs start with BOS")
    peep.add_argument("--split", default="train", choices=list(SPLIT_IDS),
                      help="which split's samples (default: train)")
    peep.add_argument("--start", type=int, default=0)
    peep.add_argument("--stop", type=int, default=10)
    peep.add_argument("--seed", type=int, default=0)
    peep.add_argument("--min-len", type=int, default=1)
    peep.add_argument("--max-len", type=int, default=100)
    args = parser.parse_args(argv)
    from rasp_hydra.errors import UserError
    try:
        return cmd_list(args) if args.cmd == "list" else cmd_peep(args)
    except (ValueError, KeyError) as e:  # a bad option of peep: said as a user's error
        if isinstance(e, UserError):
            raise
        raise UserError(str(e)) from None


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["BOS", "main"]
