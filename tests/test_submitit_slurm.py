"""A sweep under `hydra/launcher=submitit_slurm`, on real processes, with a fake SLURM on
PATH (tests/fake_slurm.py: sbatch runs the batch script here, sacct reports its state):
both jobs complete; or one is killed mid-training, as the out-of-memory killer does on a
cluster, and is recorded `failed` with its signal while the other's result is kept, the
sweep ending with its count line and exit code 1 (with `-m slow`, its submitit task killed
instead: the sweep records the job from sacct's FAILED). It used to end with submitit's
`UncompletedJobError` traceback, no count line, and the killed job's record left `running`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import yaml

from tests import fake_slurm
from tests.conftest import TINY, metrics
from tests.test_submitit_jobs import kill_one_job

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the fake sbatch runs bash")


@pytest.fixture
def slurm(tmp_path):
    """The environment of a sweep whose sbatch, srun, sacct and scancel are the fake ones;
    whatever job is left running at the end is killed."""
    bin_dir = fake_slurm.install(tmp_path / "bin")
    yield {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    for pgid in fake_slurm.processes(bin_dir):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _sweep(tmp_path, env, epochs: int) -> tuple[subprocess.Popen, object]:
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rasp_hydra", "-m", "hydra/launcher=submitit_slurm",
         "hydra.launcher.cpus_per_task=1", "lang=hist_10_bos", "model.layers=1", *TINY,
         f"train.epochs={epochs}", "train.seed=0,1", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, sweep


def _slurm_jobs(tmp_path) -> dict[str, str]:
    """What the fake sacct knows: each array task's state."""
    out = subprocess.run([str(tmp_path / "bin" / "sacct"), "-o", "JobID,State", "--parsable2"],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("|") for line in out.splitlines()[1:])


def _ran_under_slurm(sweep, tmp_path, jobs=(0, 1)) -> None:
    """Both jobs ran as tasks of one SLURM array, and Hydra read the ids of `jobs` from
    SLURM's variables."""
    tasks = _slurm_jobs(tmp_path)
    assert sorted(re.sub(r"^\d+_", "", k) for k in tasks) == ["0", "1"], tasks
    for n in jobs:
        job_id = yaml.safe_load((sweep / str(n) / ".hydra" / "hydra.yaml").read_text())[
            "hydra"]["job"]["id"]
        assert job_id in tasks, (job_id, tasks)


def test_a_slurm_sweep_completes_both_jobs(tmp_path, slurm):
    proc, sweep = _sweep(tmp_path, slurm, epochs=1)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out + err
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    assert "sweep done: 2 jobs (2 completed)" in text and str(sweep) in text, text
    assert [metrics(sweep / str(n))["status"] for n in (0, 1)] == ["completed"] * 2
    _ran_under_slurm(sweep, tmp_path)
    assert set(_slurm_jobs(tmp_path).values()) == {"COMPLETED"}


@pytest.mark.parametrize("whom", ["job", pytest.param("task", marks=pytest.mark.slow)])
def test_a_killed_slurm_job_is_recorded_failed_and_the_sweep_counts_it(tmp_path, slurm, whom):
    proc, sweep = _sweep(tmp_path, slurm, epochs=3)  # long enough to be killed mid-training
    kill_one_job(proc, sweep, whom)
    tasks = _slurm_jobs(tmp_path)
    if whom == "job":  # the task outlived its job and answered for it: SLURM saw both
        assert set(tasks.values()) == {"COMPLETED"}, tasks  # tasks end well
    else:  # what the sweep learnt from sacct before it gave up on the task's result
        assert sorted(tasks.values()) == ["COMPLETED", "FAILED"], tasks
    _ran_under_slurm(sweep, tmp_path, jobs=(0,))  # job 1 died before Hydra wrote its config
