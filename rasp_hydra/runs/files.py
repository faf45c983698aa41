"""The names of a run directory's files and the one safe way to write them.

Every name a reader or a writer uses (``METRICS``, ``BEST``, ...), the atomic write (a
temporary file ``.rasp_hydra-NAME.PID.tmp`` beside the target, then ``os.replace``), the
``WriteError`` paragraph a failed write becomes, and the removal of the temporary files a
killed writer left. This module changes when the layout of a run directory changes.
"""

from __future__ import annotations

import errno
import math
import os
import re
import time
from pathlib import Path

from rasp_hydra.errors import FailedError

METRICS = "metrics.json"
HISTORY = "history.csv"
LOG = "train.log"
HYDRA = Path(".hydra")
CONFIG = HYDRA / "config.yaml"
OVERRIDES = HYDRA / "overrides.yaml"
INVOCATION_DIRS = Path("invocations")
INVOCATIONS = "invocations.jsonl"
LOCK = "run.lock"
BEST = Path("checkpoints") / "best.pt"
LAST = Path("checkpoints") / "last.pt"
CURVES = Path("plots") / "curves.png"
MAPS = "maps"  # the drawer's figures, one folder per sequence
TRACKER_IDS = "trackers.json"  # each tracker's run id, so a resume continues that run
# Everything a run writes inside its directory (invocations/ with all below it): none may
# be a symlink (RunDir.refuse_symlinks), or a write would land outside the directory
WRITTEN = (METRICS, HISTORY, LOG, INVOCATIONS, LOCK, TRACKER_IDS, HYDRA, CONFIG, OVERRIDES,
           HYDRA / "hydra.yaml", INVOCATION_DIRS, BEST.parent, BEST, LAST, CURVES.parent,
           CURVES)


def run_files(run_dir) -> list[Path]:
    """The files of a run a person opens (record, log, history, curves) that exist."""
    run_dir = Path(run_dir)
    return [run_dir / f for f in (METRICS, LOG, HISTORY, CURVES) if (run_dir / f).is_file()]

class WriteError(FailedError):
    """A file of the run directory could not be written (disk full, I/O error, read-only);
    the message names the file, says what was kept and the way on."""

    def __init__(self, errno: int | None, message: str):
        super().__init__(message)
        self.errno = errno

def _write_error(path: Path, err: OSError) -> WriteError:
    run_dir = path.parent.parent if path.parent.name in ("checkpoints", "plots") else path.parent
    fix = ("Replace the link by a copy of what it points to (or remove it)"
           if err.errno == errno.ELOOP else "Free some space (or fix the file system)")
    return WriteError(
        err.errno, f"{path} could not be written ({err.strerror or err}): the write was "
        f"abandoned and its temporary file removed, so every file of {run_dir} holds what it "
        f"held before (metrics.json the last complete record). {fix}, then continue with "
        f"python -m rasp_hydra --resume {run_dir}")

TMP_PREFIX = ".rasp_hydra-"  # every temporary file of the project starts so: a user's
# own `.notes.1.tmp` can never be taken for one


def tmp_path(path) -> Path:
    """The temporary file beside `path` that this process writes before moving it into
    place: ``.rasp_hydra-NAME.PID.tmp`` (a figure is saved to it with an explicit format)."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.tmp")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then os.replace: a reader sees the old file
    or the new one, never a part. A failed write removes its temporary file."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():  # replacing it would silently undo what a person linked
            raise OSError(errno.ELOOP, "it is a symlink, and a run writes no file through "
                          "one", str(path))
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, err) from None


def open_append(path):
    """`path` opened to append text, refused (OSError ELOOP) if it is a symlink: an append
    through a link would add lines to a file outside the run directory."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    return os.fdopen(fd, "a")


TMP_PATTERN = re.compile(r"^" + re.escape(TMP_PREFIX) + r".+\.\d+\.tmp$")  # of tmp_path


def remove_stale_tmp(run_dir) -> list[Path]:
    """Remove the temporary files a killed writer left (only the lock holder calls this):
    only the project's own (`tmp_path`), never another file that ends in .tmp."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / "checkpoints", Path(run_dir) / "plots"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if TMP_PATTERN.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed

def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None  # strict JSON has no NaN/inf
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x

def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
