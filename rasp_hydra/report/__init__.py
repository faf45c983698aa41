"""Table 1 from sweep directories: ``python -m rasp_hydra.report SWEEP_DIR [SWEEP_DIR ...]``.

Reads every run directory below the given directories (see the run-directory contract in
DESIGN.md; every file in it is read through ``rasp_hydra.runs``) and writes, under
``multirun_reports/<sweep name>/`` (or ``--out``):

- ``runs.csv``: one row per run: canonical columns (task, arch, layers, heads, lr, gamma,
  status, test_acc, ...), then the flattened config (``model.layers``, ``optimizer.lr``, ...)
  and every metric (``final.test.token_acc``, ``attention_match.0,0``, ...);
  ``load_sweep(path)`` returns the same table as a DataFrame;
- ``table1.md`` / ``table1.csv`` / ``table1.tex``: the paper's Table 1, one row per task;
- ``summary.csv``: the original's per-(task, layers, heads) summary;
- ``table1.png``: test accuracy per task and arch variant (grouped bars);
- ``index.html``: one page with the tables, the figure and per-run links relative to the
  report folder; with ``--self-contained`` each run's curves are embedded and the links stay
  inside the page.

The Markdown Table 1 is also printed to the terminal. The package in three parts:
``collect`` (run directories -> the runs DataFrame), ``tables`` (pure DataFrame functions)
and ``render`` (the files); ``__main__`` is the command line.

Choices, written down:

- **Which runs count.** Only runs with status ``completed`` and a final test accuracy count
  towards accuracies (best, mean, std, n) by default. ``interrupted`` runs were cut short
  (Ctrl-C, a preempted cluster job): their accuracy is that of a partly trained model, so
  they are counted and shown but left out, unless ``include_interrupted=True``
  (``--include-interrupted``). ``running``, ``crashed``, ``incomplete``, ``failed``,
  ``skipped``, ``unknown`` and ``missing`` runs never count as accuracy 0: they only appear
  in the status counts.
- **The living and the dead** (``runs.run_status``, shared with ``load_sweep``, the drawer
  and a sweep's closing line): a ``running`` record whose ``run.lock`` no live process
  holds is ``crashed`` (killed: kill -9, out of memory, a lost node), or ``incomplete``
  when its ``last.pt`` is gone too; a directory whose ``metrics.json`` is gone (or was
  never written) and that no process holds is ``incomplete``; an unreadable record is
  ``unknown`` with the reason. Where the lock cannot be read from this machine
  (a holder on another host) a ``running`` record stays ``running``.
- **Deleted job directories** (``missing``): for a Hydra sweep root (it holds
  ``multirun.yaml``) run by the basic sweeper with numbered job directories, the expected
  jobs are rebuilt from the sweep's overrides the way the basic sweeper enumerates them;
  each absent number becomes a ``missing`` row carrying its overrides. Nothing is rebuilt
  for other sweepers: an **Optuna** study's trials are whatever its sampler asked for, so
  they are simply runs, with a ``trial`` column (the job number in the sweep).
- **Arch variant** of a run: config ``arch.name`` (or metrics ``arch``) when present, else
  derived from its layers/heads against the task's RASP-predicted budget (L, H) with
  ``ArchName.of``: (L, H) ``predicted``, (L, H-1) ``fewer_heads``, (L-1, H)
  ``fewer_layers``, (L-1, 2H) ``fewer_layers_wider``; anything else is labelled
  ``L{layers}H{heads}``.
- **Task order** of Table 1: by family in the order the task registry registers them, then
  by name.
- **Best run** of a variant: highest test token accuracy; ties broken by lower test loss.
  Its whole-sequence accuracy is the one reported; the attention match is that of the best
  ``predicted`` run (per head ``"layer,head"`` on the test split, and the minimum).
- **Validation accuracy at epoch 20**: ``val_token_acc`` of the history row whose ``epoch``
  is 20; a run that ended earlier (it stopped once perfect) reports its last epoch's value.
- Accuracies are fractions in the CSV files and percentages in the Markdown, LaTeX and HTML.
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
from rasp_hydra.report.render import (
    display_summary,
    display_table1,
    plot_table1,
    sweep_name,
    to_markdown,
    write_report,
)
from rasp_hydra.report.tables import (
    counted,
    not_counted_runs,
    status_counts,
    summary,
    table1,
    task_order,
)

__all__ = [
    "ReportError", "collect_runs", "counted", "derive_arch", "display_summary",
    "display_table1", "load_sweep", "main", "not_counted_runs", "plot_table1",
    "read_run", "status_counts", "summary", "sweep_name", "table1",
    "task_order", "to_markdown", "write_report",
]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``python -m rasp_hydra.report --help``); returns the exit code."""
    # imported here: importing __main__ with the package would make `python -m` warn
    from rasp_hydra.report.__main__ import main as cli_main

    return cli_main(argv)
