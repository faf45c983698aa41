"""Everything that reads or writes a run directory (docs/run-directory.md).

``RunDir`` is the run directory as one object: it owns the run's files (config, record,
history, log, invocations, lock, checkpoints, figures) and is the only code that names a
file inside it; its modules, one reason to change each, are listed in ``runs/rundir.py``.
Every reader imports from here: ``from rasp_hydra import runs``; the names below are the
ones used outside this package. Torch, matplotlib and pandas are imported on
first use.
"""

from __future__ import annotations

# Every name below is imported to be re-exported.
# ruff: noqa: F401
from rasp_hydra.runs.checkpoints import CheckpointError, check_fits, load_checkpoint
from rasp_hydra.runs.configs import config_differences, flatten
from rasp_hydra.runs.files import WriteError
from rasp_hydra.runs.load import NoModelError, load_model, open_model
from rasp_hydra.runs.lock import RunLocked
from rasp_hydra.runs.record import (
    FINAL_STATUSES,
    HISTORY_COLUMNS,
    NOT_COMPLETED,
    RunRecord,
    append_invocation,
    append_log,
    head_key,
    match_above_chance,
    read_metrics,
    write_metrics,
)
from rasp_hydra.runs.rundir import PROBES, RUN_MARKS, RunDir, SymlinkInside
from rasp_hydra.runs.sweeps import (
    find_runs,
    read_sweep_config,
    sweep_jobs,
    sweep_size,
    sweeper_kind,
)
