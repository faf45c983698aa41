"""``python -m rasp_hydra.probe RUN_DIR``: the probes' command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rasp_hydra.cli.errors import command
from rasp_hydra.probe.program import ProbeError
from rasp_hydra.probe.run import DEFAULT_SEQUENCES, MAX_POSITIONS, probe_all, probe_run


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rasp_hydra.probe",
        description="Linear probes of every s-op of the task's RASP program at every layer of "
                    "a trained run, beside the same probes of its untrained model; writes "
                    "RUN_DIR/probes/probes.csv and probes.png.")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory (or, with --all, a sweep directory)")
    parser.add_argument("--sequences", type=int, default=DEFAULT_SEQUENCES,
                        help=f"sequences of the train split to fit on and of the test split "
                             f"to score on; default {DEFAULT_SEQUENCES}")
    parser.add_argument("--positions", type=int, default=MAX_POSITIONS,
                        help=f"at most this many of their positions to fit on (half as many "
                             f"to score on), drawn with a fixed seed; default {MAX_POSITIONS}")
    parser.add_argument("--sops", default=None,
                        help="comma-separated s-op names to probe (default: every one)")
    parser.add_argument("--which", choices=("auto", "best", "last"), default="auto",
                        help="checkpoint: best, last, or auto (best if the run completed, "
                             "else last); default auto")
    parser.add_argument("--all", action="store_true",
                        help="probe every completed run below RUN_DIR (a sweep directory)")
    args = parser.parse_args(argv)
    sops = [s.strip() for s in args.sops.split(",") if s.strip()] if args.sops else None
    if args.all:
        res = probe_all(args.run_dir, args.sequences, sops, args.which,
                        positions=args.positions)
        print(f"probed {len(res['probed'])} runs, passed over {len(res['passed'])}")
        if not res["probed"]:
            raise ProbeError(f"no run below {args.run_dir} could be probed (see above).")
    else:
        res = probe_run(args.run_dir, args.sequences, sops, args.which,
                        positions=args.positions)
        print("\n".join(res["lines"]))
        print(f"wrote {res['files']['csv']} and {res['files']['png'].name} "
              f"({res['checkpoint']} checkpoint)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
