"""One job of the Hydra app: claim the run directory, check the config, train.

Everything that can be wrong with a config is checked here (`check_job`: the library's own
checks in `rasp_hydra.checks`, the task, the memory estimate of `rasp_hydra.memory`) and
reported as one `ConfigError` paragraph that says what was wrong and what is allowed. A
single run is checked by the `RunDirCheck` callback before Hydra creates its directory, so
a refused config leaves nothing behind; a sweep's jobs are checked each in its own job.

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

from rasp_hydra.checks import (
    check_device,
    check_lang,
    check_max_len,
    check_model_shape,
    check_optimizer,
    check_supervision,
    check_train,
)
from rasp_hydra.config import (
    RESUME_SAFE_KEYS,
    ArchConfig,
    Checkpoint,
    Config,
    ConfigError,
    ModelConfig,
    dotted,
    long_test_lengths,
    longest_sequence,
    resolve_model,
)

log = logging.getLogger("rasp_hydra")


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


def check_config(cfg: Any, task, shape: ModelConfig, cuda_available) -> None:
    """Raise ConfigError for every combination that cannot train; called before any work."""
    check_lang(cfg.lang)
    check_optimizer(cfg.optimizer, cfg.schedule)
    check_train(cfg.train)
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
    if cfg.train.check_memory:
        check_memory(cfg, task, shape, cuda=device == "cuda" or (
            device == "auto" and cuda_available()))


def check_memory(cfg: Any, task, shape: ModelConfig, cuda: bool) -> None:
    """Refuse (ConfigError) a config whose data, model and batch cannot fit (memory.py)."""
    from rasp_hydra import memory

    longest = longest_sequence(cfg.lang, task.bos)
    est = memory.estimate(
        cfg.lang, shape, cfg.train, vocab_size=task.vocab_size, n_out=task.n_out,
        longest=longest, max_len=shape.max_len,
        learned_positions=cfg.model.positions == "learned",
        optimizer=cfg.optimizer.name.value, momentum=cfg.optimizer.momentum)
    memory.check(est, cuda)


_checked: dict[str, tuple] = {}  # a config checked by RunDirCheck -> its (task, shape)


def check_job(cfg: Config) -> tuple[Any, ModelConfig]:
    """Every check of a job's config, in order, before anything is built or written:
    the trackers, the values, the task (a RASP program is loaded, compiled and tried on
    sample inputs), the model shape, and whether it all fits in memory. Returns the task
    and the model shape (`resolve_shape`); raises ConfigError."""
    import torch

    from rasp_hydra import trackers

    key = repr(cfg)
    if key in _checked:  # this process's RunDirCheck checked it a moment ago
        return _checked.pop(key)
    # the real torch (not _lazytorch's stand-in) before a tracker imports torch.utils
    cuda_available = torch.cuda.is_available
    try:  # a chosen tracker that is not installed fails before any data is built
        trackers.from_config(cfg.logger)
    except (trackers.TrackerUnavailable, ValueError) as err:
        raise ConfigError(str(err)) from None
    check_lang(cfg.lang)  # the cheap checks first: a bad seed needs no task
    check_optimizer(cfg.optimizer, cfg.schedule)
    check_train(cfg.train)
    task = resolve_task(cfg.lang)
    shape = resolve_shape(cfg, task)
    check_config(cfg, task, shape, cuda_available)
    return task, shape


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


def run_job(cfg: Any, run_dir: Path, *, threads: int, log=None,
            experiment: str | None = None, trial: int | None = None,
            stop=None, on_epoch_end=None) -> dict:
    """Check `cfg`, build the data, train, and return the run's metrics.json record.

    Plain Python below this point: `cfg` is a Config, or a DictConfig composed with
    `hydra.compose` (a notebook can pass one), turned into a Config first. `experiment`:
    the trackers' experiment name (a sweep's directory; None: "rasp_hydra"). `trial`:
    Optuna's trial number, recorded in metrics.json; `stop` and `on_epoch_end`: as in
    `train` (an Optuna search's pruning).
    """
    import torch

    from rasp_hydra import runs, trackers
    from rasp_hydra.data import build_splits, split_overlap
    from rasp_hydra.rasp.lang import RASPError
    from rasp_hydra.train import train

    cfg = as_config(cfg)
    if trial is None:  # a resumed trial keeps its number
        trial = runs.read_metrics(run_dir).get("trial")
    task, shape = check_job(cfg)
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
    long_test = (lang.long_test_size, *long_test_lengths(
        lang.max_len, lang.long_min_len, lang.long_max_len)) if lang.long_test_size > 0 else None
    try:
        splits = build_splits(
            task, seed=lang.data_seed,
            sizes={"train": lang.train_size, "valid": lang.valid_size, "test": lang.test_size},
            min_len=lang.min_len, max_len=lang.max_len, long_test=long_test)
    except RASPError as err:  # a program that failed on an input its trial did not meet
        raise ConfigError(f"lang.program={lang.program!r} fails on the data: {err}") from None
    if long_test and cfg.model.positions == "learned":
        _warn(run_dir, log, learned_positions_warning(lang.max_len, long_test[1:]))
    cfg.train.num_threads = threads
    meta = {"arch": arch, "num_threads": threads, "overlap_with_train": split_overlap(splits),
            "trial": trial}

    def epoch_end(epoch: int, row: dict) -> None:
        tracking.log_epoch(epoch, row)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    tracking.start(run_dir, trackers.flatten(cfg), run_dir.name, experiment)
    try:
        return train(task, splits, shape, cfg.optimizer, cfg.schedule, cfg.train, run_dir,
                     meta=meta, log=log, on_epoch_end=epoch_end, stop=stop)
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
        shown = "; ".join(f"{k}: {dotted(original, k)!r} -> {dotted(current, k)!r}"
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
        claim.refusal = runs.resume_problem(claim.run_dir,
                                            Checkpoint(root.train.resume_from).value)
    if claim.refusal:
        claim.lock.release()
        return
    claim.lock.announce()
    runs.remove_stale_tmp(claim.run_dir)  # of a writer that was killed mid-write
    claim.subdir = str(runs.next_invocation_dir(claim.run_dir))


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
    """A Hydra callback: what can be refused before Hydra creates or writes anything is
    refused here with one paragraph and exit code 2: a single run's whole config (the job's
    own checks, `check_job`), a run or sweep directory that cannot be created, a launcher
    with no workers. After a sweep it exits 3 when jobs were not run because another
    process held their directories (a sweep relaunched into a running one)."""

    def on_run_start(self, config, **kwargs) -> None:
        global _new_since_start
        _refuse_bad_config(config)
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        _check_creatable(str(config.hydra.run.dir), "hydra.run.dir")
        # the outermost directory that Hydra will create for this run, if any
        missing = [a for a in (run_dir, *run_dir.parents) if not a.exists()]
        _new_since_start = missing[-1] if missing else None

    def on_multirun_start(self, config, **kwargs) -> None:
        _check_launcher(config.hydra.get("launcher"))
        _check_creatable(str(config.hydra.sweep.dir), "hydra.sweep.dir")
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        # where this sweep's jobs (in other processes) note a refusal for a held lock
        os.environ[HELD_ENV] = str(sweep_dir / f".held.{os.getpid()}")

    def on_multirun_end(self, config, **kwargs) -> None:
        held = os.environ.pop(HELD_ENV, None)
        if not held or not os.path.isfile(held):
            return
        dirs = Path(held).read_text().split("\n")[:-1]
        Path(held).unlink(missing_ok=True)
        print(f"error: {len(dirs)} job{'s' if len(dirs) != 1 else ''} of this sweep did not "
              "run, because another process holds their run directories (a sweep relaunched "
              f"into one that is still running?): {', '.join(dirs)}. Nothing of theirs was "
              "changed. Once that process has ended, the same command runs what is left.",
              file=sys.stderr)
        sys.exit(3)


HELD_ENV = "RASP_HYDRA_HELD_FILE"
_new_since_start: Path | None = None  # see RunDirCheck.on_run_start


def _note_held(run_dir: Path) -> None:
    """Tell the sweep's process (RunDirCheck.on_multirun_end) that this job was not run."""
    path = os.environ.get(HELD_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{run_dir}\n")


def _refuse_bad_config(config) -> None:
    """Run a single run's checks on its composed config before Hydra creates the directory."""
    from omegaconf import OmegaConf

    try:
        cfg = as_config(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]))
        _checked.clear()
        _checked[repr(cfg)] = check_job(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _check_launcher(launcher) -> None:
    if launcher is None or "joblib" not in str(launcher.get("_target_", "")):
        return
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None or n_jobs == 0:
        print(f"error: hydra.launcher.n_jobs={n_jobs}: the sweep would have no worker to run "
              "its jobs. Give a number of parallel jobs (1 runs them one after another), "
              "or a negative number as joblib counts it: -1 for one job per core (the "
              "default), -2 for all cores but one.", file=sys.stderr)
        sys.exit(2)

    def on_multirun_end(self, config, **kwargs) -> None:
        # the submitit launcher makes its folder template `.submitit/%j` itself, and
        # leaves it empty beside the real `.submitit/JOB_ID/` folders
        template = Path(str(config.hydra.sweep.dir)) / ".submitit" / "%j"
        if template.is_dir() and not any(template.iterdir()):
            template.rmdir()


def _check_creatable(path: str, key: str) -> None:
    problem = _not_creatable(Path(path).absolute())
    if problem:
        print(f"error: {key}={path} cannot be created: {problem}. Give a directory that "
              "exists and is writable, or one whose nearest existing parent is "
              f"(e.g. {key}=outputs/my_run).", file=sys.stderr)
        sys.exit(2)


def _not_creatable(p: Path) -> str | None:
    """Why directory `p` cannot be created (or written, if it exists); None if it can."""
    import errno
    import tempfile

    def exists(a: Path) -> bool:
        try:
            return a.exists()
        except OSError:  # e.g. a name too long to even look up
            return False

    existing = next(a for a in (p, *p.parents) if exists(a))
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in p.relative_to(existing).parts:
        if len(os.fsencode(part)) > name_max:
            return (f"its part {part[:24]}... is {len(os.fsencode(part))} bytes long, and "
                    f"the file system allows at most {name_max} for one name")
    if existing == p:  # an existing directory (a resume): never touch it here
        return None if os.access(p, os.W_OK | os.X_OK) else f"{p} is not writable"
    try:  # the only sure test (root passes os.access, /proc refuses anyway): make a
        # directory where the run's would go, and remove it at once
        os.rmdir(tempfile.mkdtemp(prefix=".rasp_hydra_probe", dir=existing))
    except OSError as err:
        why = "a read-only file system" if err.errno == errno.EROFS else (
            os.strerror(err.errno) if err.errno else str(err))
        return f"no directory can be created in {existing} ({why})"
    return None


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
    trial = _trial_number()
    if multirun:
        log.info("%sstart %s%s", tag, f"trial {trial}: " if trial is not None else "",
                 " ".join(hc.overrides.task))
    else:
        log.info("run directory: %s", run_dir)
    try:
        threads = cfg.train.num_threads or default_threads(multirun, hc.get("launcher"))
        experiment = str(hc.sweep.dir) if multirun else None
        if multirun and not _in_foreground(hc):  # parallel jobs' bars would collide
            cfg.train.progress = "false"
        result = _run_claimed(cfg, claim, multirun, int(threads), experiment, tag, trial)
        if multirun:
            log.info("%sdone %s: %s", tag, run_dir.name, _outcome(run_dir))
        return result
    finally:
        if claim.lock is not None:
            claim.lock.release()


def _trial_number() -> int | None:
    """Optuna's number of the trial this job is (set by the project's Optuna sweeper)."""
    from rasp_hydra.search import TRIAL_ENV

    number = os.environ.get(TRIAL_ENV, "")
    return int(number) if number.isdigit() else None


def _in_foreground(hc) -> bool:
    """Whether this sweep job runs alone in the terminal's process (the basic launcher)."""
    target = str((hc.get("launcher") or {}).get("_target_", ""))
    return target.endswith("BasicLauncher")


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
    if claim.locked:
        _note_held(claim.run_dir)
    log.error("job not run: %s", claim.refusal)
    return math.nan


def _run_claimed(cfg: Any, claim: Claim, multirun: bool, threads: int,
                 experiment: str | None, tag: str = "", trial: int | None = None) -> float:
    import threading

    from rasp_hydra import runs

    run_dir = claim.run_dir
    kind = "resume" if claim.existing else "start"
    stop, pruning = threading.Event(), None
    try:
        runs.append_invocation(run_dir, event=kind, argv=sys.argv[1:],
                               overrides=claim.overrides, config=claim.subdir)
        if multirun and trial is not None:
            from hydra.core.hydra_config import HydraConfig

            from rasp_hydra.search import TrialPruning

            try:
                pruning = TrialPruning.from_hydra(HydraConfig.get(), stop)
            except Exception as err:  # the study out of reach: train on, unpruned
                log.warning("%spruning off: the Optuna study cannot be opened (%s: %s)",
                            tag, type(err).__name__, err)
        metrics = run_job(cfg, run_dir, threads=threads, experiment=experiment, trial=trial,
                          log=lambda line: log.info("%s%s", tag, line),  # [3/16] epoch 4/20
                          stop=stop if pruning else None, on_epoch_end=pruning)
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
        for parent in run_dir.parents:  # the outputs/runs/DATE/ that Hydra made for it,
            try:  # if nothing else is in it yet
                parent.relative_to(_new_since_start or run_dir)
                parent.rmdir()
            except (ValueError, OSError):
                break
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
