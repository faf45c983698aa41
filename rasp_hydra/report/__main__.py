"""``python -m rasp_hydra.report SWEEP_DIR [SWEEP_DIR ...]``: the report's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rasp_hydra.cli.errors import command
from rasp_hydra.report.collect import ReportError, collect_runs
from rasp_hydra.report.render import write_report
from rasp_hydra.report.tables import SOLVED, status_counts, table1
from rasp_hydra.report.text import display_table1, sweep_name, to_markdown


def cannot_write(out: Path, err: OSError, given: bool) -> str:
    """One paragraph: where the report could not be written, why, and the way out."""
    import errno
    import os

    why = "is on a read-only file system" if err.errno == errno.EROFS else (
        f"cannot be written ({os.strerror(err.errno) if err.errno else err})")
    where = "" if given else (" (the default folder, under multirun_reports/ in the working "
                              f"directory {Path.cwd()})")
    return (f"the report cannot be written to {out}{where}: {err.filename or out} {why}. "
            "Give a folder you can write with --out DIR (e.g. --out /tmp/report); the runs "
            "themselves were only read.")


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rasp_hydra.report",
        description="Build Table 1 (and a per-run table, figure and HTML page) from sweep "
                    "directories.")
    parser.add_argument("paths", nargs="+", metavar="SWEEP_DIR",
                        help="sweep or run directories, searched recursively")
    parser.add_argument("--out", help="report folder (default multirun_reports/<sweep name>)")
    parser.add_argument("--include-interrupted", action="store_true",
                        help="count interrupted runs (with a final test accuracy) too")
    parser.add_argument("--self-contained", action="store_true",
                        help="index.html embeds each run's curves and links only inside "
                             "itself, so the one file can be shared alone")
    parser.add_argument("--solved", type=float, default=SOLVED, metavar="ACC",
                        help="a replicate solves its task at this test token accuracy or "
                             f"above, a fraction (default {SOLVED})")
    args = parser.parse_args(argv)
    if not 0.0 < args.solved <= 1.0:
        raise ReportError(
            f"--solved {args.solved}: the threshold is a fraction of tokens right, above 0 "
            f"and at most 1 (default {SOLVED}, i.e. 99%).")
    df = collect_runs(args.paths)
    out = Path(args.out) if args.out else Path("multirun_reports") / sweep_name(args.paths)
    try:
        files = write_report(df, out, sources=[str(p) for p in args.paths],
                             include_interrupted=args.include_interrupted,
                             self_contained=args.self_contained, solved=args.solved)
    except OSError as e:  # a read-only place, a full disk, no permission
        raise ReportError(cannot_write(out, e, given=bool(args.out))) from None
    t1 = table1(df, args.include_interrupted, args.solved)
    print(to_markdown(display_table1(t1, args.include_interrupted)))
    if "long_csv" in files:
        t1_long = table1(df, args.include_interrupted, args.solved, split="test_long")
        print("\nlonger inputs (test_long):")
        print(to_markdown(display_table1(t1_long, args.include_interrupted, split="test_long")))
    counts = status_counts(df)
    print("\nruns: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    also = ", table1_long.md/.csv/.png" if "long_csv" in files else ""
    print(f"report: {files['html']} (and table1.md/.csv/.tex, runs.csv, summary.csv, "
          f"table1.png{also} in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
