"""The thread count: one thread by default for a single run and a sweep's job alike,
recorded for every invocation, and a resume on another count refused unless
`train.inexact_resume=true`, which records the continuation as inexact
(docs/configuration.md, "Threads"; docs/run-directory.md, "Interrupt and resume")."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rasp_hydra import runs
from rasp_hydra.config import TrainConfig
from rasp_hydra.job import job_threads
from tests.conftest import TINY, cli, metrics

RUN = ["lang=hist_10_bos", "model.layers=1", *TINY]
CORES = len(os.sched_getaffinity(0))


def snapshot(run_dir: Path) -> dict:
    """Every file below run_dir and its content hash."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def refusal(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory) -> Path:
    """A tiny single run with the default thread count."""
    cwd = tmp_path_factory.mktemp("threads")
    cli(*RUN, f"hydra.run.dir={cwd / 'run'}", cwd=cwd, check=True)
    return cwd / "run"


def copy_of(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


def last_pt_threads(run: Path) -> int:
    import torch

    return torch.load(run / "checkpoints/last.pt", weights_only=True)["num_threads"]


def test_the_default_is_one_thread_and_null_is_the_jobs_share_of_the_cores():
    assert TrainConfig().num_threads == 1
    joblib = {"_target_": "hydra_plugins.x.joblib_job_process.JobProcessLauncher", "n_jobs": 2}
    assert job_threads(1, False, None) == job_threads(1, True, joblib) == 1
    assert job_threads(3, True, joblib) == 3
    assert job_threads(None, False, None) == CORES  # a single run: all of them
    assert job_threads(None, True, joblib) == max(1, CORES // 2)


def test_a_single_run_trains_on_one_thread_by_default_and_records_it(completed_run):
    assert metrics(completed_run)["num_threads"] == 1
    start = runs.RunDir(completed_run).invocations()[0]
    assert start["event"] == "start" and start["threads"] == 1
    assert "continuation" not in start
    first = (completed_run / "train.log").read_text().splitlines()[0]
    assert first.startswith("start hist_10_bos") and first.endswith(", 1 threads"), first
    # what a resume compares: the count last.pt's state was trained on
    assert last_pt_threads(completed_run) == 1
    assert runs.RunDir(completed_run).threads_before() == 1


def test_a_resume_on_another_thread_count_is_refused_and_changes_nothing(completed_run,
                                                                         tmp_path):
    run = copy_of(completed_run, tmp_path / "run")
    before = snapshot(run)
    err = refusal(cli("--resume", str(run), "train.epochs=3", "train.num_threads=2",
                      cwd=tmp_path))
    assert "trained on 1 torch thread," in err and "would train on 2" in err, err
    assert "last bits" in err and "nothing was written" in err
    assert "train.num_threads=1" in err and "train.inexact_resume=true" in err
    assert snapshot(run) == before  # not a byte changed, not a file added
    if CORES > 1:  # null resolves to this run's share of the cores, and that is compared
        err = refusal(cli("--resume", str(run), "train.num_threads=null", cwd=tmp_path))
        assert f"would train on {CORES} (train.num_threads=null" in err, err
        assert snapshot(run) == before
    # the exact way out, train.num_threads=1, is a plain resume (test_run_dir_guarantees)


def test_an_inexact_resume_is_accepted_with_the_flag_and_recorded(completed_run, tmp_path):
    run = copy_of(completed_run, tmp_path / "run")
    proc = cli("--resume", str(run), "train.epochs=3", "train.num_threads=2",
               "train.inexact_resume=true", cwd=tmp_path, check=True)
    assert "inexact continuation: trained on 1 threads before, 2 now" in proc.stdout
    m = metrics(run)
    assert (m["status"], m["epochs_run"], m["num_threads"]) == ("completed", 3, 2)
    assert m["continuation"] == "inexact"
    resume = runs.RunDir(run).invocations()[-2]
    assert resume["event"] == "resume" and resume["threads"] == 2
    assert (resume["continuation"], resume["threads_before"]) == ("inexact", 1)
    log = (run / "train.log").read_text()
    assert "inexact continuation: trained on 1 threads before, 2 now" in log
    assert "after epoch 2, 2 threads" in log
    assert last_pt_threads(run) == 2


@pytest.mark.slow  # two resumes: about 15 s on a busy 2-core machine
def test_a_run_resumed_inexactly_stays_inexact(completed_run, tmp_path):
    run = copy_of(completed_run, tmp_path / "run")
    cli("--resume", str(run), "train.epochs=3", "train.num_threads=2",
        "train.inexact_resume=true", cwd=tmp_path, check=True)
    # on the new count a later resume continues exactly, and the run stays inexact
    cli("--resume", str(run), "train.epochs=4", "train.num_threads=2", cwd=tmp_path,
        check=True)
    m = metrics(run)
    assert (m["epochs_run"], m["num_threads"], m["continuation"]) == (4, 2, "inexact")
    assert runs.RunDir(run).invocations()[-2]["continuation"] == "exact"


def test_a_resume_on_another_device_is_recorded_inexact(completed_run, tmp_path):
    # a run that trained on a GPU (its record says so) resumed on this CPU: the thread
    # counts agree, but the kernels differ, so the continuation cannot be bit for bit
    import json

    run = copy_of(completed_run, tmp_path / "run")
    record = metrics(run)
    assert record["device"] == "cpu" and record.get("continuation") is None
    (run / "metrics.json").write_text(json.dumps({**record, "device": "cuda"}))
    proc = cli("--resume", str(run), "train.epochs=3", cwd=tmp_path, check=True)
    assert "inexact continuation: trained on cuda before, cpu now" in proc.stdout
    m = metrics(run)
    assert (m["status"], m["epochs_run"], m["device"]) == ("completed", 3, "cpu")
    assert m["continuation"] == "inexact"
    assert "inexact continuation: trained on cuda before, cpu now" in (
        run / "train.log").read_text()
