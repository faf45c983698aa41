"""One job of the Hydra app: turn the composed config into plain objects, check it, train.

Everything that can be wrong with a config is checked here, before any data is built,
and reported as one `ConfigError` paragraph that says what was wrong and what is allowed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rasp_hydra.config import ArchName

ARCH_VARIANTS = tuple(a.value for a in ArchName)


def _enum_value(x: Any) -> Any:
    return getattr(x, "value", x)


class ConfigError(ValueError):
    """A config that cannot run; the message is meant for the user as it is."""


@dataclass
class Budget:
    """The model size a job trains, after applying `arch` to the task's RASP budget."""

    layers: int
    heads: int
    d_model: int
    ff: int
    skipped: str | None = None  # why this combination cannot exist, if it cannot


def resolve_task(lang: Any):
    """The task of `lang`, or a ConfigError that names the closest valid choices."""
    from rasp_hydra.tasks import UnknownTaskError, make_task

    try:
        return make_task(lang.family, lang.size, bool(lang.bos), bool(lang.with_attns))
    except UnknownTaskError as err:
        raise ConfigError(str(err)) from None
    except (ValueError, ImportError, AttributeError) as err:
        raise ConfigError(str(err)) from None


def resolve_budget(task, model: Any, arch: Any | None) -> Budget:
    """Layers, heads and widths: from `model`, or relative to the RASP budget under `arch`."""
    d_model = int(model.d_model)
    ff = int(model.ff) if model.ff is not None else 2 * d_model
    if arch is None:
        return Budget(int(model.layers), int(model.heads), d_model, ff)
    L, H = task.predicted_layers, task.predicted_heads
    name = str(_enum_value(arch.name))
    try:
        layers, heads, width = ArchName(name).budget(L, H)
    except ValueError:
        raise ConfigError(f"Unknown arch {name!r}; allowed: {', '.join(ARCH_VARIANTS)}.") from None
    budget = Budget(layers, heads, width * d_model, width * ff)
    if budget.layers < 1 or budget.heads < 1:
        budget.skipped = (
            f"arch={name} on {task.name} (RASP budget {L} layers, {H} heads) would need "
            f"{budget.layers} layers and {budget.heads} heads; a model needs at least one of each."
        )
    return budget


def check_config(cfg: Any, task, budget: Budget, cuda_available) -> None:
    """Raise ConfigError for every combination that cannot train; called before any work."""
    if budget.skipped:
        return
    if budget.d_model % budget.heads:
        raise ConfigError(
            f"model.d_model={budget.d_model} is not divisible by model.heads={budget.heads}: "
            "each head gets d_model / heads dimensions. Choose a d_model that is a multiple "
            "of the number of heads."
        )
    missing = [(l, h) for l, h in task.supervised_heads if l >= budget.layers or h >= budget.heads]
    if missing:
        heads = ", ".join(f"layer {l} head {h}" for l, h in missing)
        raise ConfigError(
            f"{task.name} supervises attention of {heads}, which a model with "
            f"{budget.layers} layers and {budget.heads} heads per layer does not have "
            f"(layers and heads count from 0). Train with at least "
            f"{max(l for l, _ in task.supervised_heads) + 1} layers and "
            f"{max(h for _, h in task.supervised_heads) + 1} heads, or drop the "
            "_with_attns suffix (lang.with_attns=false)."
        )
    lang = cfg.lang
    if not 1 <= lang.min_len <= lang.max_len:
        raise ConfigError(
            f"lang.min_len={lang.min_len} and lang.max_len={lang.max_len}: lengths must "
            "satisfy 1 <= min_len <= max_len."
        )
    longest = lang.max_len
    if lang.long_test_size > 0:
        if not lang.long_min_len <= lang.long_max_len:
            raise ConfigError(
                f"lang.long_min_len={lang.long_min_len} > lang.long_max_len="
                f"{lang.long_max_len}: the longer test split needs min <= max."
            )
        longest = max(longest, lang.long_max_len)
    longest += int(task.bos)
    if cfg.model.max_len is not None and cfg.model.max_len < longest:
        raise ConfigError(
            f"model.max_len={cfg.model.max_len} is shorter than the longest sequence the "
            f"data holds ({longest}, BOS included). Set model.max_len >= {longest}, or null "
            "to size it from the data."
        )
    device = str(_enum_value(cfg.train.device))
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device={device!r} is unknown; allowed: auto, cpu, cuda.")
    if device == "cuda" and not cuda_available():
        raise ConfigError(
            "train.device=cuda, but torch sees no CUDA device on this machine. Use "
            "train.device=cpu, or train.device=auto to take a GPU only when there is one."
        )
    for key in ("epochs", "batch_size"):
        if cfg.train[key] < 1:
            raise ConfigError(f"train.{key}={cfg.train[key]}; it must be at least 1.")


def default_threads(mode_is_multirun: bool, launcher: Any | None) -> int:
    """Cores this job may use, so that parallel jobs times threads never exceeds the cores."""
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


