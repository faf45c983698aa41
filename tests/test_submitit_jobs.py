"""A sweep under `hydra/launcher=submitit_local` whose job is killed, on real processes: the
job is recorded `failed` with its signal (metrics.json, train.log, invocations.jsonl), the
other job's result is kept and the sweep ends with its count line and exit code 1. It used
to end with submitit's `UncompletedJobError` traceback, no count line, and the killed job's
record left as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rasp_hydra import runs
from tests.conftest import TINY, metrics

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


def _holder(lock: Path, patience: float = 120) -> int:
    """The pid that run.lock names, once a job has taken it."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            return int(json.loads(lock.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    raise AssertionError(f"no job took {lock}")


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def kill_one_job(proc: subprocess.Popen, sweep, whom: str) -> tuple[dict, dict, int]:
    """SIGKILL job 1's training process ("job") or the submitit task that runs it ("task")
    while the 2-job sweep `proc` trains, then what every submitit launcher shares: exit 1, no
    traceback, the count line, job 0 completed, job 1's ending recorded and its lock free.
    Returns job 1's record, its last invocation line and the pid killed."""
    try:
        pid = _holder(sweep / "1" / "run.lock")  # job 1's training process
        if whom == "task":
            pid = _parent(pid)
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out + err
    assert proc.returncode == 1, text
    assert "UncompletedJobError" not in text and "Traceback" not in text, text
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: 1 of 2 jobs of {sweep} did not complete"), last
    assert "the others ended 1 completed" in last
    assert metrics(sweep / "0")["status"] == "completed"
    m = metrics(sweep / "1")
    ended = runs.RunDir(sweep / "1").invocations()[-1]
    if whom == "job":
        assert (m["status"], m["reason"]) == ("failed", "killed by SIGKILL"), m
        assert f"the job's process {pid} was killed by SIGKILL" in m["error"]
        assert (ended["event"], ended["outcome"]) == ("end", "failed")
        assert "killed by SIGKILL" in (sweep / "1" / "train.log").read_text()
    else:  # the job outlives its task only to write its record (SIGTERM from the kernel)
        assert m["status"] in ("interrupted", "failed"), m
        assert (ended["event"], ended["outcome"]) == ("end", m["status"])
    assert runs.RunDir(sweep / "1").lock_state() == "free"
    return m, ended, pid


@pytest.mark.parametrize("whom", ["job", pytest.param("task", marks=pytest.mark.slow)])
def test_a_killed_submitit_job_is_recorded_failed_and_the_sweep_counts_it(tmp_path, whom):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rasp_hydra", "-m", "hydra/launcher=submitit_local",
         "hydra.launcher.cpus_per_task=1", "lang=hist_10_bos", "model.layers=1", *TINY,
         "train.epochs=3", "train.seed=0,1", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kill_one_job(proc, sweep, whom)
