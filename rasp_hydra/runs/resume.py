"""What a process that claims a run directory asks before it writes: whether the run can
be resumed from its checkpoint (``resume_problem``). This module changes when what a resume
accepts changes.
"""

from __future__ import annotations

from pathlib import Path

from rasp_hydra.runs.checkpoints import (
    CheckpointError,
    _way_out,
    best_problem,
    check_fits,
    config_shape,
    load_checkpoint,
    record_shape,
)
from rasp_hydra.runs.configs import original_cwd, read_original_config
from rasp_hydra.runs.files import BEST, LAST
from rasp_hydra.runs.readers import read_history_rows, read_record, read_run_config


def resume_problem(run_dir, resume_from: str = "last") -> str | None:
    """Why this run directory cannot be resumed from its `resume_from` checkpoint ("last" or
    "best"), as one paragraph; None if it can (or holds nothing to resume: a new run).

    A diverged run is not resumed (the same steps would diverge again); a run that finished
    an epoch is never trained again from nothing because its checkpoint is missing, empty,
    unreadable or another run's. A broken metrics.json or history.csv raises BrokenFile.
    """
    run_dir = Path(run_dir)
    record = read_record(run_dir)  # a broken record or history: BrokenFile, its paragraph
    history = read_history_rows(run_dir)
    if record.get("status") == "diverged":
        return (f"{run_dir} diverged ({record.get('reason') or 'a non-finite loss'}), and a "
                "resume would take the same steps into the same divergence, so nothing was "
                "written. Start a new run with a smaller optimizer.lr (e.g. a tenth of "
                f"{record.get('lr') or 'its lr'}); the diverged one stays as its record.")
    path = run_dir / (BEST if resume_from == "best" else LAST)
    if not path.is_file():
        if not (int(record.get("epochs_run") or 0) > 0 or history):
            return None  # cut short before its first epoch ended: it starts over
        if resume_from == "best":
            return (f"train.resume_from=best, but {path} does not exist, so nothing was "
                    "written. Resume from last.pt (leave out train.resume_from), or start a "
                    "new run.")
        return (f"{path} does not exist, but {run_dir} has finished epochs: resuming would "
                "train it again from nothing, so nothing was written. To go on, "
                f"{_way_out(path)}.")
    # the run as its record and as its own config say it: metrics.json may be gone
    said = [(record.get("task"), record_shape(record)), config_says(run_dir)]
    try:
        ckpt = load_checkpoint(path)
        for task, shape in said:
            check_fits(path, ckpt, task, shape)
    except CheckpointError as err:
        return str(err)
    if resume_from == "best":
        return None
    # the best model that last.pt's run goes on from must be there (or be last.pt's own)
    trainer = ckpt.get("trainer") or {}
    want = int(trainer.get("best_epoch") or 0)
    pending = (want == int(ckpt["epoch"]) and not trainer.get("batch")
               and int(record.get("epochs_run") or 0) < want)
    for task, shape in said:
        problem = best_problem(run_dir, want, pending, task, shape)
        if problem:
            return problem
    return None


def config_says(run_dir) -> tuple[str | None, dict]:
    """(task name, model shape) as the run's own .hydra/config.yaml says them; (None, {})
    where it says nothing comparable (no config, or one no task can be built from)."""
    from rasp_hydra.config import MISSING
    from rasp_hydra.tasks import task_of_lang

    try:
        run_cfg = read_run_config(run_dir)
        if run_cfg is None or run_cfg.lang.family in (None, MISSING):
            return None, {}
        task = task_of_lang(run_cfg.lang, original_cwd(run_dir))
        return task.name, config_shape(read_original_config(run_dir), task)
    except Exception:  # a broken config is its reader's to name, elsewhere
        return None, {}


def threads_before(run_dir) -> int | None:
    """The torch thread count the run trained on last: last.pt's (the state a resume goes
    on from), else its record's `num_threads` (written by the invocation that last trained
    or evaluated), else the last invocation that names one in invocations.jsonl; None if
    none says."""
    from rasp_hydra.runs.checkpoints import checkpoint_threads
    from rasp_hydra.runs.record import read_invocations, read_metrics

    threads = checkpoint_threads(run_dir)
    if threads is not None:
        return threads
    threads = read_metrics(run_dir).get("num_threads")
    if isinstance(threads, int) and not isinstance(threads, bool):
        return threads
    named = [i["threads"] for i in read_invocations(run_dir) if isinstance(i.get("threads"), int)]
    return named[-1] if named else None


def continuation(run_dir, threads: int, resume_from: str = "last") -> str | None:
    """How a resume on `threads` torch threads continues the run: None when there is
    nothing to continue from (a new run, or one cut short before its first epoch, which
    starts over), "exact" when it goes on bit for bit (from last.pt, on the thread count
    the run trained on), "inexact" otherwise (another thread count, or from best.pt)."""
    path = Path(run_dir) / (BEST if resume_from == "best" else LAST)
    if not path.is_file():
        return None
    if resume_from == "best":
        return "inexact"
    before = threads_before(run_dir)
    return "exact" if before is None or before == threads else "inexact"
