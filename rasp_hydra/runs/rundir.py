"""``RunDir``: a run directory as one object that owns its files.

Every reader and writer of a run (the trainer, the claim, the report, the drawer, the
probes, the notebook API) goes through it; it is the only code outside the modules behind
it that knows a file's name inside a run directory. The modules behind it, one reason to
change each: ``files`` (names and atomic writes), ``record`` (metrics.json, history.csv,
train.log, invocations.jsonl), ``readers`` (one strict reader per file: checked content
or ``BrokenFile`` naming the file), ``checkpoints``, ``configs`` (the saved compositions),
``lock`` (one writer), ``status`` (alive, crashed or incomplete), ``resume`` (what a resume
accepts), ``curves`` and ``sweeps`` (finding runs, sweep roots). docs/run-directory.md
lists the files and what the directory promises.
"""

from __future__ import annotations

import os
from pathlib import Path

from rasp_hydra.errors import UserError
from rasp_hydra.runs import checkpoints as _ckpt
from rasp_hydra.runs import configs as _configs
from rasp_hydra.runs import curves as _curves
from rasp_hydra.runs import files as _files
from rasp_hydra.runs import readers as _readers
from rasp_hydra.runs import record as _record
from rasp_hydra.runs import resume as _resume
from rasp_hydra.runs import status as _status
from rasp_hydra.runs.lock import RunLock, held_lock, lock_state
from rasp_hydra.runs.sweeps import is_run_dir

PROBES = "probes"  # the probes' table and figure


class SymlinkInside(UserError):
    """A path the run writes inside its directory is a symlink (RunDir.refuse_symlinks)."""

RUN_MARKS = f"{_files.CONFIG} or {_files.METRICS}"  # what makes a directory a run, in words


