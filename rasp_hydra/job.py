"""One job, in plain Python: check the config, build the data, train.

Everything that can be wrong with a config is checked here, once per job (`check_job`: the
library's own checks in `rasp_hydra.checks`, the task, the memory estimate of
`rasp_hydra.memory`; `train` is told not to check again) and reported as one `ConfigError`
paragraph that says what was wrong and what is allowed. A single run is checked by the
`hydra_job.RunDirCheck` callback before Hydra creates its directory, so a refused config
leaves nothing behind; a sweep's jobs are checked each in its own job. `run_job` takes a
typed config and a run directory that is already claimed (`rasp_hydra.cli.claim`);
`cli.hydra_job` runs it under Hydra, a notebook can call it directly.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from rasp_hydra.checks import (
    check_device,
    check_lang,
    check_max_len,
    check_model_shape,
    check_optimizer,
    check_precision,
    check_supervision,
    check_train,
)
from rasp_hydra.config import (
    ArchConfig,
    Config,
    ConfigError,
    ModelConfig,
    long_test_lengths,
    longest_sequence,
    resolve_model,
)

log = logging.getLogger("rasp_hydra")


def resolve_task(lang: Any):
    """The task of `lang`, or a ConfigError that names the closest valid choices."""
    from rasp_hydra.tasks import task_of_lang

    try:
        return task_of_lang(lang)
    except (ValueError, ImportError, AttributeError) as err:  # UnknownTaskError is a ValueError
        raise ConfigError(str(err)) from None
    except Exception as err:  # a RASP program that does not load, parse, name, type-check
        from rasp_hydra.rasp import RASPError  # or run on sample inputs

        if not isinstance(err, RASPError):
            raise
        raise ConfigError(f"lang.program={lang.program!r}: {err}") from None


def resolve_shape(cfg: Config, task) -> ModelConfig:
    """The model this job trains (`config.resolve_model` for this task and data)."""
    return resolve_model(cfg.model, cfg.arch, (task.predicted_layers, task.predicted_heads),
                         longest_sequence(cfg.lang, task.bos))


def skip_reason(task, arch: ArchConfig | None, shape: ModelConfig) -> str | None:
    """Why this arch variant cannot exist for `task` (0 layers or heads), if it cannot."""
    if arch is None or (shape.layers >= 1 and shape.heads >= 1):
        return None
    L, H = task.predicted_layers, task.predicted_heads
    return (f"arch={arch.name.value} on {task.name} (RASP budget {L} layers, {H} heads) would "
            f"need {shape.layers} layers and {shape.heads} heads; a model needs at least one "
            "of each.")


def check_values(cfg: Config) -> None:
    """The checks of a config's values that need neither the task nor torch."""
    check_lang(cfg.lang)
    check_optimizer(cfg.optimizer, cfg.schedule)
    check_train(cfg.train)


def check_config(cfg: Config, task, shape: ModelConfig, cuda_available) -> None:
    """Raise ConfigError for every combination that cannot train (`check_values`, then
    `check_for_task`), for a caller that has the task and the shape already."""
    check_values(cfg)
    check_for_task(cfg, task, shape, cuda_available)


def check_for_task(cfg: Config, task, shape: ModelConfig, cuda_available) -> None:
    """The checks that need the task and the model shape: the shape, the supervised heads,
    the positions, the device and precision, and the memory estimate."""
    if skip_reason(task, cfg.arch, shape):
        return
    check_model_shape(shape.layers, shape.heads, shape.d_model, shape.ff,
                      cfg.model.dropout, cfg.model.positions)
    if task.supervised_heads and cfg.train.attn_loss_c > 0:
        check_supervision(task, shape.layers, shape.heads)
    if cfg.model.max_len is not None:
        check_max_len(cfg.model.max_len, longest_sequence(cfg.lang, task.bos))
    device = cfg.train.device  # a Device: a str enum, equal to its value
    if device == "cuda":
        check_device("cuda", cuda_available())
    on_cuda = device == "cuda" or (device == "auto" and cuda_available())
    if cfg.train.precision != "fp32":
        check_precision(cfg.train.precision, "cuda" if on_cuda else "cpu",
                        _capability() if on_cuda else None)
    if cfg.train.check_memory:
        check_memory(cfg, task, shape, cuda=on_cuda)


def _capability() -> tuple[int, int]:
    import torch

    return tuple(torch.cuda.get_device_capability(0))


