"""``python -m rasp_hydra.draw RUN_DIR --sequence abcde``: the drawer's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rasp_hydra.cli.errors import command
from rasp_hydra.draw.run import DrawError, draw_all, draw_run


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rasp_hydra.draw",
        description="Draw attention heatmaps (and pre-softmax scores and RASP selectors) of a "
                    "trained run on one sequence, under RUN_DIR/maps/<sequence>/.")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory (or, with --all, a sweep directory)")
    parser.add_argument("--sequence", required=True,
                        help="input tokens from the task's alphabet, e.g. abcde, or "
                             "'10 2 33' (separated by spaces or commas) for a vocabulary of "
                             "numbers or words; BOS is added when the task has it")
    parser.add_argument("--numbers", type=int, metavar="DECIMALS", default=None,
                        help="overlay the values with this many decimals, e.g. 2")
    parser.add_argument("--which", choices=("auto", "best", "last"), default="auto",
                        help="checkpoint: best, last, or auto (best if the run completed, "
                             "else last); default auto")
    parser.add_argument("--all", action="store_true",
                        help="draw every run below RUN_DIR (a sweep directory)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="write the figures under DIR/<sequence>/ (with --all, "
                             "DIR/<run>/<sequence>/) instead of RUN_DIR/maps/, e.g. for a "
                             "run you cannot write")
    args = parser.parse_args(argv)
    if args.all:
        res = draw_all(args.run_dir, args.sequence, args.numbers, args.which,
                       maps_dir=args.out)
        print(f"drew {len(res['drawn'])} runs, passed over {len(res['passed'])}")
        if not res["drawn"]:
            raise DrawError(f"no run below {args.run_dir} could be drawn (see above).")
    else:
        res = draw_run(args.run_dir, args.sequence, args.numbers, args.which,
                       maps_dir=args.out)
        print(res["text"], end="")
        print(f"figures: {res['dir']} ("
              + ", ".join(p.name for k in ("attention", "scores")
                          for p in res["files"][k]) + ", in_out.txt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
