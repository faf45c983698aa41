"""`hydra.launcher._target_` of conf/config.yaml: Hydra's joblib launcher with every job in
a process of its own, so that a job killed by a signal (kill -9, the out-of-memory killer)
ends only that job, never the sweep.

A loky worker forks the job and waits for it (with `n_jobs=1` joblib runs the jobs in
the sweep's own process, one after another, and nothing is forked). A job process that
dies without an answer is recorded as `failed`, with the signal, in its run directory
(metrics.json, train.log, invocations.jsonl) and in the sweep's output, and the sweep goes
on. A worker that dies itself (rather than its job) leaves no job unrecorded: loky then
kills the other workers but not their jobs (`_spare_jobs`), and every running job hears
SIGTERM from the kernel as its worker goes and ends `interrupted`. `SweepSummary` (a Hydra
callback) ends a sweep in which some job did not complete with one line that counts them
(and says that a worker died, if one did) and exit code 1; the same command with
`hydra.sweep.dir=SWEEP` finishes what is left.

Hydra imports every module under `hydra_plugins` at startup: this one imports only Hydra
at the top.
"""

from __future__ import annotations

import contextlib
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
from rasp_hydra.errors import FailedError, Interrupted

log = logging.getLogger("rasp_hydra")
SWEEP_PID = "RASP_HYDRA_SWEEP_PID"  # the sweep's own process, where no job is forked


class JobProcessLauncher(JoblibLauncher):
    """The joblib launcher (same options: n_jobs, ...), each job in a child process."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        """Hydra's joblib launch, except that a job the relaunch finds final is answered
        here, in the sweep's process, and never reaches a worker (rasp_hydra.cli.relaunch)."""
        from hydra.core.utils import JobReturn, JobStatus
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        from rasp_hydra.cli import signals

        _set_jobs_per_gpu(self, job_overrides)
        os.environ[SWEEP_PID] = str(os.getpid())  # inherited by the workers
        if signals.STOP_ENV not in os.environ:
            signals.sweep_stop_file(Path(str(self.config.hydra.sweep.dir)))
        jobs = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        answers = {idx: _kept_job(self, idx, o) for idx, o in jobs}
        todo = [(idx, o) for idx, o in jobs if answers[idx] is None]
        try:
            with signals.stopping_sweep():
                for (idx, _), ret in zip(todo, _launch_parallel(self, todo), strict=True):
                    answers[idx] = ret
        except TerminatedWorkerError as err:  # a worker itself was killed, not a job
            _DEAD_WORKERS.append(_exit_codes(err))
            log.error("a joblib worker process died (%s): its job and the others running "
                      "get SIGTERM and end interrupted, and the jobs not started yet are left "
                      "for a relaunch", _DEAD_WORKERS[-1])
            _wait_for_records(Path(str(self.config.hydra.sweep.dir)), [i for i, _ in todo])
            return [JobReturn(overrides=o, status=JobStatus.COMPLETED, _return_value=math.nan)
                    for _, o in jobs]
        return [answers[idx] for idx, _ in jobs]


# what SweepSummary's line says of a worker that died in this sweep's process
_DEAD_WORKERS: list[str] = []


def _exit_codes(err: Exception) -> str:
    """"exit codes {SIGKILL(-9)}", from loky's message, or its first line."""
    import re

    found = re.search(r"exit codes of the workers are (\{.*?\})", str(err))
    return f"exit codes {found.group(1)}" if found else str(err).splitlines()[0]


def _wait_for_records(sweep_dir: Path, numbers: list[int], patience: float = 120) -> None:
    """After a worker died, its jobs and the others' (sent SIGTERM as their workers go) are
    still writing their records: wait until no process holds their directories, so that
    the closing line counts what they wrote."""
    import time

    from rasp_hydra import runs

    deadline = time.monotonic() + patience
    while time.monotonic() < deadline and any(
            runs.RunDir(sweep_dir / str(n)).lock_state() == "held" for n in numbers):
        time.sleep(0.2)


