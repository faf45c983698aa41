"""SIGINT and SIGTERM from the moment a job holds its run directory until it ends.

The training loop stops after its batch on a signal (rasp_hydra.train.loop); before it
starts (the data build, the model, a resume's checkpoint) and after it ends, `armed` turns
either signal into `Stopped`, which the job records as `interrupted` (a run that had not
trained an epoch yet says so) before it leaves with exit code 130 or 143. `Stopped` is a
BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """A signal arrived while no training loop was there to stop after its batch."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name


def _raise(signum, frame):
    raise Stopped(signum)


@contextlib.contextmanager
def armed():
    """Within: SIGINT and SIGTERM raise Stopped (the training loop installs its own while it
    runs and gives these back after); the handlers before are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, _raise) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def held():
    """Within: SIGINT and SIGTERM wait (the record being written is not cut short); one that
    arrived meanwhile is delivered after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    old = {sig: signal.signal(sig, lambda s, f: pending.append(s)) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    for sig in pending[:1]:
        signal.raise_signal(sig)


def record_stopped(run_dir: Path, stop: Stopped) -> str:
    """Write what a signal outside the training loop leaves: a record that is not final yet
    becomes `interrupted` (one that never trained says it stopped before the first epoch);
    a final record stays what it is. The reason written."""
    from rasp_hydra import runs

    metrics = runs.read_metrics(run_dir)
    status = metrics.get("status")
    epochs = int(metrics.get("epochs_run") or 0) if isinstance(metrics, dict) else 0
    reason = stop.name if epochs or runs.has_history(run_dir) else (
        f"{stop.name} before the first epoch")
    if status in (None, "running", "unreadable"):
        record = runs.RunRecord.from_dict({**metrics, "status": "interrupted",
                                           "reason": reason})
        runs.write_metrics(run_dir, record)
        runs.append_log(run_dir, f"interrupted ({reason}) before training went on: "
                        "nothing of the run was lost; --resume continues it")
    return reason
