"""Run and sweep directories that cannot be what they are asked to be, refused before Hydra
creates or writes anything: an empty path (an unset shell variable would make the working
directory the run directory), a dangling symlink, a path longer than the system allows,
and, for a run, a directory that already holds something other than a run of its own
(unless `train.into_nonempty_dir=true` asks for it)."""

from __future__ import annotations

import os
from pathlib import Path

from rasp_hydra.errors import ConfigError

# what a run (or a refused one) leaves in its own directory; anything else is someone else's
OWN_NAMES = {".hydra", "run.lock", "train.log"}
# bytes of the path limit a run's directory leaves for its files: the longest path a run
# writes below it (checkpoints/.rasp_hydra-best.pt.PID.tmp, invocations/NNN/.hydra/
# overrides.yaml, a tracker's files) with room (tests/test_refused_keys_and_dirs.py checks)
INSIDE_RESERVE = 128
# and a sweep's for its jobs' directories (hydra.sweep.subdir, the job's number) as well
SWEEP_RESERVE = INSIDE_RESERVE + 32


def check_path(path: str, key: str, reserve: int = INSIDE_RESERVE) -> None:
    """Refuse an empty, dangling or over-long directory path (or one with a name too long
    for its file system), leaving `reserve` bytes of the path limit for what is below it."""
    if not path.strip():
        raise ConfigError(
            f"{key} is empty ({key}={path!r}, e.g. an unset shell variable): the run would "
            "write into the current working directory. Give the directory to write, e.g. "
            f"{key}=outputs/my_run, or leave {key} out for a new one under outputs/.")
    absolute = Path(path).absolute()
    try:
        path_max = os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError):
        path_max = 4096
    size = len(os.fsencode(str(absolute)))
    if size >= path_max:
        raise ConfigError(
            f"{key} is {size} bytes long as an absolute path ({str(absolute)[:48]}...), and "
            f"the system allows at most {path_max - 1}. Give a shorter directory.")
    if size + reserve >= path_max:  # its files would pass the limit partway through
        raise ConfigError(
            f"{key} is {size} bytes long as an absolute path ({str(absolute)[:48]}...): the "
            f"system allows at most {path_max - 1} for a file's path, and the run's own "
            f"files below it take up to {reserve} more (checkpoints/, invocations/NNN/.hydra/, "
            "their temporary files), so some could not be written. Give a directory at "
            f"most {path_max - 1 - reserve} bytes long.")
    _check_names(absolute, key)
    for part in (absolute, *absolute.parents):
        if os.path.islink(part) and not part.exists():
            raise ConfigError(
                f"{key}={path}: {part} is a symlink to {os.readlink(part)}, which does not "
                "exist, so the run's directory cannot be made there. Point the link at an "
                "existing directory, remove it, or give another directory.")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long to even look up
        return False


def nearest_existing(path: Path) -> Path:
    """`path` or the nearest of its parents that exists."""
    return next(a for a in (path, *path.parents) if _exists(a))


def _check_names(absolute: Path, key: str) -> None:
    """Refuse a part of the path longer than its file system allows for one name: every
    later look-up of the path would fail with ENAMETOOLONG."""
    existing = nearest_existing(absolute)
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in absolute.relative_to(existing).parts:
        if len(os.fsencode(part)) > name_max:
            raise ConfigError(
                f"{key}={absolute} cannot be created: its part {part[:24]}... is "
                f"{len(os.fsencode(part))} bytes "
                f"long, and the file system allows at most {name_max} for one name. Give a "
                "directory whose every name is shorter.")


def check_own_dir(path: str, key: str, allowed: bool) -> None:
    """Refuse a run directory that holds files that are not a run's (unless `allowed`)."""
    from rasp_hydra import runs

    run_dir = Path(path).absolute()
    if allowed or not run_dir.is_dir() or runs.RunDir(run_dir).is_run():
        return
    foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in OWN_NAMES)
    if not foreign:
        return
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5
                                      else "")
    raise ConfigError(
        f"{key}={path} already holds files that are not a run's ({shown}), so nothing was "
        "written: a run's files (.hydra/, checkpoints/, metrics.json, ...) would land among "
        "them. Give a new or empty directory, --resume a run's own directory, or add "
        "train.into_nonempty_dir=true to write there anyway.")
