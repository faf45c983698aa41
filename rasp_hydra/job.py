"""One job of the Hydra app: claim the run directory, check the config, train.

Everything that can be wrong with a config is checked here, before any data is built,
by the library's own checks (`rasp_hydra.config`), and reported as one `ConfigError`
paragraph that says what was wrong and what is allowed.

The run directory is claimed before Hydra writes anything into it: `hydra.output_subdir`
(conf/config.yaml) is resolved by `claim_run_dir`, which takes the directory's lock,
compares the config with the run's own if the directory already holds one, and tells Hydra
where to save this invocation's composition: `.hydra/` for the first, `invocations/NNN/`
for every later one, nowhere when the claim is refused (the directory is left untouched).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from rasp_hydra.config import (
    RESUME_SAFE_KEYS,
    ArchName,
    Config,
    ConfigError,
    check_device,
    check_lang,
    check_max_len,
    check_model_shape,
    check_optimizer,
    check_supervision,
    check_train,
    longest_sequence,
    value,
)

log = logging.getLogger("rasp_hydra")


@dataclass
class Budget:
    """The model size a job trains, after applying `arch` to the task's RASP budget."""

    layers: int
    heads: int
    d_model: int
    ff: int
    skipped: str | None = None  # why this combination cannot exist, if it cannot


def as_config(cfg: Any) -> Config:
    """The typed Config of a composed DictConfig (or the Config itself)."""
    if isinstance(cfg, Config):
        return cfg
    from omegaconf import OmegaConf

    if OmegaConf.get_type(cfg) is not Config:  # e.g. a run's saved config.yaml
        cfg = OmegaConf.merge(OmegaConf.structured(Config), cfg)
    return OmegaConf.to_object(cfg)


def resolve_task(lang: Any):
    """The task of `lang`, or a ConfigError that names the closest valid choices."""
    from rasp_hydra.tasks import task_of_lang

    try:
        return task_of_lang(lang)
    except (ValueError, ImportError, AttributeError) as err:  # UnknownTaskError is a ValueError
        raise ConfigError(str(err)) from None
    except Exception as err:  # a RASP program that does not parse, name or type-check
        from rasp_hydra.rasp import RASPError
        from rasp_hydra.rasp.parse import RaspSyntaxError

        if not isinstance(err, (RASPError, RaspSyntaxError)):
            raise
        raise ConfigError(f"lang.program={lang.program!r}: {err}") from None


def resolve_budget(task, model: Any, arch: Any | None) -> Budget:
    """Layers, heads and widths: from `model`, or relative to the RASP budget under `arch`."""
    d_model = int(model.d_model)
    ff = int(model.ff) if model.ff is not None else 2 * d_model
    if arch is None:
        return Budget(int(model.layers), int(model.heads), d_model, ff)
    L, H = task.predicted_layers, task.predicted_heads
    layers, heads, width = ArchName(value(arch.name)).budget(L, H)
    budget = Budget(layers, heads, width * d_model, width * ff)
    if budget.layers < 1 or budget.heads < 1:
        budget.skipped = (
            f"arch={value(arch.name)} on {task.name} (RASP budget {L} layers, {H} heads) would "
            f"need {budget.layers} layers and {budget.heads} heads; a model needs at least one "
            "of each.")
    return budget