def _launch_parallel(launcher: JoblibLauncher, jobs: list[tuple[int, list[str]]]) -> list:
    """Run `jobs` ((number, overrides)) on joblib's loky workers, each in a child process;
    their JobReturns in the same order."""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import configure_log, filter_overrides, setup_globals
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed

    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    _spare_jobs()
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if not jobs:
        return []
    options = launcher.joblib
    options["backend"] = "loky"  # Hydra's choice: its threading backend cannot run jobs
    process_joblib_cfg(options)
    log.info("Joblib.Parallel(%s) is launching %d jobs into %s",
             ",".join(f"{k}={v}" for k, v in options.items()), len(jobs), sweep_dir)
    for idx, overrides in jobs:
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
    state = Singleton.get_state()
    return list(Parallel(**options)(
        delayed(execute_job_in_child)(idx, overrides, launcher.hydra_context, launcher.config,
                                      launcher.task_function, state)
        for idx, overrides in jobs))


def _spare_jobs() -> None:
    """Once a worker has died, loky SIGKILLs every other worker and all of its descendants,
    so the jobs they forked died without their records (left `running`). Here loky's kill
    leaves out the job processes: each one hears SIGTERM from the kernel as its worker goes
    (PR_SET_PDEATHSIG, Linux only), stops after its batch and writes its record."""
    from joblib.externals.loky import process_executor

    from rasp_hydra.cli import signals

    if not sys.platform.startswith("linux") or getattr(
            process_executor.kill_process_tree, "spares_jobs", False):
        return  # elsewhere no signal would stop a job whose worker died: loky kills it

    def kill_process_tree(process, use_psutil=True):
        """loky's, in the same order (children first), without the job processes."""
        for pid in [*reversed(signals.descendants_but_jobs(process.pid)), process.pid]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        process.join()

    kill_process_tree.spares_jobs = True
    process_executor.kill_process_tree = kill_process_tree


