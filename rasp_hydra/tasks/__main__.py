"""``python -m rasp_hydra.tasks list`` and ``python -m rasp_hydra.tasks peep NAME``."""

from __future__ import annotations

import argparse
import sys

from .base import BOS, SPLIT_IDS
from .registry import FAMILIES, get_task, task_names

MATRIX_MAX = 20  # selectors are printed for sequences shorter than this


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


def cmd_peep(args) -> int:
    task = get_task(args.name)
    if args.stop < args.start:
        raise ValueError("--stop must be >= --start")
    tokens, lengths = task.sample(args.stop - args.start, seed=args.seed, split=args.split,
                                  min_len=args.min_len, max_len=args.max_len,
                                  start=args.start)
    outputs = task.outputs(tokens, lengths)
    words = task.decode_inputs(tokens, lengths)
    outs = task.decode_outputs(outputs, lengths)
    print(f"{task.name}: alphabet {_show_word(task.alphabet)!r} ({len(task.alphabet)}), "
          f"out classes {' '.join(_show_char(c) for c in task.out_classes)}, "
          f"RASP {task.predicted_layers} layers / {task.predicted_heads} heads; "
          f"split {args.split}, seed {args.seed}")
    for i, (w, out) in enumerate(zip(words, outs, strict=True)):
        idx = args.start + i
        print(f"\n[{idx}] length {len(w) - (1 if task.bos else 0)}")
        print(f"  in : {' '.join(_show_char(c) for c in w)}")
        print(f"  out: {' '.join(_show_char(c) for c in out)}")
        if len(w) < MATRIX_MAX and task.selector_heads:
            sel = task.selectors(tokens[i:i + 1, : len(w)], lengths[i:i + 1])
            for h in task.selector_heads:
                kind = ("reference" if h in task.reference_heads
                        else "supervised" if h in task.supervised_heads else "target")
                bos = ", looks at BOS" if task.bos and task.look_at_bos[h] else ""
                print(f"  selector layer {h[0]} head {h[1]} "
                      f"\"{task.selector_names[h]}\" ({kind}{bos}):")
                print("       " + " ".join(_show_char(c).ljust(1) for c in w))
                for q, row in enumerate(sel[h][0].tolist()):
                    print(f"    {_show_char(w[q]):>2} " + " ".join("1" if v else "0" for v in row))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rasp_hydra.tasks",
        description="List the task suite, or peep at a task's samples, outputs and selectors.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="all task names, grouped by family")
    peep = sub.add_parser("peep", help="inputs, outputs and (short sequences) selectors")
    peep.add_argument("name", help="task name, e.g. hist2_10_bos_with_attns")
    peep.add_argument("--split", default="train", choices=list(SPLIT_IDS),
                      help="which split's samples (default: train)")
    peep.add_argument("--start", type=int, default=0)
    peep.add_argument("--stop", type=int, default=10)
    peep.add_argument("--seed", type=int, default=0)
    peep.add_argument("--min-len", type=int, default=1)
    peep.add_argument("--max-len", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        return cmd_list(args) if args.cmd == "list" else cmd_peep(args)
    except (ValueError, KeyError) as e:  # UnknownTaskError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["BOS", "main"]