def check_memory(cfg: Any, task, shape: ModelConfig, cuda: bool) -> None:
    """Refuse (ConfigError) a config whose data, model and batch cannot fit (memory.py)."""
    from rasp_hydra import memory

    memory.check(memory_estimate(cfg, task, shape), cuda)


def memory_estimate(cfg: Any, task, shape: ModelConfig):
    """memory.estimate of this job's data, model and batch (a memory.Estimate)."""
    from rasp_hydra import memory

    return memory.estimate(
        cfg.lang, shape, cfg.train, vocab_size=task.vocab_size, n_out=task.n_out,
        longest=longest_sequence(cfg.lang, task.bos), max_len=shape.max_len,
        learned_positions=cfg.model.positions == "learned",
        optimizer=cfg.optimizer.name.value, momentum=cfg.optimizer.momentum)


# a config checked by RunDirCheck -> its (task, shape). A module dict because Hydra's
# on_run_start callback and the task function it then calls share no object to carry it;
# keyed by the config itself, so a different config is checked afresh.
_checked: dict[str, tuple] = {}


def check_ahead(cfg: Config) -> None:
    """`check_job` before Hydra creates a single run's directory (hydra_job.RunDirCheck);
    `run_job` in this process then takes the answer, not checking twice."""
    _checked.clear()
    _checked[repr(cfg)] = check_job(cfg)


def check_job(cfg: Config) -> tuple[Any, ModelConfig]:
    """Every check of a job's config, in order, before anything is built or written:
    the trackers, the values, the task (a RASP program is loaded, compiled and tried on
    sample inputs), the model shape, and whether it all fits in memory. Returns the task
    and the model shape (`resolve_shape`); raises ConfigError. Each check runs once: `train`
    is then told (checked=True) not to run them again."""
    check_values(cfg)  # the cheap checks first: a bad seed needs no task, nor torch
    import torch

    from rasp_hydra import trackers

    # the real torch (not _lazytorch's stand-in) before a tracker imports torch.utils
    cuda_available = torch.cuda.is_available
    try:  # a chosen tracker that is not installed fails before any data is built
        trackers.from_config(cfg.logger)
    except (trackers.TrackerUnavailable, ValueError) as err:
        raise ConfigError(str(err)) from None
    task = resolve_task(cfg.lang)
    shape = resolve_shape(cfg, task)
    check_for_task(cfg, task, shape, cuda_available)
    return task, shape


def job_threads(num_threads: int | None, mode_is_multirun: bool, launcher: Any | None) -> int:
    """The torch thread count a job trains on: `train.num_threads`, or for null this job's
    share of the cores (`default_threads`). A resume compares this resolved count."""
    return int(num_threads) if num_threads else default_threads(mode_is_multirun, launcher)


