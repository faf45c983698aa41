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
    reason = stop.name if epochs or runs.RunDir(run_dir).has_history() else (
        f"{stop.name} before the first epoch")
    if status in (None, "running", "unreadable"):
        record = runs.RunRecord.from_dict({**metrics, "status": "interrupted",
                                           "reason": reason})
        runs.write_metrics(run_dir, record)
        runs.append_log(run_dir, f"interrupted ({reason}) before training went on: "
                        "nothing of the run was lost; --resume continues it")
    return reason


# ------------------------------------------------------------------ a sweep that is stopped
# A signal to a sweep (its process, or its whole process group) stops it: the jobs running
# end `interrupted` after their batch, the jobs not started yet are not started, and the
# sweep ends with its count line and 130 or 143. Each job trains in a process group of its
# own, so that it hears the signal once, from its worker; `.stop.PID` in the sweep
# directory (PID: the sweep's process) says to every process of the sweep that it stops.

STOP_ENV = "RASP_HYDRA_SWEEP_STOP_FILE"


def sweep_stop_file(sweep_dir: Path) -> None:
    """Where this sweep's processes note that it stops (set before any worker starts)."""
    import os

    os.environ[STOP_ENV] = str(Path(sweep_dir).absolute() / f".stop.{os.getpid()}")


def note_sweep_stop(name: str) -> None:
    """Note that the sweep stops, because of signal `name` (the first one noted stays)."""
    import os

    path = os.environ.get(STOP_ENV)
    if not path or worker_gone():  # the kernel's SIGTERM for a dead worker, not the sweep's
        return
    try:
        with open(path, "x", encoding="utf-8") as f:
            f.write(name)
    except OSError:  # noted already (or the directory is gone: nothing to start anyway)
        pass


def sweep_stopped() -> str | None:
    """The signal that stops this sweep ("SIGINT"), or None."""
    import os

    path = os.environ.get(STOP_ENV)
    try:
        return (Path(path).read_text().strip() or "SIGINT") if path else None
    except OSError:
        return None


def end_sweep_stop() -> str | None:
    """The signal that stopped the sweep, if any; the note goes."""
    import os

    name = sweep_stopped()
    path = os.environ.pop(STOP_ENV, None)
    if path:
        Path(path).unlink(missing_ok=True)
    return name


# A job process forked by its worker (or submitit task) gets SIGTERM from the kernel when
# that worker dies (PR_SET_PDEATHSIG), and is handed to another parent before it hears it.
_worker: int | None = None


def forked_by(pid: int) -> None:
    """In a job process just forked: `pid` is the worker it was forked by."""
    global _worker
    _worker = pid


def worker_gone() -> bool:
    """Whether this is a job process whose worker has died (so a SIGTERM it heard came from
    the kernel, not from the sweep)."""
    import os

    return _worker is not None and os.getppid() != _worker


def _processes() -> dict[int, tuple[int, int]]:
    """Every process's (parent, process group), from /proc (Linux; {} elsewhere)."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:  # the fields after the command's name, which may hold spaces and ")"
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            found[int(entry.name)] = (int(fields[1]), int(fields[2]))
        except (OSError, ValueError, IndexError):
            continue
    return found


def worker_pids() -> list[int]:
    """This process's joblib (loky) worker processes (Linux; [] elsewhere)."""
    import os

    me, found = os.getpid(), []
    for pid, (ppid, _) in _processes().items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if ppid == me and b"popen_loky" in cmdline:
            found.append(pid)
    return found


def descendants_but_jobs(pid: int) -> list[int]:
    """The descendants of process `pid`, parents before their children, without the job
    processes (each the leader of its own process group, as fork_job makes it) and theirs."""
    children: dict[int, list[int]] = {}
    for child, (ppid, group) in _processes().items():
        if group != child:
            children.setdefault(ppid, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@contextlib.contextmanager
def stopping_sweep():
    """In the sweep's process while it runs its jobs: SIGINT or SIGTERM notes the stop and
    is passed on to the workers (which pass it to their jobs once); nothing is raised here,
    so the sweep waits for its jobs' answers."""
    import os

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        first = sweep_stopped() is None
        note_sweep_stop(signal.Signals(signum).name)
        if first:
            for pid in worker_pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signum)

    old = {sig: signal.signal(sig, handle) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