def check_config(cfg: Any, task, budget: Budget, cuda_available) -> None:
    """Raise ConfigError for every combination that cannot train; called before any work."""
    check_lang(cfg.lang)
    check_optimizer(cfg.optimizer, cfg.schedule)
    check_train(cfg.train)
    if budget.skipped:
        return
    check_model_shape(budget.layers, budget.heads, budget.d_model, budget.ff,
                      cfg.model.dropout, cfg.model.positions)
    if task.supervised_heads and cfg.train.attn_loss_c > 0:
        check_supervision(task, budget.layers, budget.heads)
    if cfg.model.max_len is not None:
        check_max_len(cfg.model.max_len, longest_sequence(cfg.lang, task.bos))
    if value(cfg.train.device) == "cuda":
        check_device("cuda", cuda_available())


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

    Plain Python below this point: `cfg` is a Config, or a DictConfig composed with
    `hydra.compose` (a notebook can pass one), turned into a Config first. `experiment`:
    the trackers' experiment name (a sweep's directory; None: "rasp_hydra").
    """
    import torch

    from rasp_hydra import runs, trackers
    from rasp_hydra.data import build_splits, split_overlap
    from rasp_hydra.model import ModelConfig
    from rasp_hydra.train import train

    cfg = as_config(cfg)
    try:  # a chosen tracker that is not installed fails before any data is built
        tracking = trackers.from_config(cfg.logger)
    except (trackers.TrackerUnavailable, ValueError) as err:
        raise ConfigError(str(err)) from None
    task = resolve_task(cfg.lang)
    budget = resolve_budget(task, cfg.model, cfg.arch)
    arch = None if cfg.arch is None else value(cfg.arch.name)
    check_config(cfg, task, budget, torch.cuda.is_available)
    if budget.skipped:
        record = runs.RunRecord.describe(
            task, arch=arch, layers=budget.layers, heads=budget.heads, d_model=budget.d_model,
            ff=budget.ff, optimizer=cfg.optimizer, schedule=cfg.schedule, train=cfg.train,
            num_threads=threads, status="skipped", reason=budget.skipped)
        runs.write_metrics(run_dir, record)
        return record.to_dict()

    torch.set_num_threads(threads)
    lang = cfg.lang
    long_test = (lang.long_test_size, lang.long_min_len, lang.long_max_len) \
        if lang.long_test_size > 0 else None
    splits = build_splits(
        task, seed=lang.data_seed,
        sizes={"train": lang.train_size, "valid": lang.valid_size, "test": lang.test_size},
        min_len=lang.min_len, max_len=lang.max_len, long_test=long_test)
    model_cfg = ModelConfig(
        vocab_size=task.vocab_size, n_out=task.n_out, pad_id=task.pad_id,
        layers=budget.layers, heads=budget.heads, d_model=budget.d_model, ff=budget.ff,
        dropout=cfg.model.dropout, positions=value(cfg.model.positions),
        max_len=cfg.model.max_len or longest_sequence(lang, task.bos))
    cfg.train.num_threads = threads
    meta = {"arch": arch, "num_threads": threads, "overlap_with_train": split_overlap(splits)}
    tracking.start(run_dir, trackers.flatten(cfg), run_dir.name, experiment)
    try:
        return train(task, splits, model_cfg, cfg.optimizer, cfg.schedule, cfg.train, run_dir,
                     meta=meta, log=log, on_epoch_end=tracking.log_epoch)
    finally:
        tracking.finish(run_dir)  # final metrics and files, even after a failure


# -------------------------------------------------------------------- claiming a run dir

@dataclass
class Claim:
    """This process's hold on one run directory, from Hydra's first look until the job ends."""

    run_dir: Path
    subdir: str | None = None  # where Hydra saves this invocation's composition
    lock: Any = None
    refusal: str | None = None  # why this invocation may not touch the directory
    locked: bool = False
    existing: bool = False  # the directory held a run before this invocation
    overrides: list = field(default_factory=list)


_claims: dict[str, Claim] = {}
MIN_FREE_BYTES = 1 << 20  # a claim refuses a file system with less free space than this


def claim_run_dir(output_dir: str, *, _root_) -> str | None:
    """The `hydra.output_subdir` resolver: claim `output_dir` before Hydra writes into it.

    Never raises (an exception here would surface as an interpolation error): the
    outcome is kept for `run_from_hydra`, which reports it. Hydra resolves the key twice,
    so the first answer is remembered.
    """
    if output_dir in _claims:
        return _claims[output_dir].subdir
    claim = _claims[output_dir] = Claim(Path(output_dir))
    try:
        _claim(claim, _root_)
    except OSError as err:  # a full disk or a read-only file system: leave nothing behind
        claim.refusal = (f"{output_dir} cannot be written ({err.strerror or err}), so nothing "
                         "was written there. Free some space (or give a writable hydra.run.dir"
                         "), then run again.")
        claim.subdir = None
    except Exception as err:  # pragma: no cover - reported by the job
        claim.refusal = f"could not claim {output_dir}: {type(err).__name__}: {err}"
        claim.subdir = None
    return claim.subdir


def _claim(claim: Claim, root) -> None:
    from omegaconf import OmegaConf

    from rasp_hydra import runs

    try:
        claim.lock = runs.RunLock(claim.run_dir).acquire()
    except runs.RunLocked as err:
        claim.refusal, claim.locked = str(err), True
        return
    claim.overrides = list(OmegaConf.to_container(root.hydra.overrides.task))
    original = runs.read_original_config(claim.run_dir)
    claim.existing = bool(original) or runs.has_run(claim.run_dir)
    free = shutil.disk_usage(claim.run_dir).free
    if free < MIN_FREE_BYTES:  # Hydra's own writes would fail next, with a traceback
        raise OSError(errno.ENOSPC, f"{free} bytes free, less than {MIN_FREE_BYTES} needed")
    if not claim.existing:
        claim.lock.announce()
        claim.subdir = str(runs.HYDRA)
        return
    current = OmegaConf.to_container(root, resolve=False, enum_to_str=True)
    current.pop("hydra", None)
    differ = runs.config_differences(original, current, RESUME_SAFE_KEYS)
    if differ:
        shown = "; ".join(f"{k}: {_dotted(original, k)!r} -> {_dotted(current, k)!r}"
                          for k in differ)
        claim.refusal = (
            f"{claim.run_dir} already holds a run whose config differs from this one in "
            f"{shown}. A run directory keeps one config for its whole history, so nothing was "
            "written. To train with the new values, start a new run (leave out hydra.run.dir "
            f"or --resume); to continue this run, use --resume {claim.run_dir} without those "
            f"overrides. On resume only these may change: {', '.join(RESUME_SAFE_KEYS)}.")
    elif not root.train.resume and runs.has_run(claim.run_dir):
        claim.refusal = (
            f"{claim.run_dir} already holds a run and train.resume=false would train it again "
            "from scratch over its checkpoints, so nothing was written. Start a new run "
            "directory, or continue this one with --resume.")
    elif root.train.resume:  # never train finished epochs again from nothing
        claim.refusal = runs.resume_problem(claim.run_dir, str(value(root.train.resume_from)))
    if claim.refusal:
        claim.lock.release()
        return
    claim.lock.announce()
    runs.remove_stale_tmp(claim.run_dir)  # of a writer that was killed mid-write
    claim.subdir = str(runs.next_invocation_dir(claim.run_dir))


def _dotted(d: dict, key: str):
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def take_claim(run_dir: Path) -> Claim:
    """The claim the resolver made for run_dir, or one made now (a user who set
    hydra.output_subdir themselves, or a launcher that never resolved it)."""
    from rasp_hydra import runs

    claim = _claims.pop(str(run_dir), None)
    if claim is None:
        claim = Claim(run_dir, existing=runs.has_run(run_dir))
        try:
            claim.lock = runs.RunLock(run_dir).acquire().announce()
        except runs.RunLocked as err:
            claim.refusal, claim.locked = str(err), True
    return claim


class RunDirCheck(Callback):
    """A Hydra callback: a run or sweep directory that cannot be created is one paragraph
    and exit code 2, before Hydra tries (and prints a traceback)."""

    def on_run_start(self, config, **kwargs) -> None:
        _check_creatable(str(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config, **kwargs) -> None:
        _check_creatable(str(config.hydra.sweep.dir), "hydra.sweep.dir")


def _check_creatable(path: str, key: str) -> None:
    p = Path(path).absolute()
    existing = next(a for a in (p, *p.parents) if a.exists())
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is a file, not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable by this user"
    if problem:
        print(f"error: {key}={path} cannot be created: {problem}. Give a directory that "
              "exists and is writable, or one whose nearest existing parent is "
              f"(e.g. {key}=outputs/my_run).", file=sys.stderr)
        sys.exit(2)


# ------------------------------------------------------------------------------ the job

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


def run_from_hydra(cfg: Any) -> float:
    """The Hydra task function: returns the job's `objective` (for sweepers)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    claim = take_claim(run_dir)
    if claim.refusal:
        return _refused(claim, multirun)  # before any line: a refused job shows nothing else
    tag = _progress_tag(hc) if multirun else ""
    if multirun:
        log.info("%sstart %s", tag, " ".join(hc.overrides.task))
    else:
        log.info("run directory: %s", run_dir)
    try:
        threads = cfg.train.num_threads or default_threads(multirun, hc.get("launcher"))
        experiment = str(hc.sweep.dir) if multirun else None
        result = _run_claimed(cfg, claim, multirun, int(threads), experiment)
        if multirun:
            log.info("%sdone %s: %s", tag, run_dir.name, _outcome(run_dir))
        return result
    finally:
        if claim.lock is not None:
            claim.lock.release()


