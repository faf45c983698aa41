"""One job as Hydra runs it: what is refused before Hydra writes, and the task function.

`RunDirCheck` (a Hydra callback, conf/config.yaml) refuses what can be refused before Hydra
creates or writes anything, with one paragraph and exit code 2: a single run's whole config
(`job.check_job`), a run or sweep directory that cannot be created, a launcher with no
workers; after a sweep it exits 3 when jobs were held by another process. `run_from_hydra`,
the task function, takes the job's claim on its run directory (`claim.CLAIMS`), runs the
plain job (`job.run_job`) and turns its outcome into log lines, the run's invocation
record and the exit code: a single run exits, a sweep's job answers NaN and the sweep goes
on. This module changes when what the command line promises about a job changes.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from rasp_hydra.cli import progress, relaunch, rundir, signals
from rasp_hydra.cli.claim import CLAIMS, Claim, remove_traces
from rasp_hydra.cli.errors import exits
from rasp_hydra.cli.store import to_config
from rasp_hydra.cli.sweep_jobs import write_if_basic
from rasp_hydra.errors import ConfigError, HeldError, Interrupted
from rasp_hydra.job import check_ahead, job_threads, objective, run_job

log = logging.getLogger("rasp_hydra")


class RunDirCheck(Callback):
    """A Hydra callback: what can be refused before Hydra creates or writes anything is
    refused here with one paragraph and exit code 2: a single run's whole config (the job's
    own checks, `check_job`), a run or sweep directory that cannot be created, a launcher
    with no workers. After a sweep it exits 3 when jobs were not run because another
    process held their directories (a sweep relaunched into a running one)."""

    @exits
    def on_run_start(self, config, **kwargs) -> None:
        _refuse_unknown_keys(config)
        rundir.check_path(str(config.hydra.run.dir), "hydra.run.dir")
        rundir.check_own_dir(str(config.hydra.run.dir), "hydra.run.dir",
                             bool(config.train.get("into_nonempty_dir")))
        _refuse_bad_config(config)
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        _check_creatable(str(config.hydra.run.dir), "hydra.run.dir")
        # the outermost directory that Hydra will create for this run, if any
        missing = [a for a in (run_dir, *run_dir.parents) if not a.exists()]
        CLAIMS.new_since_start = missing[-1] if missing else None

    @exits
    def on_multirun_start(self, config, **kwargs) -> None:
        _check_launcher(config.hydra.get("launcher"))
        _refuse_unknown_keys(config)
        rundir.check_path(str(config.hydra.sweep.dir), "hydra.sweep.dir",
                          rundir.SWEEP_RESERVE)
        _check_creatable(str(config.hydra.sweep.dir), "hydra.sweep.dir")
        write_if_basic(config)  # before the sweeper starts its jobs, which read it
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        relaunch.check_same_overrides(sweep_dir, list(config.hydra.overrides.task))
        progress.start_sweep(sweep_dir)
        # where this sweep's jobs (in other processes) note a refusal for a held lock
        os.environ[HELD_ENV] = str(sweep_dir / f".held.{os.getpid()}")

    @exits
    def on_multirun_end(self, config, **kwargs) -> None:
        held = os.environ.pop(HELD_ENV, None)
        if not held or not os.path.isfile(held):
            return
        dirs = Path(held).read_text().split("\n")[:-1]
        Path(held).unlink(missing_ok=True)
        raise HeldError(f"{len(dirs)} job{'s' if len(dirs) != 1 else ''} of this sweep did not "
              "run, because another process holds their run directories (a sweep relaunched "
              f"into one that is still running?): {', '.join(dirs)}. Nothing of theirs was "
              "changed. Once that process has ended, the same command runs what is left.")


HELD_ENV = "RASP_HYDRA_HELD_FILE"


def _note_held(run_dir: Path) -> None:
    """Tell the sweep's process (RunDirCheck.on_multirun_end) that this job was not run."""
    path = os.environ.get(HELD_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{run_dir}\n")


def _refuse_unknown_keys(config, overrides=None) -> None:
    """A key the schema does not hold (`+model.layerz=3`), refused with the close names."""
    from omegaconf import OmegaConf

    from rasp_hydra.cli.keys import refuse_unknown_keys

    values = OmegaConf.to_container(config, resolve=False, enum_to_str=True)
    values.pop("hydra", None)
    if overrides is None:
        overrides = config.hydra.overrides.task
    refuse_unknown_keys(values, [str(o) for o in overrides])


def _refuse_bad_config(config) -> None:
    """Run a single run's checks on its composed config before Hydra creates the directory."""
    from omegaconf import OmegaConf

    check_ahead(to_config(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])))