def _kept_job(launcher: JoblibLauncher, idx: int, overrides: list[str]):
    """The JobReturn of job `idx` if its directory holds a final record (a relaunch: no
    process is started for it, its history gains nothing), else None."""
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from rasp_hydra import runs
    from rasp_hydra.cli import progress, relaunch
    from rasp_hydra.cli.search import TRIAL_ENV
    from rasp_hydra.job import objective

    if any(TRIAL_ENV in o for o in overrides):  # a search's trials are new each time
        return None
    config = launcher.config
    sweep_dir = Path(str(config.hydra.sweep.dir))
    subdir = str(OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir"))
    if subdir.replace(" ", "") == "${hydra.job.num}":
        run_dir = sweep_dir / str(idx)
    else:  # another layout: where Hydra would put this job
        run_dir = _job_dir(launcher.hydra_context, config, idx, overrides)
    metrics = relaunch.kept_record(run_dir)
    if metrics is None:
        return None
    log.info("%s", progress.done_line(
        idx, runs.sweep_size(sweep_dir), progress.outcome(metrics) +
        " (kept: its record is final, not run again)", kind=progress.KEPT))
    return JobReturn(overrides=overrides, working_dir=str(run_dir),
                     task_name=str(config.hydra.job.name), status=JobStatus.COMPLETED,
                     _return_value=objective(metrics))


def _job_dir(hydra_context, config, idx: int, overrides: list[str]) -> Path:
    """Job `idx`'s run directory, composed as Hydra composes the job's config."""
    from omegaconf import OmegaConf, open_dict

    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    return Path(str(OmegaConf.select(sweep_config, "hydra.sweep.dir"))) / str(
        OmegaConf.select(sweep_config, "hydra.sweep.subdir"))


# a job's own overrides that change neither its data nor its model: not composed twice
_SAME_SIZE = ("optimizer.", "schedule.", "train.seed", "logger")


def _set_jobs_per_gpu(launcher, job_overrides) -> None:
    """Without hydra.launcher.n_jobs, a GPU sweep runs as many jobs at a time as the GPU's
    memory and the CPU cores allow (rasp_hydra.devices has the rule), said in the sweep's
    first line; every job's config then holds that n_jobs, so its threads are cores / n."""
    from omegaconf import OmegaConf, open_dict, read_write

    from rasp_hydra import devices
    from rasp_hydra.cli.store import to_config

    cfg = launcher.config
    if devices.n_jobs_given(list(cfg.hydra.overrides.hydra), launcher.joblib.get("n_jobs")):
        return
    device = OmegaConf.select(cfg, "train.device")
    gpu = devices.gpu_facts(str(getattr(device, "value", device)))
    if gpu is None:
        return
    distinct = {tuple(o for o in job if not o.lstrip("+~").startswith(_SAME_SIZE)): job
                for job in job_overrides}
    configs = []
    for job in distinct.values():
        try:
            job_cfg = launcher.hydra_context.config_loader.load_sweep_config(cfg, list(job))
            configs.append(to_config(OmegaConf.masked_copy(
                job_cfg, [k for k in job_cfg if k != "hydra"])))
        except Exception:  # noqa: BLE001 - a job that cannot compose fails on its own
            continue
    n, why = devices.jobs_per_gpu(devices.largest_estimate(configs), gpu, len(job_overrides))
    log.info(why)
    launcher.joblib["n_jobs"] = n
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.launcher.n_jobs = n
        cfg.hydra.overrides.hydra.append(f"hydra.launcher.n_jobs={n}")


def execute_job_in_child(idx: int, overrides: Sequence[str], hydra_context, config,
                         task_function, singleton_state: dict):
    """Run Hydra's `execute_job` in a forked child of this worker and return its JobReturn;
    a child killed by a signal becomes a failed job with a NaN return value."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job
    from joblib.externals.loky.backend.reduction import dumps  # as loky sends results

    from rasp_hydra.cli import signals

    args = (idx, overrides, hydra_context, config, task_function, singleton_state)
    stopped = signals.sweep_stopped()
    if stopped:  # the sweep stops: this job is left for a relaunch
        from hydra.core.utils import JobReturn, JobStatus

        log.info("%snot started: the sweep stops (%s)", signals_tag(idx), stopped)
        return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED,
                         _return_value=math.nan)
    if os.environ.get(SWEEP_PID) == str(os.getpid()):  # n_jobs=1: joblib runs it right here
        return execute_job(*args)
    from rasp_hydra.cli.warm import import_training

    import_training()  # once per worker: its jobs inherit torch instead of importing it
    done, value = fork_job(
        lambda: execute_job(*args), dumps,
        on_signal=lambda signum: signals.note_sweep_stop(signal.Signals(signum).name))
    return value if done else _killed_job(args, *value)


def fork_job(job, dumps, *, prepare=None, on_signal=None) -> tuple[bool, Any]:
    """Run `job()` in a forked child of this process, in a process group of its own, and
    wait for it: `(True, its return value)` (an exception it raised is raised here), or
    `(False, (pid, exit code))` for a child that died without an answer. `dumps` pickles
    the answer as the launcher sends results; `prepare()` runs first in the child;
    `on_signal(signum)` runs here at each SIGINT/SIGTERM, which reaches the child once (it
    stops after its batch)."""
    from rasp_hydra.cli import signals

    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the job; it never returns into the code it was forked from
        try:
            os.close(read_fd)
            # a signal to the group reaches it once, from the parent; and the leader of a
            # group is a job that a dead worker's executor leaves alive (_spare_jobs)
            os.setpgid(0, 0)
            if prepare is not None:
                prepare()
            signals.forked_by(parent)
            _die_with_parent(parent)
            try:
                answer = dumps(("ok", job()))
            except BaseException as err:  # noqa: BLE001 - the parent re-raises it
                answer = dumps(("raised", err))
            with os.fdopen(write_fd, "wb") as f:
                f.write(answer)  # BrokenPipeError if the parent died: nobody to tell
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    os.close(write_fd)
    with contextlib.suppress(OSError):  # the child may have done it already
        os.setpgid(pid, pid)
    forwarded: list[int] = []

    def forward(signum, frame):
        if on_signal is not None:
            on_signal(signum)
        if not forwarded:
            forwarded.append(signum)
            with contextlib.suppress(OSError):
                os.kill(pid, signum)

    old = {sig: signal.signal(sig, forward) for sig in signals.SIGNALS}
    try:
        with os.fdopen(read_fd, "rb") as f:
            answer = f.read()
        _, status = os.waitpid(pid, 0)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if answer:
        kind, value = pickle.loads(answer)
        if kind == "raised":
            raise value
        return True, value
    return False, (pid, os.waitstatus_to_exitcode(status))


def signals_tag(idx: int) -> str:
    from rasp_hydra.cli.progress import job_tag

    return job_tag(idx)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this job when its worker (`parent`) dies, so that it ends `interrupted`
    instead of training on as an orphan."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the job outlives its worker
        return
    if os.getppid() != parent:  # it died before prctl: no SIGTERM will come, and the job
        os._exit(1)  # has written nothing yet


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
    from rasp_hydra.cli import progress

    log.error("%s", progress.done_line(
        idx, runs.sweep_size(run_dir.parent), f"failed, its process {how} ("
        + (f"recorded in {run_dir})" if recorded else
           f"{run_dir} is held by another process, left as it is)")))
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
        from rasp_hydra.cli import progress, signals

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
        seconds = progress.end_sweep()
        left = [s for s in statuses if s in (*runs.NOT_COMPLETED, "missing")]
        stopped = signals.end_sweep_stop()
        dead = _DEAD_WORKERS[:1]
        _DEAD_WORKERS.clear()
        if stopped:
            raise Interrupted(_stopped_line(stopped, sweep_dir, statuses, left, seconds),
                              signum=int(getattr(signal, stopped, signal.SIGINT)))
        if "running" in statuses and not left:  # held by another sweep: RunDirCheck says so
            return
        if not left:
            log.info("%s", progress.closing_line(sweep_dir, statuses, seconds))
            return
        rest = [s for s in statuses if s not in left]
        took = f" in {progress.clock(seconds)}" if seconds is not None else ""
        others = f", the others ended {progress.counts(rest)}" if rest else ""
        # said first: no signal reached the sweep, its jobs heard SIGTERM as their workers went
        cause = f"a joblib worker process died ({dead[0]}): " if dead else ""
        raise FailedError(
            f"{cause}{len(left)} of {len(statuses)} jobs of {sweep_dir} did not complete "
            f"({progress.counts(left)}){took}{others}; each one's metrics.json and train.log "
            f"say why. Run the same command with hydra.sweep.dir={sweep_dir} to finish them "
            f"(completed jobs are kept); next: {progress.report_command(sweep_dir)}")


def _stopped_line(name: str, sweep_dir: Path, statuses: list[str], left: list[str],
                  seconds: float | None) -> str:
    """The closing line of a sweep stopped by a signal."""
    from rasp_hydra.cli import progress

    took = f" in {progress.clock(seconds)}" if seconds is not None else ""
    done = [s for s in statuses if s not in left]
    return (f"{name}: the sweep stopped{took}; {len(left)} of {len(statuses)} jobs of "
            f"{sweep_dir} did not complete ({progress.counts(left) or 'none'})"
            + (f", the others ended {progress.counts(done)}" if done else "")
            + ". Each running job stopped after its batch and wrote its record; run the "
            f"same command with hydra.sweep.dir={sweep_dir} to finish them (completed jobs "
            f"are kept); next: {progress.report_command(sweep_dir)}")


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
