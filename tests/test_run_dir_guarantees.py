"""What a run directory promises (README), each checked on real subprocesses of tiny runs:
a failed resume rewrites nothing, one writer at a time, a lock that dies with its holder,
clear errors for broken checkpoints, bad values refused before a directory is written,
and a diverging run that ends as `diverged`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rasp_hydra import runs
from tests.conftest import TINY, cli, metrics

RUN = ["lang=hist_10_bos", "model.layers=1", *TINY]


def snapshot(run_dir: Path) -> dict:
    """Every file below run_dir and its content hash."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def one_paragraph(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("completed")
    cli(*RUN, f"hydra.run.dir={cwd / 'run'}", cwd=cwd, check=True)
    return cwd / "run"


def copy_of(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


# ------------------------------------------------------------------- append-only history

def test_a_refused_resume_rewrites_nothing_and_a_plain_resume_works(completed_run, tmp_path):
    run = copy_of(completed_run, tmp_path / "run")
    before = snapshot(run)
    err = one_paragraph(cli("--resume", str(run), "model.layers=3", cwd=tmp_path))
    assert "model.layers: 1 -> 3" in err and "without those overrides" in err
    assert snapshot(run) == before  # not a byte changed, not a file added

    proc = cli("--resume", str(run), "train.epochs=3", cwd=tmp_path, check=True)
    m = metrics(run)
    assert m["status"] == "completed" and m["resumes"] == 1 and m["epochs_run"] == 3
    assert "resumed from" in proc.stdout
    # the first composition stays; the resume's sits beside it
    assert (run / ".hydra/config.yaml").read_bytes() == (completed_run /
                                                         ".hydra/config.yaml").read_bytes()
    assert "train.epochs=3" in (run / "invocations/002/overrides.yaml").read_text()
    events = [(i["event"], i.get("outcome")) for i in runs.read_invocations(run)]
    assert events == [("start", None), ("end", "completed"), ("resume", None),
                      ("end", "completed")]


def test_a_second_start_in_a_finished_run_must_not_retrain_it(completed_run, tmp_path):
    run = copy_of(completed_run, tmp_path / "run")
    before = snapshot(run)
    err = one_paragraph(cli(*RUN, f"hydra.run.dir={run}", "train.resume=false", cwd=tmp_path))
    assert "from scratch" in err
    assert snapshot(run) == before


def test_a_resume_that_fails_leaves_a_completed_run_completed(completed_run, tmp_path):
    run = copy_of(completed_run, tmp_path / "run")
    record = metrics(run)
    data = (run / runs.LAST).read_bytes()
    (run / runs.LAST).write_bytes(data[: len(data) // 2])  # a copy cut short
    err = one_paragraph(cli("--resume", str(run), "train.epochs=4", cwd=tmp_path))
    assert "last.pt cannot be read" in err and "train.resume_from=best" in err
    assert metrics(run) == record  # still completed, same numbers
    assert runs.read_invocations(run)[-1]["outcome"] == "failed"
    # the way out that the error offers
    cli("--resume", str(run), "train.epochs=4", "train.resume_from=best", cwd=tmp_path,
        check=True)
    m = metrics(run)
    assert m["status"] == "completed" and m["epochs_run"] == 4
    assert [int(e) for e in pd.read_csv(run / runs.HISTORY)["epoch"]] == [1, 2, 3, 4]


def test_a_broken_best_checkpoint_is_named_by_the_drawer(completed_run, tmp_path):
    run = copy_of(completed_run, tmp_path / "run")
    (run / runs.BEST).write_bytes(b"not a checkpoint")
    proc = cli(str(run), "--sequence", "abc", "--which", "best", cwd=tmp_path,
               module="rasp_hydra.draw")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "best.pt cannot be read" in proc.stderr and "--which last" in proc.stderr


# ------------------------------------------------------------------------- one writer

SLOW = ["lang=sort_10", "model.d_model=32", "lang.max_len=8", "lang.train_size=3000",
        "lang.valid_size=100", "lang.test_size=100", "train.num_threads=1", "train.epochs=3",
        "train.perfect_acc_epochs=100"]


def _popen(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "rasp_hydra", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def _comparable(run: Path) -> tuple:
    m = metrics(run)
    hist = pd.read_csv(run / runs.HISTORY).drop(columns="seconds")
    return {k: m[k] for k in ("status", "final", "best_epoch", "epochs_run")}, hist


def test_two_starts_in_one_directory_one_trains_the_other_names_the_holder(tmp_path):
    run = tmp_path / "shared"
    first = _popen([*SLOW, f"hydra.run.dir={run}"], tmp_path)
    _wait_for(run / runs.HISTORY, first)  # the first is training
    second = cli(*SLOW, f"hydra.run.dir={run}", cwd=tmp_path)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 3 and "Traceback" not in second.stderr
    assert f"in use by process {first.pid}" in second.stderr
    assert not (run / "invocations").exists()  # the second wrote nothing
    assert [i["event"] for i in runs.read_invocations(run)] == ["start", "end"]

    cli(*SLOW, f"hydra.run.dir={tmp_path / 'alone'}", cwd=tmp_path, check=True)
    (m_shared, h_shared), (m_alone, h_alone) = _comparable(run), _comparable(tmp_path / "alone")
    assert m_shared == m_alone
    pd.testing.assert_frame_equal(h_shared, h_alone)


def test_kill_9_leaves_no_stale_lock(tmp_path):
    run = tmp_path / "run"
    proc = _popen([*SLOW, "train.epochs=50", f"hydra.run.dir={run}"], tmp_path)
    _wait_for(run / runs.HISTORY, proc)
    proc.kill()
    proc.wait()
    holder = json.loads((run / runs.LOCK).read_text())
    assert holder["pid"] == proc.pid  # the record of the dead holder stays...
    cli("--resume", str(run), "train.epochs=2", cwd=tmp_path, check=True)  # ...its lock not
    assert metrics(run)["status"] == "completed"


def test_a_locked_job_of_a_sweep_is_reported_and_the_others_run(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    with runs.RunLock(sweep / "0"):
        proc = cli("-m", "lang=hist_10_bos,sort_10", "model.layers=1", *TINY,
                   f"hydra.sweep.dir={sweep}", "hydra.launcher.n_jobs=1", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr  # as a single run refused for the lock
    assert "job not run" in proc.stdout + proc.stderr and "in use by process" in (
        proc.stdout + proc.stderr)
    assert not (sweep / "0" / ".hydra").exists()
    assert metrics(sweep / "1")["status"] == "completed"


# -------------------------------------------------------------------------- bad values

@pytest.mark.parametrize("override, says", [
    ("optimizer.lr=-1", "optimizer.lr=-1.0: it must be a finite number above 0"),
    ("optimizer.lr=nan", "optimizer.lr=nan"),
    ("lang.train_size=0", "lang.train_size=0; it must be at least 1"),
    ("schedule.gamma=0", "schedule.gamma=0.0"),
    ("train.progress=sometimes", "train.progress='sometimes' is unknown"),
])
def test_values_that_cannot_train_fail_before_a_run_directory_is_written(
        override, says, tmp_path):
    err = one_paragraph(cli(*RUN, override, cwd=tmp_path))
    assert says in err
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.*"))


def test_a_run_directory_that_cannot_be_created(tmp_path):
    (tmp_path / "a_file").write_text("")
    err = one_paragraph(cli(*RUN, f"hydra.run.dir={tmp_path / 'a_file' / 'run'}",
                            cwd=tmp_path))
    assert "cannot be created" in err and "is a file" in err


def test_an_unknown_split_to_peep(tmp_path):
    proc = cli("peep", "hist_10", "--split", "nosuch", cwd=tmp_path, module="rasp_hydra.tasks")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "nosuch" in proc.stderr and "train" in proc.stderr and "test" in proc.stderr


def test_a_diverging_run_ends_diverged_keeping_the_best_checkpoint(tmp_path):
    run = tmp_path / "run"
    cli(*RUN, "optimizer.lr=1e6", "train.epochs=4", f"hydra.run.dir={run}", cwd=tmp_path,
        check=True)
    m = metrics(run)
    assert m["status"] == "diverged" and m["diverged_epoch"] in (1, 2, 3, 4)
    assert "loss became" in m["reason"]
    assert "diverged: the loss became" in (run / runs.LOG).read_text()
    assert m["epochs_run"] == m["diverged_epoch"] - 1
    if m["epochs_run"]:
        assert (run / runs.BEST).is_file() and m["final"]["test"]["token_acc"] >= 0
    assert runs.read_invocations(run)[-1]["outcome"] == "diverged"
