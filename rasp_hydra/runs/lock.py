"""One writer at a time, and whether a run is alive.

``RunLock`` is an ``fcntl`` lock on ``run.lock``, which the OS releases when the process
dies (``kill -9`` leaves no stale lock); ``lock_state`` reads it without taking it, and
``run_status`` is the one place a reader decides whether a ``running`` record is alive,
crashed or incomplete. What a process that claims a directory asks before it writes
(``resume_problem``) and what a launcher writes for a job that died without a word
(``write_killed``) are here too. This module changes when the rules of who may write a run
directory change.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from rasp_hydra.errors import HeldError
from rasp_hydra.runs.checkpoints import (
    CheckpointError,
    _way_out,
    best_problem,
    check_fits,
    load_checkpoint,
    record_shape,
)
from rasp_hydra.runs.files import BEST, LAST, LOCK, METRICS, _now
from rasp_hydra.runs.record import (
    RunRecord,
    append_invocation,
    append_log,
    has_history,
    has_started,
    read_metrics,
    read_metrics_or_problem,
    write_metrics,
)


class RunLocked(HeldError):
    """Another live process holds the run directory; the message names it."""

class RunLock:
    """An exclusive, advisory lock on RUN/run.lock, held for a whole invocation.

    ``fcntl.flock`` belongs to the open file: the OS drops it when the process exits or is
    killed, so a lock never outlives its holder. The file names the holder (pid, host,
    start time) for the error that a second process gets.
    """

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self._file = None

    def acquire(self) -> RunLock:
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.run_dir / LOCK, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            raise RunLocked(self._locked_message(holder)) from None
        self._file = f
        return self

    def announce(self) -> RunLock:
        """Name this process in the lock file, for the error a second process gets. Kept
        apart from `acquire`, so that an invocation that is refused changes no byte."""
        f = self._file
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": _now()}) + "\n")
        f.flush()
        return self

    def _locked_message(self, holder: str) -> str:
        try:
            h = json.loads(holder)
            who = f"process {h['pid']} on {h['host']}, started {h['started']}"
        except (ValueError, KeyError, TypeError):
            who = "another process"
        return (f"{self.run_dir} is in use by {who}: one process at a time may write a run "
                "directory, and this one has left it untouched. Wait for that process to end "
                "(or stop it), then run again; to train beside it, start a new run directory.")

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock; the file stays as a record
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire().announce()

    def __exit__(self, *exc) -> None:
        self.release()

def lock_state(run_dir) -> str:
    """"held" if a live process holds RUN/run.lock, "free" if none does, "unknown" if this
    machine cannot tell (no lock file: a library run; a holder on another host).

    Read without taking the lock (a reader that took it could turn a starting job away):
    Linux lists every flock in /proc/locks by device and inode; elsewhere the holder's pid
    is asked whether it still lives.
    """
    path = Path(run_dir) / LOCK
    try:
        st = path.stat()
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "unknown"
    holder = holder if isinstance(holder, dict) else {}
    if holder.get("host") not in (None, socket.gethostname()):
        return "unknown"
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            return "held" if any(key in line.split() for line in f) else "free"
    except OSError:
        pass
    try:
        os.kill(int(holder["pid"]), 0)
    except (KeyError, TypeError, ValueError):
        return "unknown"
    except ProcessLookupError:
        return "free"
    except PermissionError:
        return "held"
    return "held"

def run_status(run_dir, metrics: dict | None = None,
               problem: str | None = None) -> tuple[str, str | None]:
    """(status, reason) of a run directory as a reader should count it; the one place the
    report, load_sweep, load_run and the drawer decide it.

    The record's own status, except: a `running` record that no live process holds is
    `crashed` (killed: kill -9, out of memory, a lost node), or `incomplete` when its
    last.pt is gone too; a directory whose record is gone (or was never written) and that
    no process holds is `incomplete`; an unreadable record is `unknown`. Where the lock
    cannot be read (another host, a library run without one), a `running` record stays
    `running`. A finished record stays what it says: its numbers hold without checkpoints.
    """
    run_dir = Path(run_dir)
    if metrics is None and problem is None:
        metrics, problem = read_metrics_or_problem(run_dir)
    if problem:
        return "unknown", problem
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

def resume_problem(run_dir, resume_from: str = "last") -> str | None:
    """Why this run directory cannot be resumed from its `resume_from` checkpoint ("last" or
    "best"), as one paragraph; None if it can (or holds nothing to resume: a new run).

    A diverged run is not resumed (the same steps would diverge again); a run that finished
    an epoch is never trained again from nothing because its checkpoint is missing, empty,
    unreadable or another run's.
    """
    run_dir = Path(run_dir)
    record = read_metrics(run_dir)
    if record.get("status") == "diverged":
        return (f"{run_dir} diverged ({record.get('reason') or 'a non-finite loss'}), and a "
                "resume would take the same steps into the same divergence, so nothing was "
                "written. Start a new run with a smaller optimizer.lr (e.g. a tenth of "
                f"{record.get('lr') or 'its lr'}); the diverged one stays as its record.")
    path = run_dir / (BEST if resume_from == "best" else LAST)
    if not path.is_file():
        if not has_history(run_dir):
            return None  # cut short before its first epoch ended: it starts over
        if resume_from == "best":
            return (f"train.resume_from=best, but {path} does not exist, so nothing was "
                    "written. Resume from last.pt (leave out train.resume_from), or start a "
                    "new run.")
        return (f"{path} does not exist, but {run_dir} has finished epochs: resuming would "
                "train it again from nothing, so nothing was written. To go on, "
                f"{_way_out(path)}.")
    try:
        ckpt = load_checkpoint(path)
        check_fits(path, ckpt, record.get("task"), record_shape(record))
    except CheckpointError as err:
        return str(err)
    if resume_from == "best":
        return None
    # the best model that last.pt's run goes on from must be there (or be last.pt's own)
    trainer = ckpt.get("trainer") or {}
    want = int(trainer.get("best_epoch") or 0)
    pending = (want == int(ckpt["epoch"]) and not trainer.get("batch")
               and int(record.get("epochs_run") or 0) < want)
    return best_problem(run_dir, want, pending, record.get("task"), record_shape(record))
