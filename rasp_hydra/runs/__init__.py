"""Everything that reads or writes a run directory (docs/design.md, "The run directory").

A run directory holds:

    .hydra/                 the first invocation's composition (written by Hydra, read here)
    invocations/NNN/        the composition of every later invocation (a resume), beside it
    invocations.jsonl       one line per invocation start and end: who, when, overrides, outcome
    run.lock                the lock of the one process that may write the directory
    train.log               one line per epoch, then the final accuracies
    history.csv             one row per epoch, all metrics
    trackers.json           each experiment tracker's run id (logger=wandb), for a resume
    metrics.json            the run's record (RunRecord); status running|completed|interrupted|
                            diverged|failed|skipped
    checkpoints/best.pt     best validation loss;  checkpoints/last.pt: everything to resume
    plots/curves.png        loss and accuracy curves
    maps/SEQUENCE/          the drawer's heatmaps of one sequence

Every file that a reader may see half-written (metrics.json, history.csv, checkpoints) is
written to a temporary file and moved into place with ``os.replace``. Checkpoints hold only
tensors and primitives, so ``torch.load(path, weights_only=True)`` reads them; one that
cannot be read raises ``CheckpointError``, a paragraph that names the file and the way out.
One process at a time writes a run directory: ``RunLock`` is an ``fcntl`` lock on
``run.lock``, which the OS releases when the process dies (``kill -9`` leaves no stale lock).
Nothing here knows about Hydra beyond reading ``.hydra/*.yaml`` with OmegaConf.

One module per reason to change: ``files`` (names and atomic writes), ``record``
(metrics.json, history.csv, train.log, invocations.jsonl), ``checkpoints``, ``configs``
(the saved compositions), ``lock`` (one writer; alive, crashed or incomplete), ``curves``
(plots/curves.png), ``sweeps`` (finding runs, reading sweep roots) and ``load`` (a run's
model and task). Every reader imports them from here: ``from rasp_hydra import runs``.
Torch, matplotlib, pandas and OmegaConf are imported on first use.
"""

from __future__ import annotations

# Every name below is imported to be re-exported: `runs.X` as before the split.
# ruff: noqa: F401
from rasp_hydra.runs.checkpoints import (
    SHAPE_KEYS,
    CheckpointError,
    best_problem,
    check_fits,
    checkpoint_epoch,
    checkpoint_mismatch,
    checkpoints,
    load_checkpoint,
    record_shape,
    save_checkpoint,
)
from rasp_hydra.runs.configs import (
    config_differences,
    flatten,
    next_invocation_dir,
    original_cwd,
    read_config,
    read_config_dict,
    read_original_config,
)
from rasp_hydra.runs.curves import curves_path, plot_curves
from rasp_hydra.runs.files import (
    BEST,
    CONFIG,
    CURVES,
    HISTORY,
    HYDRA,
    INVOCATION_DIRS,
    INVOCATIONS,
    LAST,
    LOCK,
    LOG,
    MAPS,
    METRICS,
    OVERRIDES,
    TMP_PATTERN,
    TRACKER_IDS,
    WriteError,
    remove_stale_tmp,
    run_files,
)
from rasp_hydra.runs.load import NoModelError, load_model, open_model
from rasp_hydra.runs.lock import (
    RunLock,
    RunLocked,
    lock_state,
    resume_problem,
    run_status,
    write_killed,
)
from rasp_hydra.runs.record import (
    FINAL_STATUSES,
    HISTORY_COLUMNS,
    NOT_COMPLETED,
    RunRecord,
    append_invocation,
    append_log,
    has_history,
    has_run,
    has_started,
    head_key,
    match_above_chance,
    read_history,
    read_history_frame,
    read_invocations,
    read_metrics,
    read_metrics_or_problem,
    read_tracker_ids,
    write_history,
    write_metrics,
    write_tracker_id,
)
from rasp_hydra.runs.sweeps import (
    MULTIRUN,
    OPTUNA_RESULTS,
    find_runs,
    is_run_dir,
    read_sweep_config,
    sweep_jobs,
    sweep_size,
    sweeper_kind,
)