def _check_launcher(launcher) -> None:
    if launcher is None or "joblib" not in str(launcher.get("_target_", "")):
        return
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None or n_jobs == 0:
        raise ConfigError(f"hydra.launcher.n_jobs={n_jobs}: the sweep would have no worker to run "
              "its jobs. Give a number of parallel jobs (1 runs them one after another), "
              "or a negative number as joblib counts it: -1 for one job per core (the "
              "default), -2 for all cores but one.")


def _check_creatable(path: str, key: str) -> None:
    problem = _not_creatable(Path(path).absolute())
    if problem:
        raise ConfigError(f"{key}={path} cannot be created: {problem}. Give a directory that "
              "exists and is writable, or one whose nearest existing parent is "
              f"(e.g. {key}=outputs/my_run).")


def _not_creatable(p: Path) -> str | None:
    """Why directory `p` cannot be created (or written, if it exists); None if it can."""
    import errno
    import tempfile

    existing = rundir.nearest_existing(p)  # each name fits: rundir.check_path asked
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
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


@exits  # Hydra would log a single run's exception as a failed job, then reraise it
def run_from_hydra(cfg: Any) -> float:
    """The Hydra task function: returns the job's `objective` (for sweepers)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    claim = CLAIMS.take(run_dir)
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
        threads = job_threads(cfg.train.num_threads, multirun, hc.get("launcher"))
        experiment = str(hc.sweep.dir) if multirun else None
        if multirun and not _in_foreground(hc):  # parallel jobs' bars would collide
            cfg.train.progress = "false"
        with signals.armed():
            result = _run_claimed(cfg, claim, multirun, int(threads), experiment, tag, trial)
        if multirun:
            log.info("%s", _done_line(hc, run_dir, trial))
        return result
    finally:
        if claim.lock is not None:
            claim.lock.release()


def _trial_number() -> int | None:
    """Optuna's number of the trial this job is (set by the project's Optuna sweeper)."""
    from rasp_hydra.cli.search import TRIAL_ENV

    number = os.environ.get(TRIAL_ENV, "")
    return int(number) if number.isdigit() else None


def _in_foreground(hc) -> bool:
    """Whether this sweep job runs alone in the terminal's process (the basic launcher)."""
    target = str((hc.get("launcher") or {}).get("_target_", ""))
    return target.endswith("BasicLauncher")


def _progress_tag(hc) -> str:
    """"[job 7] " on every line of job 7, the name of its directory."""
    return progress.job_tag(hc.job.num)


def _done_line(hc, run_dir: Path, trial: int | None) -> str:
    """"[3/8] done job 7: completed, valid acc ..., test acc ...; about 0:01:10 left"."""
    from rasp_hydra import runs

    return progress.done_line(hc.job.num, runs.sweep_size(hc.sweep.dir),
                              progress.outcome(runs.read_metrics(run_dir), trial is not None),
                              trial)


