"""A sweep launched again into its own directory (`hydra.sweep.dir=SWEEP`): what it may
change, and which of its jobs need no process at all.

The sweep's process decides both before any job starts. Its overrides must be the ones of
the sweep's `multirun.yaml` (those numbered its jobs; `hydra.*` settings such as the
launcher's, and the values of keys a resume may change, such as train.epochs, may differ),
or nothing runs and `multirun.yaml` is left as it was. A job whose
record is final and that no process holds (`completed`, `skipped`, `diverged`: running it
again would only re-evaluate the same weights) is counted as it is, and its history gains
nothing; `interrupted`, `failed`, `crashed`, `incomplete` and missing jobs run (and resume).
"""

from __future__ import annotations

import os
from pathlib import Path

from rasp_hydra.config import RESUME_SAFE_KEYS
from rasp_hydra.errors import ConfigError

CHANGED_ENV = "RASP_HYDRA_RELAUNCH_CHANGED"  # set: the relaunch changes a resume-safe key


def _only_safe_changes(saved: list[str], given: list[str]) -> bool:
    """Whether `given` differs from `saved` only in the values of keys a resume may change
    (train.epochs, ...), each with as many swept values, so that the jobs keep their
    numbers."""
    def split(o: str) -> tuple[str, str]:
        key, _, value = o.partition("=")
        return key.lstrip("+~"), value

    a, b = [split(o) for o in saved], [split(o) for o in given]
    if [k for k, _ in a] != [k for k, _ in b]:
        return False
    return all(va == vb or (k in RESUME_SAFE_KEYS and va.count(",") == vb.count(","))
               for (k, va), (_, vb) in zip(a, b, strict=True))

KEPT_STATUSES = ("completed", "skipped", "diverged")


def check_same_overrides(sweep_dir: Path, overrides: list[str]) -> None:
    """Refuse a relaunch into `sweep_dir` whose overrides are not its multirun.yaml's."""
    from rasp_hydra import runs

    saved = (((runs.read_sweep_config(sweep_dir) or {}).get("overrides") or {}).get("task"))
    if saved is None:  # a new sweep directory, or one we know nothing about
        return
    saved = [str(o) for o in saved]
    if saved == list(overrides):
        return
    if _only_safe_changes(saved, list(overrides)):
        os.environ[CHANGED_ENV] = "1"  # a job's record is no longer final by itself
        return
    gone = [o for o in saved if o not in overrides]
    new = [o for o in overrides if o not in saved]
    shown = "; ".join(filter(None, [
        f"not given now: {' '.join(gone)}" if gone else "",
        f"new: {' '.join(new)}" if new else "",
        "the same overrides in another order (which numbers the jobs otherwise)"
        if not gone and not new else ""]))
    raise ConfigError(
        f"hydra.sweep.dir={sweep_dir} holds a sweep launched with other overrides ({shown}). "
        f"Its jobs were numbered from {' '.join(saved) or 'no overrides'}, so nothing was run "
        "and its multirun.yaml is left as it was. Run the same command as before to finish "
        "that sweep (hydra.* settings such as hydra.launcher.n_jobs may differ), or give "
        "another hydra.sweep.dir for the new values.")


def kept_record(run_dir: Path) -> dict | None:
    """The record of a job that needs no process (final, and no process holds it), else
    None."""
    from rasp_hydra import runs
    from rasp_hydra.errors import BrokenFile

    rd = runs.RunDir(run_dir)
    if os.environ.get(CHANGED_ENV) or not rd.is_run():
        return None  # changed values (more epochs): every job runs, as a resume would
    try:
        metrics = rd.read_record()
    except BrokenFile:  # the job's own process says what is wrong with it
        return None
    if not metrics:
        return None
    status, _ = rd.status(metrics)
    if status not in KEPT_STATUSES or rd.lock_state() == "held":
        return None
    return metrics
