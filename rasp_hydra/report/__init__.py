"""Table 1 from sweep directories: ``python -m rasp_hydra.report SWEEP_DIR [SWEEP_DIR ...]``.

Reads every run directory below the given directories (see "The run directory" in
docs/design.md; every file in it is read through ``rasp_hydra.runs``) and writes, under
``multirun_reports/<sweep name>/`` (or ``--out``):

- ``runs.csv``: one row per run: canonical columns (task, arch, layers, heads, lr, gamma,
  status, test_acc, ...), then the flattened config (``model.layers``, ``optimizer.lr``, ...)
  and every metric (``final.test.token_acc``, ``attention_match.0,0``, ...);
  ``load_sweep(path)`` returns the same table as a DataFrame;
- ``table1.md`` / ``table1.csv`` / ``table1.tex``: the paper's Table 1 over replicates;
  the CSV has one row per cell (task, arch), the Markdown and LaTeX one row per task;
- ``table1_long.md`` / ``.csv`` / ``.png``: the same on the longer "test_long" split, when
  runs have one (length generalization);
- ``summary.csv``: the original's per-(task, layers, heads) summary;
- ``table1.png``: test accuracy per task and arch variant: mean over replicates (bar),
  95% interval (line), each replicate (dot);
- ``index.html``: one page with the tables, the figure and per-run links relative to the
  report folder; with ``--self-contained`` each run's curves are embedded and the links stay
  inside the page.

The Markdown Table 1 is also printed to the terminal. The package in three parts:
``collect`` (run directories -> the runs DataFrame), ``tables`` (pure DataFrame functions)
and the writers: ``text`` (the tables as strings), ``figure`` (the PNG), ``page`` (the HTML)
and ``render`` (every file); ``__main__`` is the command line.

Choices, written down:

- **Which runs count.** Only runs with status ``completed`` and a final test accuracy count
  towards accuracies (the choice on validation and the spread) by default. ``interrupted``
  runs were cut short (Ctrl-C, a preempted cluster job): their accuracy is that of a partly
  trained model, so they are counted and shown but left out, unless ``include_interrupted=True``
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
- **Cells, replicates, choice on validation.** A cell of Table 1 is (task, arch); its
  replicates are its ``train.seed`` values. A replicate may hold several runs that differ
  in other swept settings (lr, gamma, anything but the task, arch and seed; the header
  names them, ``tables.chosen_among``): the one with the best final validation token
  accuracy is chosen (ties: lower validation loss, then run order), and its test figures
  are the replicate's (``tables.choose_on_validation``). The test split never chooses. The
  same holds for an Optuna study's trials (its objective is the validation accuracy too).
- **Spread per cell**, over replicates: mean, the half-width of the 95% Student-t interval
  (``tables.t95``; none for one replicate), min, max, and ``k/n`` replicates that solved
  the task (test token accuracy at or above 0.99, ``--solved``); whole-sequence accuracy
  the same way (``seq_solved``: whole-sequence accuracy at or above the threshold).
- **Attention match** of the predicted arch per head ``"layer,head"`` (test split): mean
  over the chosen runs of the raw match, of uniform attention's match u, and of the match
  above chance ``runs.match_above_chance``, (m - u) / (1 - u), shown "–" where u = 1 (a
  select that picks every key). Runs without ``attention_uniform`` (older runs): raw only.
- **Length generalization**: ``table1(..., split="test_long")``, the same cells and the
  same choice on validation, with the train and long length ranges from the configs.
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