def default_threads(mode_is_multirun: bool, launcher: Any | None) -> int:
    """Cores this job may use, so that parallel jobs times threads never exceeds the cores
    (the threads of `train.num_threads=null`; the default is 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    if not mode_is_multirun or launcher is None:
        return cores
    target = str(launcher.get("_target_", ""))
    if "joblib" in target:
        n_jobs = launcher.get("n_jobs", -1)
        if n_jobs is None or n_jobs == 0:
            n_jobs = 1
        workers = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib's -1 = all
        return max(1, cores // workers)
    if "submitit" in target:
        return max(1, min(cores, int(launcher.get("cpus_per_task") or 1)))
    return 1  # an unknown parallel launcher: never oversubscribe


def learned_positions_warning(max_len: int, long_lengths: tuple[int, int]) -> str:
    """Why a longer test split says little with learned positions (a warning, not an error:
    showing that they do not generalize is a fair experiment)."""
    return (f"warning: model.positions=learned with a longer test split (lengths "
            f"{long_lengths[0]}..{long_lengths[1]}, training at most {max_len}): the embeddings "
            "of positions past the training lengths are never trained and keep their random "
            "initial values, so test_long measures those, not what the model learned about "
            "longer inputs. Sinusoidal positions (model.positions=sin) cover any length.")


def _warn(run_dir: Path, log, text: str) -> None:
    from rasp_hydra import runs

    runs.append_log(run_dir, text)
    (log or logging.getLogger("rasp_hydra").warning)(text)


def build_data(task, lang: Any):
    """The splits of `lang` and the longer test split's (size, min_len, max_len), or None;
    a program that fails on the data is a ConfigError."""
    from rasp_hydra.data import build_splits
    from rasp_hydra.rasp.lang import RASPError

    long_test = (lang.long_test_size, *long_test_lengths(
        lang.max_len, lang.long_min_len, lang.long_max_len)) if lang.long_test_size > 0 else None
    try:
        splits = build_splits(
            task, seed=lang.data_seed,
            sizes={"train": lang.train_size, "valid": lang.valid_size, "test": lang.test_size},
            min_len=lang.min_len, max_len=lang.max_len, long_test=long_test)
    except RASPError as err:  # a program that failed on an input its trial did not meet
        raise ConfigError(f"lang.program={lang.program!r} fails on the data: {err}") from None
    return splits, long_test


def run_job(cfg: Config, run_dir: Path, *, threads: int, log=None,
            experiment: str | None = None, trial: int | None = None,
            continuation: str | None = None, stop=None, on_epoch_end=None) -> dict:
    """Check `cfg`, build the data, train, and return the run's metrics.json record.

    Plain Python below this point: `cfg` is the typed Config (a notebook with a config
    composed by `hydra.compose` turns it into one with `rasp_hydra.cli.store.to_config`).
    `experiment`:
    the trackers' experiment name (a sweep's directory; None: "rasp_hydra"). `trial`:
    Optuna's trial number, recorded in metrics.json; `continuation`: how a resume goes on
    ("exact", "inexact": runs.RunDir.continuation), recorded in metrics.json, where an
    inexact one stays so; `stop` and `on_epoch_end`: as in `train` (an Optuna search's
    pruning).
    """
    import torch

    from rasp_hydra import runs, trackers
    from rasp_hydra.data import split_overlap
    from rasp_hydra.train import train

    previous = runs.read_metrics(run_dir)
    if trial is None:  # a resumed trial keeps its number
        trial = previous.get("trial")
    if continuation == "exact" and previous.get("continuation") == "inexact":
        continuation = "inexact"  # the run's numbers came through an inexact resume
    # this process's RunDirCheck checked this config a moment ago: its answer, else check
    task, shape = _checked.pop(repr(cfg), None) or check_job(cfg)
    tracking = trackers.from_config(cfg.logger)
    arch = None if cfg.arch is None else cfg.arch.name.value
    skipped = skip_reason(task, cfg.arch, shape)
    if skipped:
        record = runs.RunRecord.describe(
            task, arch=arch, layers=shape.layers, heads=shape.heads, d_model=shape.d_model,
            ff=shape.ff, optimizer=cfg.optimizer, schedule=cfg.schedule, train=cfg.train,
            num_threads=threads, status="skipped", reason=skipped, trial=trial)
        runs.write_metrics(run_dir, record)
        return record.to_dict()

    torch.set_num_threads(threads)
    lang = cfg.lang
    splits, long_test = build_data(task, lang)
    if long_test and cfg.model.positions == "learned":
        _warn(run_dir, log, learned_positions_warning(lang.max_len, long_test[1:]))
    cfg.train.num_threads = threads
    meta = {"arch": arch, "num_threads": threads, "overlap_with_train": split_overlap(splits),
            "trial": trial, "continuation": continuation}

    def epoch_end(epoch: int, row: dict) -> None:
        tracking.log_epoch(epoch, row)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    name, tags = trackers.identity(task.name, arch or f"{shape.layers}L{shape.heads}H",
                                   cfg.train.seed, cfg.optimizer.lr, cfg.schedule.gamma,
                                   experiment)
    tracking.start(run_dir, trackers.config_params(cfg), name, experiment, tags)
    try:
        return train(task, splits, shape, cfg.optimizer, cfg.schedule, cfg.train, run_dir,
                     meta=meta, log=log, on_epoch_end=epoch_end, stop=stop, checked=True)
    finally:
        tracking.finish(run_dir)  # final metrics and files, even after a failure


def objective(metrics: dict) -> float:
    """What a sweeper maximizes: the final validation token accuracy of a completed run;
    NaN for a skipped, failed, interrupted or diverged one, which Optuna records as a
    failed trial (and goes on). The test split is kept for the table, never tuned on.

    >>> objective({"status": "completed", "final": {"valid": {"token_acc": 0.5, "loss": 1.0}}})
    0.5
    >>> objective({"status": "completed", "final": {"valid": {"token_acc": 0.1, "loss": None}}})
    nan
    """
    valid = (metrics.get("final") or {}).get("valid") or {}
    acc, loss = valid.get("token_acc"), valid.get("loss")
    if metrics.get("status") != "completed" or acc is None or loss is None:
        return math.nan  # metrics.json stores a non-finite loss as null
    return float(acc) if math.isfinite(acc) and math.isfinite(loss) else math.nan
