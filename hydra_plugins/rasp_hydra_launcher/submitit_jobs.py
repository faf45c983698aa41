"""`hydra/launcher=submitit_local` and `hydra/launcher=submitit_slurm`: the submitit plugin's
launchers (their options, made by `SubmititLocalJobLauncher` and `SubmititSlurmJobLauncher`
once the `SubmititJobs` callback has named them), with a job killed by a signal recorded as
`failed`, never a traceback that ends the sweep.

Hydra's submitit launcher waits for each job's result file; a job whose process died
(`kill -9`, the out-of-memory killer, a time-out's SIGKILL) has none, and its
`UncompletedJobError` used to end the sweep with a traceback and no count line, the job's
record left `running`. Here each submitit task forks the job and waits for it, as the
default joblib launcher does (joblib_job_process.py): a job that dies without an answer is
recorded as `failed` with its signal (metrics.json, train.log, invocations.jsonl) and
answers NaN, and the sweep goes on to its count line (`SweepSummary`) and exit code 1. A
task that dies itself is recorded the same way by the sweep's process, once nothing holds
the job's directory.

Hydra imports every module under `hydra_plugins` at startup: this one imports only Hydra
at the top (the submitit plugin, when a launcher is made).
"""

import logging
import math
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger("rasp_hydra")


try:  # Hydra imports this module at every start, with or without the submitit plugin
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        LocalLauncher,
        SlurmLauncher,
    )
except ImportError:  # not installed: rasp_hydra.cli.search.missing_plugin says so first
    LocalLauncher = SlurmLauncher = object


class _RecordingJobs:
    """Put before one of the plugin's launchers (same options): `__call__` (in the submitit
    task) runs the job in a forked child and records a child killed by a signal, and
    `launch` (in the sweep) answers a job that left no result instead of raising. Both
    reach the plugin only through its launcher's `__call__`, `_EXECUTOR` and `params`, so
    one body serves the local and the SLURM executor."""

    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int,
                 job_id: str, singleton_state: dict):
        def job():
            return super(_RecordingJobs, self).__call__(
                sweep_overrides, job_dir_key, job_num, job_id, singleton_state)

        args = (job_num, sweep_overrides, self.hydra_context, self.config, None,
                singleton_state)
        return _in_child(job, args)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        """The plugin's launch, except that each job's result is read on its own: one that
        left none (its task died) is recorded and answered NaN, the others are kept."""
        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf

        assert self.config is not None and len(job_overrides) > 0
        params = self.params
        init_keys = {"max_num_timeout", "submitit_folder"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR,
                                         folder=params["submitit_folder"], **{
                                             f"{self._EXECUTOR}_max_num_timeout": v
                                             for k, v in params.items()
                                             if k == "max_num_timeout"})
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in params.items() if k not in init_keys})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        jobs = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        for idx, overrides in jobs:
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        state = Singleton.get_state()
        submitted = executor.map_array(self, *zip(*[
            (overrides, "hydra.sweep.dir", idx, f"job_id_for_{idx}", state)
            for idx, overrides in jobs], strict=True))
        return [self._result(idx, overrides, job, state)
                for (idx, overrides), job in zip(jobs, submitted, strict=True)]

    def _result(self, idx: int, overrides: list[str], job, state: dict):
        from submitit.core.utils import UncompletedJobError

        try:
            return job.results()[0]
        except UncompletedJobError as err:
            return _lost_job(self, idx, overrides, job, state, err)


class SubmititLocalJobLauncher(_RecordingJobs, LocalLauncher):
    """hydra/launcher=submitit_local, its jobs recorded (`_RecordingJobs`)."""


class SubmititSlurmJobLauncher(_RecordingJobs, SlurmLauncher):
    """hydra/launcher=submitit_slurm, its jobs recorded (`_RecordingJobs`)."""


_PLUGIN = "hydra_plugins.hydra_submitit_launcher.submitit_launcher"
RECORDING_LAUNCHER = {  # the plugin's target: ours
    f"{_PLUGIN}.LocalLauncher": f"{__name__}.SubmititLocalJobLauncher",
    f"{_PLUGIN}.SlurmLauncher": f"{__name__}.SubmititSlurmJobLauncher",
}


class SubmititJobs(Callback):
    """A Hydra callback (conf/config.yaml): a sweep under hydra/launcher=submitit_local or
    submitit_slurm is launched by `SubmititLocalJobLauncher` or `SubmititSlurmJobLauncher`,
    with the plugin's options as given. (Hydra makes the launcher after
    `on_multirun_start`; a config file of the same name would shadow the plugin's schema,
    which Hydra warns about, and its ConfigStore entry is stored again at every plugin
    scan.)"""

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        from omegaconf import open_dict, read_write

        launcher = config.hydra.get("launcher")
        target = "" if launcher is None else str(launcher.get("_target_", ""))
        ours = RECORDING_LAUNCHER.get(target)
        if ours is None:
            return
        with read_write(config.hydra), open_dict(config.hydra):
            launcher._target_ = ours


def _in_child(job, args):
    """Run `job()` in a forked child of this submitit task and return its answer; a child
    that dies without one is recorded (joblib_job_process._killed_job) and answers NaN."""
    import cloudpickle

    from hydra_plugins.rasp_hydra_launcher.joblib_job_process import _killed_job, fork_job

    def prepare():  # submitit's task ignores SIGTERM (it waits for a requeue): the job must not
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    done, value = fork_job(job, cloudpickle.dumps, prepare=prepare)
    return value if done else _killed_job(args, *value)


def _lost_job(launcher, idx: int, overrides: list[str], job, state: dict, err) -> Any:
    """A job whose submitit task left no result: recorded `failed` (unless its own record
    already says how it ended), answered NaN."""
    from hydra.core.utils import JobReturn, JobStatus

    from hydra_plugins.rasp_hydra_launcher.joblib_job_process import _job_dir
    from rasp_hydra import runs
    from rasp_hydra.cli import progress

    run_dir = _job_dir(launcher.hydra_context, launcher.config, idx, overrides)
    rd = runs.RunDir(run_dir)
    deadline = time.monotonic() + 120  # a job that outlived its task is still writing
    while time.monotonic() < deadline and rd.lock_state() == "held":
        time.sleep(0.2)
    how = (f"ended without a result (its submitit task {job.job_id} died; its lines are in "
           f"{Path(str(job.paths.folder))})")
    status = rd.record().get("status")
    if status in (None, "running", "unreadable"):
        recorded = rd.write_killed(how, _holder_pid(rd) or 0)
        log.error("%s", progress.done_line(
            idx, runs.sweep_size(run_dir.parent), f"failed, its process {how}" + (
                "" if recorded else f" ({run_dir} is held by another process)")))
    else:  # the job outlived its task long enough to write how it ended
        log.error("job %d: its submitit task %s died; the job's record says %s", idx,
                  job.job_id, status)
    return JobReturn(overrides=list(overrides), working_dir=str(run_dir),
                     task_name=str(launcher.config.hydra.job.name),
                     status=JobStatus.COMPLETED, _return_value=math.nan)


def _holder_pid(rd) -> int | None:
    """The pid run.lock names (the job's last holder), if it names one."""
    import json

    try:
        return int(json.loads(rd.lock_file.read_text()).get("pid"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
