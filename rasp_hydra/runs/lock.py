"""One writer at a time: ``RunLock``, an ``fcntl`` lock on ``run.lock`` that the OS
releases when the process dies (``kill -9`` leaves no stale lock), and ``lock_state``,
which reads it without taking it. This module changes when the rules of who may write a run
directory change.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from rasp_hydra.errors import HeldError
from rasp_hydra.runs.files import LOCK, _now


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
