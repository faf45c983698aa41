"""Finding run directories and reading sweep roots: which directories are runs
(``find_runs``), from a sweep root's ``multirun.yaml`` which sweeper ran it, and from the
job list written when it was launched (``jobs.json``) which jobs it runs (``sweep_jobs``,
``sweep_size``). This module changes when Hydra's or Optuna's sweep files change.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from rasp_hydra.runs.configs import load_yaml
from rasp_hydra.runs.files import CONFIG, METRICS, _atomic_write_bytes


def is_run_dir(path) -> bool:
    path = Path(path)
    return (path / CONFIG).is_file() or (path / METRICS).is_file()

def find_runs(root) -> list[Path]:
    """Run directories at or below root: those holding .hydra/config.yaml or metrics.json,
    in natural order (2 before 10). A run directory is not searched further."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        if is_run_dir(dirpath):
            found.append(Path(dirpath))
            dirnames[:] = []
        else:
            dirnames[:] = [n for n in dirnames if not n.startswith(".")]
    return sorted(found, key=_natural_key)

def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


# ---------------------------------------------------------------------------- sweep roots

MULTIRUN = "multirun.yaml"  # Hydra writes it at a sweep's root before the jobs start
OPTUNA_RESULTS = "optimization_results.yaml"
JOBS = "jobs.json"  # a basic sweep's job list, written when it is launched


def read_sweep_config(sweep_root) -> dict | None:
    """The ``hydra`` section of a sweep root's multirun.yaml, or None if it has none."""
    path = Path(sweep_root) / MULTIRUN
    if not path.is_file():
        return None
    try:
        hydra_cfg = (load_yaml(path) or {}).get("hydra", {})
    except Exception:  # a foreign or half-written file: a sweep we know nothing about
        return {}
    return hydra_cfg if isinstance(hydra_cfg, dict) else {}

def sweeper_kind(sweep_root) -> str | None:
    """``"basic"``, ``"optuna"``, ``"other"`` for a Hydra sweep root, None if it is none.

    An Optuna sweeper (the project's, or hydra-optuna-sweeper's) names itself in
    multirun.yaml while it runs and leaves ``optimization_results.yaml`` when it ends.
    """
    sweep_root = Path(sweep_root)
    hydra_cfg = read_sweep_config(sweep_root)
    target = str(((hydra_cfg or {}).get("sweeper") or {}).get("_target_", ""))
    if "optuna" in target.lower() or (sweep_root / OPTUNA_RESULTS).is_file():
        return "optuna"
    if hydra_cfg is None:
        return None
    return "basic" if target.endswith("BasicSweeper") else "other"

def write_sweep_jobs(sweep_root, jobs: list[list[str]]) -> None:
    """Write a basic sweep's job list (each job's overrides, in job-number order) into its
    root, before its jobs start."""
    Path(sweep_root).mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(Path(sweep_root) / JOBS, json.dumps(jobs, indent=1).encode())

def sweep_jobs(sweep_root) -> list[list[str]] | None:
    """Every job's overrides of a basic-sweeper sweep, as written when it was launched;
    None if the sweep wrote no job list (its jobs are not numbered, or another sweeper
    chose them)."""
    path = Path(sweep_root) / JOBS
    if not path.is_file():
        return None
    jobs = json.loads(path.read_text(encoding="utf-8"))
    return [list(map(str, job)) for job in jobs]

def sweep_size(sweep_root) -> int | None:
    """How many jobs a sweep runs: its basic-sweeper jobs or its Optuna trials (None if
    unknown)."""
    try:
        kind = sweeper_kind(sweep_root)
        if kind == "optuna":
            n = ((read_sweep_config(sweep_root) or {}).get("sweeper") or {}).get("n_trials")
            return int(n) if n is not None else None
        if kind != "basic":  # another sweeper's jobs are its own: "[k]"
            return None
        jobs = sweep_jobs(sweep_root)
        return len(jobs) if jobs is not None else None
    except Exception:  # a count for a progress line, never a reason to fail
        return None
