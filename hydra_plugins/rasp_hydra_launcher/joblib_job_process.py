"""`hydra.launcher._target_` of conf/config.yaml: Hydra's joblib launcher with every job in
a process of its own, so that a job killed by a signal (kill -9, the out-of-memory killer)
ends only that job, never the sweep.

A loky worker forks the job and waits for it (with `n_jobs=1` joblib runs the jobs in
the sweep's own process, one after another, and nothing is forked). A job process that
dies without an answer is recorded as `failed`, with the signal, in its run directory
(metrics.json, train.log, invocations.jsonl) and in the sweep's output, and the sweep goes
on. `SweepSummary` (a Hydra callback) ends a sweep in which some job did not complete with
one line that counts them and exit code 1; the same command with `hydra.sweep.dir=SWEEP`
finishes what is left.

Hydra imports every module under `hydra_plugins` at startup: this one imports only Hydra
at the top.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

from rasp_hydra.cli.errors import exits
from rasp_hydra.errors import FailedError

log = logging.getLogger("rasp_hydra")
SWEEP_PID = "RASP_HYDRA_SWEEP_PID"  # the sweep's own process, where no job is forked


class JobProcessLauncher(JoblibLauncher):
    """The joblib launcher (same options: n_jobs, ...), each job in a child process."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        from hydra.core.utils import JobReturn, JobStatus
        from hydra_plugins.hydra_joblib_launcher import _core
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        # _core.launch hands `_core.execute_job` to joblib; hand it ours instead
        original, _core.execute_job = _core.execute_job, execute_job_in_child
        _core.hydra_execute_job = original  # for execute_job_in_child in this process
        os.environ[SWEEP_PID] = str(os.getpid())  # inherited by the workers
        try:
            return _core.launch(self, job_overrides, initial_job_idx)
        except TerminatedWorkerError as err:  # a worker itself was killed, not a job
            log.error("a joblib worker process died (%s): its job and the others running "
                      "end interrupted, and the jobs not started yet are left for a relaunch",
                      str(err).splitlines()[0])
            return [JobReturn(overrides=list(o), status=JobStatus.COMPLETED,
                              _return_value=math.nan) for o in job_overrides]
        finally:
            _core.execute_job = original


def execute_job_in_child(idx: int, overrides: Sequence[str], hydra_context, config,
                         task_function, singleton_state: dict):
    """Run Hydra's `execute_job` in a forked child of this worker and return its JobReturn;
    a child killed by a signal becomes a failed job with a NaN return value."""
    from hydra_plugins.hydra_joblib_launcher import _core
    from joblib.externals.loky.backend.reduction import dumps  # as loky sends results

    # Hydra's own: in the sweep's process _core.execute_job is this function for now
    execute_job = getattr(_core, "hydra_execute_job", _core.execute_job)
    args = (idx, overrides, hydra_context, config, task_function, singleton_state)
    if os.environ.get(SWEEP_PID) == str(os.getpid()):  # n_jobs=1: joblib runs it right here
        return execute_job(*args)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the job; it never returns into the worker's code it was forked from
        try:
            os.close(read_fd)
            _die_with_parent()
            try:
                answer = dumps(("ok", execute_job(*args)))
            except BaseException as err:  # noqa: BLE001 - the worker re-raises it
                answer = dumps(("raised", err))
            with os.fdopen(write_fd, "wb") as f:
                f.write(answer)  # BrokenPipeError if the worker died: nobody to tell
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    os.close(write_fd)
    # Ctrl+C reaches the job itself, which stops after its batch and answers
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with os.fdopen(read_fd, "rb") as f:
            answer = f.read()
        _, status = os.waitpid(pid, 0)
    finally:
        signal.signal(signal.SIGINT, old)
    code = os.waitstatus_to_exitcode(status)
    if answer:
        kind, value = pickle.loads(answer)
        if kind == "raised":
            raise value
        return value
    return _killed_job(args, pid, code)


def _die_with_parent() -> None:
    """Linux: SIGTERM this job when its worker dies, so that it ends `interrupted` instead of
    training on as an orphan."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the job outlives its worker
        pass


def _killed_job(args, pid: int, code: int):
    """Record a job process that died without answering, and answer for it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobReturn, JobStatus, setup_globals
    from omegaconf import OmegaConf, open_dict

    from rasp_hydra import runs

    idx, overrides, hydra_context, config, _, singleton_state = args
    how = (f"killed by {signal.Signals(-code).name}" if code < 0 else
           f"ended with exit code {code} without finishing")
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    run_dir = Path(str(OmegaConf.select(sweep_config, "hydra.sweep.dir"))) / str(
        OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
    recorded = runs.RunDir(run_dir).write_killed(how, pid)
    log.error("job %d (%s) %s: %s", idx, " ".join(overrides), how,
              f"recorded as failed in {run_dir}" if recorded else
              f"{run_dir} is held by another process, left as it is")
    # a failed job answers NaN, as run_from_hydra does for one that raises: the sweep goes on
    return JobReturn(overrides=list(overrides), working_dir=str(run_dir),
                     task_name=str(sweep_config.hydra.job.name), status=JobStatus.COMPLETED,
                     _return_value=math.nan)


class SweepSummary(Callback):
    """After a sweep: submitit's empty `.submitit/%j` folder goes; if some job did not complete
    (failed, killed, crashed, cut short), one last line that counts them and says how to
    finish them, and exit code 1."""

    @exits
    def on_multirun_end(self, config, **kwargs: Any) -> None:
        from rasp_hydra import runs

        sweep_dir = Path(str(config.hydra.sweep.dir))
        # Here, not in RunDirCheck: Hydra calls on_multirun_end in reverse order, so this
        # callback (listed last) runs first and may end the process. The submitit launcher
        # makes its folder template `.submitit/%j` itself and leaves it empty beside the real
        # `.submitit/JOB_ID/` folders.
        template = sweep_dir / ".submitit" / "%j"
        if template.is_dir() and not any(template.iterdir()):
            template.rmdir()
        try:  # the basic sweeper's numbered jobs, started or not
            jobs = runs.sweep_jobs(sweep_dir) or []
        except Exception:  # an Optuna study's trials are whatever it asked for
            jobs = []
        dirs = dict.fromkeys([*runs.find_runs(sweep_dir),
                              *(sweep_dir / str(n) for n in range(len(jobs)))])
        statuses = [_job_status(d) for d in dirs]
        left = [s for s in statuses if s in (*runs.NOT_COMPLETED, "missing")]
        if not left:
            return
        counts = ", ".join(f"{left.count(s)} {s}" for s in dict.fromkeys(left))
        raise FailedError(f"{len(left)} of {len(statuses)} jobs of {sweep_dir} did not complete "
              f"({counts}); each one's metrics.json and train.log say why. Run the same "
              f"command with hydra.sweep.dir={sweep_dir} to finish them (completed jobs are "
              "kept).")


def _job_status(job_dir: Path) -> str:
    """A job's status; "missing" if it never started, "incomplete" if it died before it
    wrote anything but its directory (unless another process holds it now)."""
    from rasp_hydra import runs
    from rasp_hydra.cli.search import PRUNED

    rd = runs.RunDir(job_dir)
    if rd.is_run():
        status, reason = rd.status()
        # a trial that Optuna's pruner stopped ended as the search wanted
        return "pruned" if str(reason or "").startswith(PRUNED) else status
    if not job_dir.exists():
        return "missing"
    return "running" if rd.lock_state() == "held" else "incomplete"