def _progress_tag(hc) -> str:
    """"[7/32] " for job 7 (counting from 1) of a 32-job sweep; "[7] " if the size is unknown."""
    from rasp_hydra import runs

    total = runs.sweep_size(hc.sweep.dir)
    return f"[{hc.job.num + 1}/{total}] " if total else f"[{hc.job.num + 1}] "


def _outcome(run_dir: Path) -> str:
    from rasp_hydra import runs

    m = runs.read_metrics(run_dir)
    test = (m.get("final") or {}).get("test") or {}
    acc = f", test acc {test['token_acc']:.4f}" if "token_acc" in test else ""
    return f"{m.get('status', 'no record')}{acc}, {m.get('wall_seconds') or 0:.0f}s"


def _remove_traces(claim: Claim) -> None:
    """A refused new run leaves nothing: its empty lock and Hydra's empty train.log go, then
    the directory if nothing else is in it (never a file someone else put there)."""
    if claim.lock is not None:
        claim.lock.release()
    for name in ("run.lock", "train.log"):
        path = claim.run_dir / name
        if path.is_file() and (name == "run.lock" or path.stat().st_size == 0):
            path.unlink()
    try:
        claim.run_dir.rmdir()
    except OSError:  # not empty: it held something before
        pass


def _refused(claim: Claim, multirun: bool) -> float:
    """Nothing was written; say why, and fail this invocation (a sweep goes on)."""
    if not multirun:
        if not claim.existing and not claim.locked:
            _remove_traces(claim)
        print(f"error: {claim.refusal}", file=sys.stderr)
        sys.exit(3 if claim.locked else 2)
    log.error("job not run: %s", claim.refusal)
    return math.nan


