"""Table 1 from sweep directories: ``python -m rasp_hydra.report SWEEP_DIR [SWEEP_DIR ...]``.

Reads every run directory below the given directories (through ``rasp_hydra.runs``) and
writes ``runs.csv``, ``table1.md``/``.csv``/``.tex``/``.png``, ``summary.csv``, the
``table1_long`` files of a longer test split and ``index.html`` under
``multirun_reports/<sweep name>/`` (or ``--out``). The package: ``collect`` (run
directories -> the runs DataFrame), ``tables`` (pure DataFrame functions), the writers
``text``, ``figure``, ``page`` and ``render``, and ``__main__`` (the command line).
docs/report.md says what each file holds and every choice the report makes (which runs
count, the living and the dead, missing jobs, arch variants, the choice on validation, the
spread over replicates, the attention match above chance).
"""

from __future__ import annotations

from collections.abc import Sequence

from rasp_hydra.report.collect import (
    ReportError,
    collect_runs,
    derive_arch,
    load_sweep,
    read_run,
)
from rasp_hydra.report.figure import plot_table1
from rasp_hydra.report.render import notes, write_report
from rasp_hydra.report.tables import (
    SOLVED,
    choose_on_validation,
    chosen_among,
    counted,
    has_long_split,
    not_counted_runs,
    spread,
    status_counts,
    summary,
    t95,
    table1,
    task_order,
)
from rasp_hydra.report.text import display_summary, display_table1, sweep_name, to_markdown

__all__ = [
    "SOLVED", "ReportError", "choose_on_validation", "chosen_among", "collect_runs", "counted",
    "derive_arch", "display_summary", "display_table1", "has_long_split", "load_sweep", "main",
    "not_counted_runs", "notes", "plot_table1", "read_run", "spread", "status_counts", "summary",
    "sweep_name", "t95", "table1", "task_order", "to_markdown", "write_report",
]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``python -m rasp_hydra.report --help``); returns the exit code."""
    # imported here: importing __main__ with the package would make `python -m` warn
    from rasp_hydra.report.__main__ import main as cli_main

    return cli_main(argv)
