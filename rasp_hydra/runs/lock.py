"""One writer at a time: ``RunLock`` holds two ``fcntl`` locks that the OS releases when
the process dies (``kill -9`` leaves no stale lock): one on the run directory itself, which
no deletion or copy of a file inside it can bypass, and one on ``run.lock``, the file that
names the holder (pid, host, start time and the kernel's start ticks of that pid).
``lock_state`` reads them without taking them, and a writer asks ``RunLock.check`` before
each epoch's writes whether ``run.lock`` is still the file it locked. This module changes
when the rules of who may write a run directory change.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from rasp_hydra.errors import HeldError
from rasp_hydra.runs.files import LOCK, WriteError, _now

# This process's locks by run directory. The lock belongs to the process (the OS drops it
# when the process dies), and the claim takes it long before the trainer that must check
# it exists, so the trainer finds it here (RunDir.save_checkpoint) rather than being handed
# it through every layer between the Hydra wing and the loop.
_HELD: dict[str, RunLock] = {}


def process_start(pid: int) -> int | None:
    """The kernel's start time of process `pid` in clock ticks (field 22 of /proc/PID/stat),
    which tells a living holder from a later process that reuses its pid; None if unknown."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _key(st: os.stat_result) -> str:
    """How /proc/locks names a file: MAJOR:MINOR:INODE, in hex for the device."""
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


class LockLost(WriteError):
    """run.lock is no longer the file this writer locked (deleted, or replaced by a copy)."""


class RunLocked(HeldError):
    """Another live process holds the run directory; the message names it."""

class RunLock:
    """An exclusive, advisory lock on the run directory and on RUN/run.lock, held for a
    whole invocation.

    ``fcntl.flock`` belongs to the open file: the OS drops it when the process exits or is
    killed, so a lock never outlives its holder. The directory's lock is the one that
    counts (a file inside can be deleted or replaced, the directory it is in cannot while
    it is open); the file names the holder for the error that a second process gets.
    """

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self._file = None
        self._dir_fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the directory's lock, then run.lock's; RunLocked (naming the holder) if
        another process holds either. A refused acquire creates no file."""
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(dir_fd)
            raise RunLocked(self._locked_message(self._holder_text())) from None
        f = open(self.run_dir / LOCK, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a process that locks only run.lock (an older version)
            f.seek(0)
            holder = f.read().strip()
            f.close()
            os.close(dir_fd)
            raise RunLocked(self._locked_message(holder)) from None
        self._file, self._dir_fd = f, dir_fd
        _HELD[os.path.realpath(self.run_dir)] = self
        return self

    def _holder_text(self) -> str:
        try:
            return (self.run_dir / LOCK).read_text().strip()
        except OSError:  # deleted: the directory's lock still says someone holds it
            return ""

    def announce(self) -> RunLock:
        """Name this process in the lock file, for the error a second process gets and for
        a reader that checks the holder is alive. Kept apart from `acquire`, so that an
        invocation that is refused changes no byte."""
        f = self._file
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": _now(),
                            "start_ticks": process_start(os.getpid())}) + "\n")
        f.flush()
        return self

    def check(self) -> None:
        """LockLost unless run.lock is still the file this process locked: a deleted or
        replaced run.lock no longer tells other processes (and readers) who writes here."""
        if self._file is None:
            return
        path = self.run_dir / LOCK
        try:
            st = path.stat()
        except FileNotFoundError:
            what = "was deleted"
        else:
            mine = os.fstat(self._file.fileno())
            if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                return
            what = "was replaced by another file (a copy?)"
        raise LockLost(None, (
            f"{path} {what} while process {os.getpid()} was writing {self.run_dir}, so this "
            "run stopped before its next epoch's writes: its files hold the epochs before "
            "(another process could not take the directory meanwhile: it stays locked "
            "while this process lives). Make sure no other process writes it, then continue "
            f"with python -m rasp_hydra --resume {self.run_dir}"))

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
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
            if _HELD.get(os.path.realpath(self.run_dir)) is self:
                del _HELD[os.path.realpath(self.run_dir)]

    def __enter__(self) -> RunLock:
        return self.acquire().announce()

    def __exit__(self, *exc) -> None:
        self.release()

def held_lock(run_dir) -> RunLock | None:
    """The lock this process holds on `run_dir`, if any."""
    return _HELD.get(os.path.realpath(run_dir))

def lock_state(run_dir) -> str:
    """"held" if a live process holds the run directory, "free" if none does, "unknown" if
    this machine cannot tell (no lock file: a library run; a holder on another host).

    Read without taking the lock (a reader that took it could turn a starting job away):
    Linux lists every flock in /proc/locks by device and inode, the directory's (which a
    deleted or copied run.lock does not change) and run.lock's; elsewhere the holder that
    run.lock names is asked whether it still lives (its pid, with the same start ticks).
    """
    run_dir = Path(run_dir)
    locked = _locked_keys()
    try:
        if locked is not None and _key(run_dir.stat()) in locked:
            return "held"
        path = run_dir / LOCK
        st = path.stat()
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "unknown"
    holder = holder if isinstance(holder, dict) else {}
    if holder.get("host") not in (None, socket.gethostname()):
        return "unknown"
    if locked is not None:
        return "held" if _key(st) in locked else "free"
    alive = _alive(holder)
    return "unknown" if alive is None else ("held" if alive else "free")

def _locked_keys() -> set[str] | None:
    """Every file /proc/locks lists as locked (MAJOR:MINOR:INODE); None without it."""
    try:
        with open("/proc/locks") as f:
            return {word for line in f for word in line.split() if word.count(":") == 2}
    except OSError:
        return None

def _alive(holder: dict) -> bool | None:
    """Whether the process a lock file names still lives (None if it names none)."""
    try:
        pid = int(holder["pid"])
        os.kill(pid, 0)
    except (KeyError, TypeError, ValueError):
        return None
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    ticks = holder.get("start_ticks")
    return ticks is None or process_start(pid) in (None, ticks)  # not a reused pid
