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


def check_path(path: str, key: str) -> None:
    """Refuse an empty, dangling or over-long directory path."""
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
    if len(os.fsencode(str(absolute))) >= path_max:
        raise ConfigError(
            f"{key} is {len(os.fsencode(str(absolute)))} bytes long as an absolute path "
            f"({str(absolute)[:48]}...), and the system allows at most {path_max - 1}. Give "
            "a shorter directory.")
    for part in (absolute, *absolute.parents):
        if os.path.islink(part) and not part.exists():
            raise ConfigError(
                f"{key}={path}: {part} is a symlink to {os.readlink(part)}, which does not "
                "exist, so the run's directory cannot be made there. Point the link at an "
                "existing directory, remove it, or give another directory.")


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