def _run_claimed(cfg: Any, claim: Claim, multirun: bool, threads: int,
                 experiment: str | None) -> float:
    from rasp_hydra import runs

    run_dir = claim.run_dir
    kind = "resume" if claim.existing else "start"
    try:
        runs.append_invocation(run_dir, event=kind, argv=sys.argv[1:],
                               overrides=claim.overrides, config=claim.subdir)
        metrics = run_job(cfg, run_dir, threads=threads, log=log.info, experiment=experiment)
    except ConfigError as err:
        return _config_error(claim, err, multirun)
    except (runs.CheckpointError, runs.WriteError) as err:
        # a file that cannot be read (exit 2: the user's to fix) or written (exit 1)
        _best_effort(runs.append_invocation, run_dir, event="end", outcome="failed",
                     error=str(err))
        if multirun:
            log.error("job failed: %s", err)
            return math.nan
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2 if isinstance(err, runs.CheckpointError) else 1)
    except Exception as err:
        text = traceback.format_exc()
        log.error("job failed: %s\n%s", err, text)
        _best_effort(runs.append_log, run_dir, f"job failed: {text}")
        _best_effort(runs.append_invocation, run_dir, event="end", outcome="failed",
                     error=f"{type(err).__name__}: {err}")
        if multirun:
            return math.nan  # the sweep goes on; the report counts the failure
        raise
    except BaseException as err:  # SystemExit, a second Ctrl+C: recorded, then let through
        _best_effort(runs.append_invocation, run_dir, event="end", outcome="interrupted",
                     error=type(err).__name__)
        raise
    runs.append_invocation(run_dir, event="end", outcome=metrics.get("status"),
                           reason=metrics.get("reason"))
    return objective(metrics)


def _best_effort(write, *args, **kwargs) -> None:
    """A write to the run directory while reporting another failure: that failure matters
    more (and a full disk would only fail again)."""
    try:
        write(*args, **kwargs)
    except Exception as err:
        log.error("could not record it in the run directory: %s", err)


def _config_error(claim: Claim, err: ConfigError, multirun: bool) -> float:
    """A config that cannot train: a fresh directory is removed (single run) or records
    the failure (sweep); a directory that held a run keeps its record as it was."""
    from rasp_hydra import runs

    run_dir = claim.run_dir
    if claim.existing:
        runs.append_invocation(run_dir, event="end", outcome="config error", error=str(err))
    elif not multirun:
        claim.lock.release()
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        runs.append_log(run_dir, f"config error: {err}")
        runs.write_metrics(run_dir, runs.RunRecord(status="failed", reason="config error",
                                                   error=str(err)))
        runs.append_invocation(run_dir, event="end", outcome="config error", error=str(err))
    if not multirun:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    log.error("config error: %s", err)
    return math.nan
