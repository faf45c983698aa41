"""Whether a run is alive: ``run_status`` is the one place a reader decides whether a
``running`` record is alive, crashed or incomplete, and ``write_killed`` is what a launcher
writes for a job that died without a word. This module changes when the rules that name a
run's state change.
"""

from __future__ import annotations

from pathlib import Path

from rasp_hydra.errors import BrokenFile
from rasp_hydra.runs.files import LAST, METRICS
from rasp_hydra.runs.lock import RunLock, RunLocked, lock_state
from rasp_hydra.runs.readers import read_record
from rasp_hydra.runs.record import (
    RunRecord,
    append_invocation,
    append_log,
    has_started,
    read_metrics,
    write_metrics,
)


def run_status(run_dir, metrics: dict | None = None,
               problem: str | None = None) -> tuple[str, str | None]:
    """(status, reason) of a run directory as a reader should count it; the one place the
    report, load_sweep, load_run and the drawer decide it.

    The record's own status, except: a `running` record that no live process holds is
    `crashed` (killed: kill -9, out of memory, a lost node), or `incomplete` when its
    last.pt is gone too; a directory whose record is gone (or was never written) and that
    no process holds is `incomplete`; a broken record (`problem`: BrokenFile's reason) is
    `unreadable`, and so is one whose status is not a status. Where the lock
    cannot be read (another host, a library run without one), a `running` record stays
    `running`. A finished record stays what it says: its numbers hold without checkpoints.
    """
    run_dir = Path(run_dir)
    if metrics is None and problem is None:
        try:
            metrics = read_record(run_dir)
        except BrokenFile as err:
            metrics, problem = {}, err.reason
    if problem:
        return "unreadable", problem
    status = str(metrics.get("status") or "") if metrics else ""
    lock = lock_state(run_dir) if status in ("", "running") else None
    if lock == "held":
        return "running", None
    if status == "running":
        if lock != "free":
            return "running", None
        if int(metrics.get("epochs_run") or 0) > 0 and not (run_dir / LAST).is_file():
            return "incomplete", (f"its record says running, but no process holds run.lock "
                                  f"and {LAST} is gone: it cannot be resumed")
        return "crashed", ("its record says running, but no process holds run.lock: the "
                           "process was killed (kill -9, out of memory, a lost node) or the "
                           "machine restarted; --resume continues it from last.pt")
    if not status:
        if lock == "free":
            return "incomplete", (f"no {METRICS}: its record is gone, or the job died before "
                                  "writing one")
        return ("running" if has_started(run_dir) else "unknown"), None
    return status, metrics.get("reason")

def write_killed(run_dir, how: str, pid: int) -> bool:
    """Record that a run's process died without a word (`how`: "killed by SIGKILL"), as
    its sweep's launcher saw it: a `running` record (or none) becomes `failed`. False if
    another process holds the directory now (it is left as it is)."""
    try:
        lock = RunLock(run_dir).acquire()
    except RunLocked:
        return False
    try:
        record = read_metrics(run_dir)
        error = f"the job's process {pid} was {how}"
        if record.get("status") in (None, "running", "unreadable"):
            write_metrics(run_dir, RunRecord.from_dict(
                {**record, "status": "failed", "reason": how, "error": error}))
        append_log(run_dir, f"failed: {error} (by the out-of-memory killer or by hand?)")
        append_invocation(run_dir, event="end", outcome="failed", error=error)
    finally:
        lock.release()
    return True