def run_job(cfg: Any, run_dir: Path, *, threads: int, log=None,
            experiment: str | None = None) -> dict:
    """Check `cfg`, build the data, train, and return the run's metrics.json record.

    Plain Python below this point: `cfg` only needs attribute access, so a notebook can
    pass an OmegaConf config composed with `hydra.compose`. `experiment`: the trackers'
    experiment name (a sweep's directory; None: "rasp_hydra").
    """
    import torch

    from rasp_hydra import runs, trackers
    from rasp_hydra.data import build_splits, split_overlap
    from rasp_hydra.model import ModelConfig
    from rasp_hydra.train import OptimizerConfig, ScheduleConfig, TrainConfig, train

    try:  # trackers (issue 14) first: a missing library fails before any data is built
        tracking = trackers.from_config(getattr(cfg, "logger", None))
    except (trackers.TrackerUnavailable, ValueError) as err:
        raise ConfigError(str(err)) from None
    task = resolve_task(cfg.lang)
    budget = resolve_budget(task, cfg.model, cfg.arch)
    arch = None if cfg.arch is None else str(_enum_value(cfg.arch.name))
    meta = {"arch": arch, "num_threads": threads}
    if budget.skipped:
        return runs.write_skipped(
            run_dir, budget.skipped, task=task.name, family=task.family, bos=bool(task.bos),
            with_attns=bool(task.with_attns), arch=arch, layers=budget.layers,
            heads=budget.heads, d_model=budget.d_model, ff=budget.ff,
            lr=float(cfg.optimizer.lr), gamma=float(cfg.schedule.gamma),
            predicted_layers=task.predicted_layers, predicted_heads=task.predicted_heads,
            num_threads=threads)
    check_config(cfg, task, budget, torch.cuda.is_available)

    torch.set_num_threads(threads)
    lang = cfg.lang
    long_test = (lang.long_test_size, lang.long_min_len, lang.long_max_len) \
        if lang.long_test_size > 0 else None
    splits = build_splits(
        task, seed=int(lang.data_seed),
        sizes={"train": lang.train_size, "valid": lang.valid_size, "test": lang.test_size},
        min_len=int(lang.min_len), max_len=int(lang.max_len), long_test=long_test)
    meta["overlap_with_train"] = split_overlap(splits)
    longest = max(int(s.lengths.max()) for s in splits.values() if len(s))
    model_cfg = ModelConfig(
        vocab_size=task.vocab_size, n_out=task.n_out, pad_id=task.pad_id,
        layers=budget.layers, heads=budget.heads, d_model=budget.d_model, ff=budget.ff,
        dropout=float(cfg.model.dropout), positions=str(_enum_value(cfg.model.positions)),
        max_len=int(cfg.model.max_len) if cfg.model.max_len is not None else longest)
    opt_cfg = OptimizerConfig(
        name=str(_enum_value(cfg.optimizer.name)), lr=float(cfg.optimizer.lr),
        momentum=float(cfg.optimizer.momentum), weight_decay=float(cfg.optimizer.weight_decay))
    sched_cfg = ScheduleConfig(name=str(_enum_value(cfg.schedule.name)),
                               gamma=float(cfg.schedule.gamma))
    t = cfg.train
    train_cfg = TrainConfig(
        epochs=int(t.epochs), batch_size=int(t.batch_size), attn_loss_c=float(t.attn_loss_c),
        reset_patience=int(t.reset_patience), perfect_acc_epochs=int(t.perfect_acc_epochs),
        seed=int(t.seed), device=str(_enum_value(t.device)), num_threads=threads,
        resume=bool(t.resume))
    tracking.start(run_dir, trackers.flatten(cfg), run_dir.name, experiment)  # issue 14
    try:
        return train(task, splits, model_cfg, opt_cfg, sched_cfg, train_cfg, run_dir,
                     meta=meta, log=log, on_epoch_end=tracking.log_epoch)
    finally:
        tracking.finish(run_dir)  # issue 14: final metrics and files, even after a failure


def _remove_fresh_dir(run_dir: Path) -> None:
    """Remove a job directory this process just made, if it holds nothing of value."""
    keep = {".hydra", "train.log"}
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= keep:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)


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
        return float("nan")  # metrics.json stores a non-finite loss as null
    return float(acc) if math.isfinite(acc) and math.isfinite(loss) else float("nan")


def run_from_hydra(cfg: Any) -> float:
    """The Hydra task function: returns `objective(metrics)` (for sweepers)."""
    import logging
    import sys
    import traceback

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from rasp_hydra import runs

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    log = logging.getLogger("rasp_hydra")
    threads = cfg.train.num_threads or default_threads(multirun, hc.get("launcher"))
    if not multirun:
        log.info("run directory: %s", run_dir)
    had_run = (run_dir / "metrics.json").exists()
    try:
        metrics = run_job(cfg, run_dir, threads=int(threads), log=log.info,
                          experiment=str(hc.sweep.dir) if multirun else None)
    except ConfigError as err:
        if not multirun:
            if not had_run:
                _remove_fresh_dir(run_dir)
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        log.error("config error: %s", err)
        runs.append_log(run_dir, f"config error: {err}")
        runs.write_metrics(run_dir, {"status": "failed", "reason": "config error",
                                     "error": str(err), "final": {}, "attention_match": {}})
        return float("nan")
    except Exception as err:
        text = traceback.format_exc()
        log.error("job failed: %s\n%s", err, text)
        runs.append_log(run_dir, f"job failed: {text}")
        metrics = runs.read_metrics(run_dir) if (run_dir / "metrics.json").exists() else {}
        if metrics.get("status") != "failed":  # train() records its own failures
            metrics.update(status="failed", reason=type(err).__name__, error=text)
            metrics.setdefault("final", {})
            metrics.setdefault("attention_match", {})
            runs.write_metrics(run_dir, metrics)
        if multirun:
            return float("nan")  # the sweep goes on; the report counts the failure
        raise
    return objective(metrics)
