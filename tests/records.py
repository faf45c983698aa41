"""Run directories as the project writes them, for tests that need many without training.

The config is composed from the project's own conf/ by Hydra and saved as Hydra saves it,
so a key the schema does not have cannot appear in a fixture. The metrics record is the
typed ``runs.RunRecord`` that train() and job.py write, built the way they build it.
History, log and curves are written by ``runs``' own writers.
"""

from __future__ import annotations

import functools
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from rasp_hydra import runs
from rasp_hydra.cli.store import register_configs

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@functools.cache
def _composed_yaml(overrides: tuple[str, ...]) -> str:
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return OmegaConf.to_yaml(compose(config_name="config", overrides=list(overrides)))


def compose_config(*overrides: str) -> DictConfig:
    """The job config Hydra composes for these command-line overrides (hydra key left out,
    as in a run directory's saved config)."""
    return OmegaConf.create(_composed_yaml(tuple(overrides)))


def write_config(run_dir: Path, *overrides: str) -> DictConfig:
    """Save the composed config and the overrides into run_dir as Hydra does for a job."""
    cfg = compose_config(*overrides)
    (Path(run_dir) / ".hydra/config.yaml").parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, Path(run_dir) / ".hydra/config.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), Path(run_dir) / ".hydra" / "overrides.yaml")
    return cfg


def _task(cfg: DictConfig):
    from rasp_hydra.tasks import make_task

    lang = cfg.lang
    return make_task(lang.family, lang.size, bool(lang.bos), bool(lang.with_attns))


def _shape(cfg: DictConfig):
    """The model the job trains (job.resolve_shape)."""
    from rasp_hydra.cli.store import to_config as as_config
    from rasp_hydra.job import resolve_shape

    return resolve_shape(as_config(cfg), _task(cfg))


def model_shape(cfg: DictConfig) -> tuple[int, int, int]:
    """(layers, heads, d_model) the job trains: the arch variant's budget, else model.*."""
    shape = _shape(cfg)
    return shape.layers, shape.heads, shape.d_model


def _record(cfg: DictConfig, **fields) -> runs.RunRecord:
    """The RunRecord that train() / job.py would write for this config."""
    from rasp_hydra.cli.store import to_config as as_config

    typed = as_config(cfg)
    task = _task(cfg)
    shape = _shape(cfg)
    return runs.RunRecord.describe(
        task, arch=None if typed.arch is None else typed.arch.name, layers=shape.layers,
        heads=shape.heads, d_model=shape.d_model, ff=shape.ff,
        optimizer=typed.optimizer, schedule=typed.schedule, train=typed.train,
        dropout=cfg.model.dropout, positions=str(cfg.model.positions), num_threads=1,
        **fields)


def train_record(cfg: DictConfig, *, status: str = "completed", reason: str | None = None,
                 error: str | None = None, final: dict | None = None,
                 attention_match: dict | None = None, epochs_run: int = 0,
                 best_epoch: int = 0) -> dict:
    """metrics.json of a job that trained (running, completed, interrupted or failed)."""
    layers, heads, _ = model_shape(cfg)
    return _record(
        cfg, status=status, reason=reason, error=error, final=final or {},
        attention_match=attention_match or {}, epochs_run=epochs_run, best_epoch=best_epoch,
        params=1000 * (layers + 1) * (heads + 1), wall_seconds=10.0, tokens_per_second=1e4,
        device="cpu",
        supervised_heads=[runs.head_key(h) for h in _task(cfg).supervised_heads],
    ).to_dict()


def write_skipped(run_dir: Path, cfg: DictConfig, reason: str) -> dict:
    """A job whose arch variant does not exist, recorded as job.py records it."""
    record = _record(cfg, status="skipped", reason=reason)
    runs.write_metrics(run_dir, record)
    return record.to_dict()


def write_multirun(root: Path, multirun: dict) -> None:
    """A sweep root as a launch leaves it: Hydra's multirun.yaml and, for a basic sweep,
    the job list that RunDirCheck writes at the sweep's start."""
    from rasp_hydra.cli.sweep_jobs import basic_jobs
    from rasp_hydra.runs.sweeps import write_sweep_jobs

    cfg = OmegaConf.create(multirun)
    OmegaConf.save(cfg, Path(root) / "multirun.yaml")
    jobs = basic_jobs(cfg.hydra)
    if jobs is not None:
        write_sweep_jobs(root, jobs)