class RunDir:
    """The files of one run directory: its config, record, history, log, invocations,
    lock, checkpoints and figures, with the write order and atomicity of the modules behind
    it (every file a reader may see is replaced whole, never written in place)."""

    def __init__(self, path):
        self.path = Path(path.path if isinstance(path, RunDir) else path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ---------------------------------------------------------------- where things are
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metrics_file(self) -> Path:
        return self.path / _files.METRICS

    @property
    def history_file(self) -> Path:
        return self.path / _files.HISTORY

    @property
    def log_file(self) -> Path:
        return self.path / _files.LOG

    @property
    def config_file(self) -> Path:
        return self.path / _files.CONFIG

    @property
    def overrides_file(self) -> Path:
        return self.path / _files.OVERRIDES

    @property
    def lock_file(self) -> Path:
        return self.path / _files.LOCK

    @property
    def invocations_file(self) -> Path:
        return self.path / _files.INVOCATIONS

    @property
    def maps(self) -> Path:
        """The drawer's folder: one subfolder per sequence."""
        return self.path / _files.MAPS

    @property
    def probes(self) -> Path:
        return self.path / PROBES

    @property
    def hydra_subdir(self) -> str:
        """Where Hydra saves the first invocation's composition (relative)."""
        return str(_files.HYDRA)

    def checkpoint_file(self, which: str) -> Path:
        """checkpoints/best.pt or checkpoints/last.pt (`which`: "best" or "last")."""
        return self.path / (_files.BEST if which == "best" else _files.LAST)

    # ---------------------------------------------------------------- what is there
    def is_run(self) -> bool:
        """Whether it holds a run (a saved config or a record)."""
        return is_run_dir(self.path)

    def has_run(self) -> bool:
        """Whether a run already trained (or tried to) here."""
        return _record.has_run(self.path)

    def has_history(self) -> bool:
        """Whether the run has finished an epoch."""
        return _record.has_history(self.path)

    def has_started(self) -> bool:
        return _record.has_started(self.path)

    def checkpoints(self) -> dict[str, bool]:
        """{"best": bool, "last": bool}: which checkpoints exist."""
        return _ckpt.checkpoints(self.path)

    def files(self) -> list[Path]:
        """The files a person opens (record, log, history, curves) that exist."""
        return _files.run_files(self.path)

    def curves(self) -> Path | None:
        """plots/curves.png, if it has been drawn."""
        return _curves.curves_path(self.path)

    # ---------------------------------------------------------------- the record
    def record(self) -> dict:
        """metrics.json as a dict; {} if there is none, {"status": "unreadable"} if it
        stays half-written."""
        return _record.read_metrics(self.path)

    def read_record(self) -> dict:
        """metrics.json checked ({} if there is none), or BrokenFile naming what is wrong."""
        return _readers.read_record(self.path)

    def write_record(self, record) -> None:
        """Replace metrics.json (a RunRecord or a dict) atomically."""
        _record.write_metrics(self.path, record)

    def history(self) -> list[dict]:
        """history.csv as a list of rows (floats; epoch an int); [] if there is none yet;
        BrokenFile if a row is not numbers (or the file not text)."""
        return _readers.read_history_rows(self.path)

    def history_frame(self):
        """history.csv as a DataFrame (checked as `history` does), or None if it has no
        row yet."""
        self.history()
        return _record.read_history_frame(self.path)

    def write_history(self, rows: list[dict]) -> None:
        """Replace history.csv with all rows so far, atomically."""
        _record.write_history(self.path, rows)

    def log(self, line: str) -> None:
        """Append one line to train.log."""
        _record.append_log(self.path, line)

    def invocation(self, **entry) -> None:
        """Append one line to invocations.jsonl."""
        _record.append_invocation(self.path, **entry)

    def tracker_ids(self) -> dict[str, str]:
        """Each experiment tracker's run id (trackers.json), so a resume continues it."""
        return _record.read_tracker_ids(self.path)

    def write_tracker_id(self, tracker: str, run_id: str) -> None:
        _record.write_tracker_id(self.path, tracker, run_id)

    def invocations(self) -> list[dict]:
        return _record.read_invocations(self.path)

    def plot_curves(self, rows: list[dict]) -> Path | None:
        """Draw plots/curves.png from the history rows; never raises."""
        return _curves.plot_curves(self.path, rows)

    # ---------------------------------------------------------------- the config
    def config(self):
        """The run's saved config as the typed ``config.Config`` (a key it lacks at its
        default), None if it has none, BrokenFile if it does not parse, is not a mapping of
        config groups, holds an interpolation that does not resolve or a value its type
        does not allow."""
        return _readers.read_run_config(self.path)

    def config_dict(self) -> dict:
        """The saved config as plain dicts (interpolations unresolved); {} if it has none;
        BrokenFile as `config`."""
        return self.original_config()

    def original_config(self) -> dict:
        """The first invocation's composition as a plain dict ({} if none); BrokenFile as
        `config`."""
        if self.config() is None:
            return {}
        return _configs.read_original_config(self.path)

    def overrides(self) -> list[str] | None:
        """The first invocation's command-line overrides (None if it has none); BrokenFile
        if .hydra/overrides.yaml is not a list of them."""
        return _readers.read_overrides(self.path)

    def original_cwd(self) -> Path | None:
        """The working directory of the first invocation (None for a library run)."""
        return _configs.original_cwd(self.path)

    def next_invocation_dir(self) -> str:
        """Where a later invocation's composition goes (relative: invocations/NNN)."""
        return str(_configs.next_invocation_dir(self.path))

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self, which: str, obj: dict) -> None:
        """Write best.pt or last.pt atomically."""
        _ckpt.save_checkpoint(self.checkpoint_file(which), obj)

    def load_checkpoint(self, which: str, map_location="cpu", *, task: str | None = None,
                        shape: dict | None = None) -> dict:
        """A checkpoint's dict, or CheckpointError naming the file; with `task` or `shape`
        it is also checked to be this run's (CheckpointError naming what differs)."""
        path = self.checkpoint_file(which)
        ckpt = _ckpt.load_checkpoint(path, map_location)
        if task is not None or shape is not None:
            _ckpt.check_fits(path, ckpt, task, shape or {})
        return ckpt

    def best_problem(self, want: int, pending: bool, task: str | None,
                     shape: dict) -> str | None:
        """Why best.pt cannot be the model of best epoch `want` (runs.checkpoints
        .best_problem), as one paragraph; None if it can."""
        return _ckpt.best_problem(self.path, want, pending, task, shape)

    def checkpoint_epoch(self, which: str) -> int | None:
        """The epoch a checkpoint was taken after (None if unknown), tensors unread."""
        return _ckpt.checkpoint_epoch(self.path, which)

    # ---------------------------------------------------------------- who writes it
    def lock(self) -> RunLock:
        """The directory's lock (not yet taken: `.acquire()`, then `.announce()`)."""
        return RunLock(self.path)

    def check_lock(self) -> None:
        """LockLost if this process holds the directory but run.lock is no longer the file
        it locked (deleted, or replaced by a copy); nothing if it holds no lock here. The
        trainer asks before each epoch, so a stop leaves the record and files agreeing."""
        held = held_lock(self.path)
        if held is not None:
            held.check()

    def lock_state(self) -> str:
        """"held", "free" or "unknown" (see runs.lock.lock_state)."""
        return lock_state(self.path)

    def status(self, metrics: dict | None = None,
               problem: str | None = None) -> tuple[str, str | None]:
        """(status, reason) as a reader counts the run (crashed, incomplete, ...)."""
        return _status.run_status(self.path, metrics, problem)

    def resume_problem(self, resume_from: str = "last") -> str | None:
        """Why it cannot be resumed from `resume_from`, as one paragraph; None if it can."""
        return _resume.resume_problem(self.path, resume_from)

    def threads_before(self) -> int | None:
        """The torch thread count the run trained on last (None: unknown)."""
        return _resume.threads_before(self.path)

    def continuation(self, threads: int, resume_from: str = "last") -> str | None:
        """How a resume on `threads` threads continues it: None (nothing to continue),
        "exact" or "inexact" (runs.resume.continuation)."""
        return _resume.continuation(self.path, threads, resume_from)

    def write_killed(self, how: str, pid: int) -> bool:
        """Record that its process died without a word; False if another holds it."""
        return _status.write_killed(self.path, how, pid)

    def symlinks(self) -> list[Path]:
        """The paths a run writes inside the directory (files.WRITTEN, and everything below
        invocations/) that are symlinks, dangling ones included. The directory itself may
        be one (e.g. outputs/ linked to a scratch disk): only what is inside counts."""
        found = self.links_among(self.path / name for name in _files.WRITTEN)
        below = self.path / _files.INVOCATION_DIRS
        if below.is_dir() and not below.is_symlink():
            found += sorted(p for p in below.rglob("*") if p.is_symlink())
        return found

    def links_among(self, paths) -> list[Path]:
        """Those of `paths` (inside the directory) that are symlinks or lie below a folder
        of the directory that is one: a write to any of them would land elsewhere."""
        found = []
        for path in paths:
            path = Path(path)
            parts = path.relative_to(self.path).parts
            for depth in range(1, len(parts) + 1):
                step = self.path.joinpath(*parts[:depth])
                if step.is_symlink():
                    if step not in found:
                        found.append(step)
                    break
        return found

    def links_text(self, links: list[Path]) -> str:
        """`links` as a paragraph shows them: "NAME -> TARGET, ..." (five at most)."""
        shown = ", ".join(f"{p.relative_to(self.path)} -> {os.readlink(p)}" for p in links[:5])
        return shown + (f" and {len(links) - 5} more" if len(links) > 5 else "")

    def refuse_symlinks(self, training: bool = False) -> None:
        """SymlinkInside (one paragraph, exit code 2) if a path the run writes inside the
        directory is a symlink: called before anything is written (the claim, before the
        lock; the trainer) and, `training`, before each epoch's writes, so that no write
        goes through one to a file elsewhere."""
        links = self.symlinks()
        if not links:
            return
        if training:
            told = ("so the run stopped before its next writes: its files hold the epochs "
                    "before, and nothing was written through a link")
            again = f"continue with python -m rasp_hydra --resume {self.path}"
        else:
            told, again = "so nothing was written", "run again"
        raise SymlinkInside(
            f"{self.path} holds symlinks where the run writes its own files "
            f"({self.links_text(links)}): a run writes only inside its directory, and "
            "through a link it would change files elsewhere (another run's checkpoints, "
            f"another log), {told}. Replace each link by a copy of what it points to (cp -r "
            f"--remove-destination TARGET LINK) or remove it, then {again}; the directory "
            "itself may be a link.")

    def check_own(self) -> None:
        """Before each epoch's writes: LockLost if this process no longer holds the
        directory (run.lock deleted or replaced), SymlinkInside if a link has appeared where
        the run writes. Either stops the run with its files agreeing with its record."""
        self.check_lock()
        self.refuse_symlinks(training=True)

    def remove_stale_tmp(self) -> list[Path]:
        """Remove the temporary files a killed writer left (the lock holder only)."""
        return _files.remove_stale_tmp(self.path)

    def names(self) -> frozenset[str] | None:
        """The names in the directory now (None if there is no directory): what a claim
        notes before it writes, so that a refusal removes only what it created."""
        try:
            return frozenset(p.name for p in self.path.iterdir())
        except OSError:
            return None

    def remove_refused_traces(self, lock: RunLock | None, before=None) -> None:
        """What a refused invocation created goes: the lock file unless it was there
        `before` (the names the claim found), Hydra's empty train.log (Hydra opens it before
        the claim), then the directory if nothing else is in it. A file with content that
        it did not create is never removed."""
        if lock is not None:
            lock.release()
        if self.lock_file.is_file() and not self.lock_file.is_symlink() and \
                self.lock_file.name not in (before or ()):
            self.lock_file.unlink()
        if self.log_file.is_file() and not self.log_file.is_symlink() and \
                self.log_file.stat().st_size == 0:
            self.log_file.unlink()
        try:
            self.path.rmdir()
        except OSError:  # not empty: it held something before
            pass