def _refused(claim: Claim, multirun: bool) -> float:
    """Nothing was written; say why, and fail this invocation (a sweep goes on). A
    directory this invocation created (its run.lock, Hydra's empty train.log) goes."""
    if not claim.existing and not claim.locked:
        remove_traces(claim)
    if not multirun:
        raise (HeldError if claim.locked else ConfigError)(claim.refusal)
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
        resumed = {"continuation": claim.continuation} if claim.continuation else {}
        if claim.threads_before is not None:  # accepted with train.inexact_resume=true
            resumed["threads_before"] = claim.threads_before
        runs.append_invocation(run_dir, event=kind, argv=sys.argv[1:],
                               overrides=claim.overrides, config=claim.subdir, threads=threads,
                               **resumed)
        if claim.threads_before is not None:
            note = (f"{tag}inexact continuation: trained on {claim.threads_before} threads "
                    f"before, {threads} now (train.inexact_resume=true); the results may differ "
                    "in their last bits from an uninterrupted run's")
            runs.append_log(run_dir, note)
            log.warning("%s", note)
        if multirun and trial is not None:
            from hydra.core.hydra_config import HydraConfig

            from rasp_hydra.cli.search import TrialPruning

            try:
                pruning = TrialPruning.from_hydra(HydraConfig.get(), stop)
            except Exception as err:  # the study out of reach: train on, unpruned
                log.warning("%spruning off: the Optuna study cannot be opened (%s: %s)",
                            tag, type(err).__name__, err)
        if multirun:  # a swept unknown key (+model.layerz=1,2) reaches only the job
            from hydra.core.hydra_config import HydraConfig as Hc

            _refuse_unknown_keys(cfg, Hc.get().overrides.task)
        metrics = run_job(to_config(cfg), run_dir, threads=threads, experiment=experiment,
                          trial=trial, continuation=claim.continuation,
                          log=lambda line: log.info("%s%s", tag, line),  # [3/16] epoch 4/20
                          stop=stop if pruning else None, on_epoch_end=pruning)
    except ConfigError as err:
        return _config_error(claim, err, multirun)
    except (runs.CheckpointError, runs.WriteError, runs.SymlinkInside) as err:
        # a file that cannot be read or a link where the run writes (exit 2: the user's to
        # fix), or a file that cannot be written (exit 1)
        _best_effort(runs.append_invocation, run_dir, event="end", outcome="failed",
                     error=str(err))
        if multirun:
            log.error("job failed: %s", err)
            return math.nan
        raise  # CheckpointError, SymlinkInside: the user's to fix (2); WriteError: failed (1)
    except Exception as err:
        text = traceback.format_exc()
        log.error("job failed: %s\n%s", err, text)
        _best_effort(runs.append_log, run_dir, f"job failed: {text}")
        _best_effort(runs.append_invocation, run_dir, event="end", outcome="failed",
                     error=f"{type(err).__name__}: {err}")
        if multirun:
            return math.nan  # the sweep goes on; the report counts the failure
        raise
    except signals.Stopped as stop:  # before (or after) the training loop's own handling
        return _stopped(run_dir, stop, multirun)
    except BaseException as err:  # SystemExit, a second Ctrl+C: recorded, then let through
        _best_effort(runs.append_invocation, run_dir, event="end", outcome="interrupted",
                     error=type(err).__name__)
        raise
    runs.append_invocation(run_dir, event="end", outcome=metrics.get("status"),
                           reason=metrics.get("reason"))
    if multirun and metrics.get("status") == "interrupted" and metrics.get("reason") in (
            "SIGINT", "SIGTERM"):  # the signal was the sweep's: it starts no more jobs
        signals.note_sweep_stop(metrics["reason"])
    if not multirun:
        _raise_if_signalled(metrics, run_dir)
    return objective(metrics)


def _stopped(run_dir: Path, stop, multirun: bool) -> float:
    """A signal outside the training loop: the record says `interrupted`, then a single run
    exits 130 or 143 and a sweep's job answers NaN."""
    from rasp_hydra import runs

    with signals.held():
        reason = signals.record_stopped(run_dir, stop)
        _best_effort(runs.append_invocation, run_dir, event="end", outcome="interrupted",
                     reason=reason)
    log.info("interrupted (%s): recorded in %s", reason, run_dir)
    if multirun:
        signals.note_sweep_stop(stop.name)
        return math.nan
    raise Interrupted(f"{reason}: the run stopped and wrote its record as interrupted; "
                      f"continue it with --resume {run_dir}.", signum=stop.signum)


def _raise_if_signalled(metrics: dict, run_dir: Path) -> None:
    """A single run stopped by SIGINT or SIGTERM exits 130 or 143 once its record says
    `interrupted`, so that `python -m rasp_hydra ... && next` stops with it."""
    import signal

    reason = str(metrics.get("reason") or "")
    if metrics.get("status") != "interrupted" or reason not in ("SIGINT", "SIGTERM"):
        return
    raise Interrupted(f"{reason}: the run stopped after its current batch and wrote its "
                      f"record as interrupted; continue it with --resume {run_dir}.",
                      signum=int(getattr(signal, reason)))


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
                parent.relative_to(CLAIMS.new_since_start or run_dir)
                parent.rmdir()
            except (ValueError, OSError):
                break
    else:
        runs.append_log(run_dir, f"config error: {err}")
        runs.write_metrics(run_dir, runs.RunRecord(status="failed", reason="config error",
                                                   error=str(err)))
        runs.append_invocation(run_dir, event="end", outcome="config error", error=str(err))
    if not multirun:
        raise err
    log.error("config error: %s", err)
    return math.nan
