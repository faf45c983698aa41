"""What a run directory promises (docs/run-directory.md), each checked on real subprocesses
of tiny runs: a failed resume rewrites nothing, one writer at a time, a lock that dies with
its holder, clear errors for broken checkpoints, bad values refused before a directory is written,
a diverging run that ends as `diverged`, a record that a full disk never empties, a resume
that never retrains finished epochs from nothing, a sweep that outlives a killed job, a
report that tells the living from the dead, and checkpoints checked against their run.

Disk faults come from tests/faults/sitecustomize.py, put on the subprocesses' PYTHONPATH."""

from __future__ import annotations

import hashlib
import json
import os
import signal
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
    assert m["continuation"] == "exact"  # on the thread count it trained on
    assert "resumed from" in proc.stdout and "1 threads" in proc.stdout
    # the first composition stays; the resume's sits beside it
    assert (run / ".hydra/config.yaml").read_bytes() == (completed_run /
                                                         ".hydra/config.yaml").read_bytes()
    assert "train.epochs=3" in (run / "invocations/002/overrides.yaml").read_text()
    events = [(i["event"], i.get("outcome")) for i in runs.RunDir(run).invocations()]
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
    data = (run / "checkpoints/last.pt").read_bytes()
    (run / "checkpoints/last.pt").write_bytes(data[: len(data) // 2])  # a copy cut short
    before = snapshot(run)
    err = one_paragraph(cli("--resume", str(run), "train.epochs=4", cwd=tmp_path))
    assert "last.pt cannot be read" in err and "train.resume_from=best" in err
    assert metrics(run) == record  # still completed, same numbers
    assert snapshot(run) == before  # refused before anything was written
    # the way out that the error offers
    cli("--resume", str(run), "train.epochs=4", "train.resume_from=best", cwd=tmp_path,
        check=True)
    m = metrics(run)
    assert m["status"] == "completed" and m["epochs_run"] == 4
    assert [int(e) for e in pd.read_csv(run / "history.csv")["epoch"]] == [1, 2, 3, 4]


def test_a_broken_best_checkpoint_is_named_by_the_drawer(completed_run, tmp_path):
    run = copy_of(completed_run, tmp_path / "run")
    (run / "checkpoints/best.pt").write_bytes(b"not a checkpoint")
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
    hist = pd.read_csv(run / "history.csv").drop(columns="seconds")
    return {k: m[k] for k in ("status", "final", "best_epoch", "epochs_run")}, hist


@pytest.mark.slow  # ~25 s; test_exit_codes::test_3_* keeps the rule in the default suite
def test_two_starts_in_one_directory_one_trains_the_other_names_the_holder(tmp_path):
    run = tmp_path / "shared"
    # enough epochs that the first still trains while the second starts up (an epoch of
    # SLOW takes a fraction of a second on an idle machine)
    long = [*SLOW, "train.epochs=60", f"hydra.run.dir={run}"]
    first = _popen(long, tmp_path)
    _wait_for(run / "history.csv", first)  # the first is training
    second = cli(*long, cwd=tmp_path)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 3 and "Traceback" not in second.stderr
    assert f"in use by process {first.pid}" in second.stderr
    assert not (run / "invocations").exists()  # the second wrote nothing
    assert [i["event"] for i in runs.RunDir(run).invocations()] == ["start", "end"]

    cli(*SLOW, "train.epochs=60", f"hydra.run.dir={tmp_path / 'alone'}", cwd=tmp_path, check=True)
    (m_shared, h_shared), (m_alone, h_alone) = _comparable(run), _comparable(tmp_path / "alone")
    assert m_shared == m_alone
    pd.testing.assert_frame_equal(h_shared, h_alone)


def test_kill_9_leaves_no_stale_lock(tmp_path):
    run = tmp_path / "run"
    proc = _popen([*SLOW, "train.epochs=50", f"hydra.run.dir={run}"], tmp_path)
    _wait_for(run / "history.csv", proc)
    proc.kill()
    proc.wait()
    holder = json.loads((run / "run.lock").read_text())
    assert holder["pid"] == proc.pid  # the record of the dead holder stays...
    cli("--resume", str(run), "train.epochs=2", cwd=tmp_path, check=True)  # ...its lock not
    assert metrics(run)["status"] == "completed"


def test_a_locked_job_of_a_sweep_is_reported_and_the_others_run(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    with runs.RunDir(sweep / "0").lock():
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
    assert "diverged: the loss became" in (run / "train.log").read_text()
    assert m["epochs_run"] == m["diverged_epoch"] - 1
    if m["epochs_run"]:
        assert (run / "checkpoints/best.pt").is_file() and m["final"]["test"]["token_acc"] >= 0
    assert runs.RunDir(run).invocations()[-1]["outcome"] == "diverged"


# --------------------------------------------------------------- a full disk, I/O errors

FAULTS = Path(__file__).parent / "faults"


def faulty(run: Path, at: str = "*", skip: int = 0, once: bool = False,
           full: bool = False) -> dict:
    """The environment that makes writes below `run` fail (tests/faults/sitecustomize.py)."""
    path = os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "RASP_FAULT_DIR": str(run), "RASP_FAULT_AT": at,
            "RASP_FAULT_SKIP": str(skip), "RASP_FAULT_ONCE": "1" if once else "0",
            "RASP_FAULT_FULL": "1" if full else "0"}


def epoch_of(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def assert_consistent(run: Path, original: dict) -> None:
    """No temporary file is left, and the files agree: best.pt never ahead of history.csv
    and last.pt (written in that order: last.pt may lead by the epoch whose history write
    failed), and the record either the original, untouched, or a later one whose epochs
    are all on disk (it lags by an epoch when its own write failed)."""
    assert not [p for p in run.rglob("*") if ".tmp" in p.name], list(run.rglob("*"))
    m = metrics(run)
    last, best = epoch_of(run / "checkpoints/last.pt"), epoch_of(run / "checkpoints/best.pt")
    history = [int(e) for e in pd.read_csv(run / "history.csv")["epoch"]]
    assert best <= history[-1] <= last <= history[-1] + 1
    if m != original:  # replaced only once a new epoch's files were all written
        assert m["status"] == "running" and m["epochs_run"] >= original["epochs_run"] + 1
        assert m["epochs_run"] <= history[-1] and m["best_epoch"] <= best


@pytest.mark.parametrize("at, skip", [
    ("*last.pt*", 0),          # the first checkpoint of the resume
    ("*metrics.json*", 0),      # the first record of the resume
    pytest.param("invocations.jsonl", 0, marks=pytest.mark.slow),
    pytest.param("train.log", 1, marks=pytest.mark.slow),  # after Hydra's log handler
    pytest.param("*history.csv*", 0, marks=pytest.mark.slow),
    pytest.param("*best.pt*", 0, marks=pytest.mark.slow),
    pytest.param("*last.pt*", 1, marks=pytest.mark.slow),   # after one new epoch
    pytest.param("*metrics.json*", 1, marks=pytest.mark.slow),
])
def test_a_full_disk_during_a_resume_never_empties_the_record(completed_run, tmp_path, at,
                                                              skip):
    run = copy_of(completed_run, tmp_path / "run")
    original = metrics(run)
    proc = cli("--resume", str(run), "train.epochs=4", cwd=tmp_path,
               env=faulty(run, at, skip))
    err = one_paragraph(proc, 1)
    assert "could not be written (No space left on device)" in err and "--resume" in err
    assert_consistent(run, original)
    if skip == 0:
        assert metrics(run) == original  # completed, same numbers
    # the way on that the error gives, once there is space again
    cli("--resume", str(run), "train.epochs=4", cwd=tmp_path, check=True)
    m = metrics(run)
    assert m["status"] == "completed" and m["epochs_run"] == 4 and m["final"]["test"]
    assert_consistent(run, m)


def test_no_space_at_all_is_refused_before_anything_is_written(completed_run, tmp_path):
    run = copy_of(completed_run, tmp_path / "run")
    before = snapshot(run)
    err = one_paragraph(cli("--resume", str(run), cwd=tmp_path, env=faulty(run, full=True)))
    assert "cannot be written" in err and "Free some space" in err
    assert snapshot(run) == before
    fresh = tmp_path / "disk" / "fresh"
    err = one_paragraph(cli(*RUN, f"hydra.run.dir={fresh}", cwd=tmp_path,
                            env=faulty(fresh.parent, full=True)))
    assert not fresh.exists()


def test_an_io_error_in_a_fresh_run_is_recorded_as_failed(tmp_path):
    run = tmp_path / "run"
    proc = cli(*RUN, f"hydra.run.dir={run}", cwd=tmp_path,
               env=faulty(run, "*history.csv*", skip=1, once=True))  # the second epoch's
    err = one_paragraph(proc, 1)
    assert f"{run / 'history.csv'} could not be written" in err
    m = metrics(run)
    assert m["status"] == "failed" and "history.csv" in m["error"]
    # the record names only epochs whose files are all on disk: epoch 2 has its last.pt but
    # not its history row, and best.pt was not promoted past epoch 1
    assert (m["epochs_run"], epoch_of(run / "checkpoints/last.pt")) == (1, 2)
    assert m["best_epoch"] == epoch_of(run / "checkpoints/best.pt") == 1
    assert runs.RunDir(run).invocations()[-1]["outcome"] == "failed"
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


def test_stale_temporary_files_are_removed_when_the_run_is_next_claimed(completed_run,
                                                                        tmp_path):
    run = copy_of(completed_run, tmp_path / "run")
    stale = [run / ".rasp_hydra-metrics.json.99999.tmp",
             run / "checkpoints/.rasp_hydra-last.pt.99999.tmp",
             run / "plots/.rasp_hydra-curves.png.99999.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    cli("--resume", str(run), cwd=tmp_path, check=True)
    assert not any(p.exists() for p in stale)


# ------------------------------------------------- a resume never retrains from nothing

@pytest.fixture(scope="module")
def foreign_runs(tmp_path_factory) -> dict:
    """Runs of another size and of another task, whose checkpoints get copied around."""
    cwd = tmp_path_factory.mktemp("foreign")
    cli(*RUN, "model.d_model=32", f"hydra.run.dir={cwd / 'wider'}", cwd=cwd, check=True)
    cli("lang=sort_10", "model.layers=1", *TINY, f"hydra.run.dir={cwd / 'sort'}", cwd=cwd,
        check=True)
    return {"wider": cwd / "wider", "sort": cwd / "sort"}


@pytest.mark.parametrize("damage, says", [
    ("missing", "last.pt does not exist"),
    ("empty", "last.pt cannot be read (it is empty (0 bytes))"),
    ("wider", "d_model 32 where the run has 16"),
    ("sort", "task sort_10 where the run has hist_10_bos"),
])
def test_a_missing_empty_or_foreign_last_pt_is_refused(completed_run, foreign_runs, tmp_path,
                                                       damage, says):
    run = copy_of(completed_run, tmp_path / "run")
    last = run / "checkpoints/last.pt"
    if damage == "missing":
        last.unlink()
    elif damage == "empty":
        last.write_bytes(b"")
    else:
        last.write_bytes((foreign_runs[damage] / "checkpoints/last.pt").read_bytes())
    before = snapshot(run)
    err = one_paragraph(cli("--resume", str(run), "train.epochs=3", cwd=tmp_path))
    assert says in err and str(last) in err and "train.resume_from=best" in err
    assert "IndexError" not in err
    assert snapshot(run) == before


# ------------------------------------------------------ no non-finite weights are "best"

def test_a_run_that_diverges_at_once_has_no_model_and_says_so(tmp_path):
    run = tmp_path / "run"
    cli(*RUN, "optimizer.lr=1e6", f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    m = metrics(run)
    if m["diverged_epoch"] != 1:
        pytest.skip("this seed's first epoch ended finite")
    assert m["status"] == "diverged" and m["best_epoch"] is None and m["final"] == {}
    assert "no model" in m["reason"]
    assert not (run / "checkpoints/best.pt").exists() and not (run / "checkpoints/last.pt").exists()
    log = (run / "train.log").read_text()
    assert "no model is kept" in log and "keeping the best checkpoint" not in log

    before = snapshot(run)
    err = one_paragraph(cli("--resume", str(run), cwd=tmp_path))
    assert "diverged" in err and "smaller optimizer.lr" in err
    assert snapshot(run) == before

    err = one_paragraph(cli(str(run), "--sequence", "abc", cwd=tmp_path,
                            module="rasp_hydra.draw"))
    assert "has no model to draw" in err
    from rasp_hydra.api import load_run

    with pytest.raises(FileNotFoundError, match="has no model"):
        load_run(run)


# ------------------------------------------------- a sweep outlives a killed job process

def test_a_killed_job_fails_alone_and_the_same_sweep_again_finishes_it(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "lang=hist_10_bos", "model.layers=1", *TINY, "lang.train_size=2000",
            "train.perfect_acc_epochs=100", "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "-m", "rasp_hydra", *args, "train.epochs=60,2,2"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for(sweep / "0" / "history.csv", proc)
    job = json.loads((sweep / "0" / "run.lock").read_text())["pid"]  # the job's own process
    os.kill(job, signal.SIGKILL)  # as the out-of-memory killer does
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert err.strip().splitlines()[-1].startswith(
        f"error: 1 of 3 jobs of {sweep} did not complete (1 failed)")
    assert "killed by SIGKILL" in out + err and "Traceback" not in err
    m = metrics(sweep / "0")
    assert m["status"] == "failed" and m["reason"] == "killed by SIGKILL"
    assert runs.RunDir(sweep / "0").invocations()[-1]["outcome"] == "failed"
    assert [metrics(sweep / n)["status"] for n in "12"] == ["completed", "completed"]

    again = cli(*args, "train.epochs=3,2,2", cwd=tmp_path)  # the same sweep, a shorter job 0
    assert again.returncode == 0, again.stderr
    assert [metrics(sweep / n)["status"] for n in "012"] == ["completed"] * 3


WORKER_SWEEP = ["-m", "lang=hist_10_bos", "model.layers=1", *TINY, "lang.train_size=2000",
                "train.perfect_acc_epochs=1000", "train.seed=0,1"]


def _kill_a_worker(sweep: Path, cwd: Path) -> None:
    """A 2-job sweep on 2 workers whose first job's worker (not the job, nor the sweep) is
    killed once both jobs train: each job ends `interrupted` with its record, and the sweep
    says that a worker died, with its count line and exit code 1."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "rasp_hydra", *WORKER_SWEEP,
                             "train.epochs=1000", "hydra.launcher.n_jobs=2",
                             f"hydra.sweep.dir={sweep}"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, training = [], set()
    for line in proc.stdout:  # both jobs train, each under a worker of its own
        lines.append(line)
        training |= {n for n in "01" if f"[job {n}] epoch   2/" in line}
        if len(training) == 2:
            break
    job = json.loads((sweep / "0" / "run.lock").read_text())["pid"]
    worker = int(Path(f"/proc/{job}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert b"LokyProcess" in Path(f"/proc/{worker}/cmdline").read_bytes()
    os.kill(worker, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    out = "".join(lines) + out
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: a joblib worker process died (exit codes {SIGKILL(-9)}): "
                           f"2 of 2 jobs of {sweep} did not complete (2 interrupted)"), err
    assert "Traceback" not in out + err and "SIGTERM: the sweep stopped" not in err
    assert not list(sweep.glob(".stop.*"))  # no job took its SIGTERM for the sweep's
    for n in "01":
        m = metrics(sweep / n)
        assert (m["status"], m["reason"]) == ("interrupted", "SIGTERM"), (n, m)
        end = runs.RunDir(sweep / n).invocations()[-1]
        assert (end["event"], end["outcome"]) == ("end", "interrupted"), (n, end)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="jobs hear PR_SET_PDEATHSIG")
def test_a_killed_worker_interrupts_every_running_job_with_its_record(tmp_path):
    _kill_a_worker(tmp_path / "sweep", tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="jobs hear PR_SET_PDEATHSIG")
def test_after_a_killed_worker_the_same_sweep_again_finishes_its_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    _kill_a_worker(sweep, tmp_path)
    epochs = max(metrics(sweep / n)["epochs_run"] for n in "01") + 1
    # the same sweep, with a train.epochs a resume may change, on one worker (quicker)
    again = cli(*WORKER_SWEEP, f"train.epochs={epochs}", "hydra.launcher.n_jobs=1",
                f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    for n in "01":
        assert metrics(sweep / n)["status"] == "completed"
        assert [i["event"] for i in runs.RunDir(sweep / n).invocations()] == [
            "start", "end", "resume", "end"]

# ------------------------------------------------- the report tells the living from the dead

def _hold(run: Path) -> subprocess.Popen:
    """A process that claims `run`, writes a `running` record and waits (to be killed)."""
    code = ("import sys, time; from rasp_hydra import runs; "
            "lock = runs.RunDir(sys.argv[1]).lock().acquire().announce(); "
            "r = runs.RunRecord.from_dict({**runs.read_metrics(sys.argv[1]), "
            "'status': 'running', 'final': {}}); runs.write_metrics(sys.argv[1], r); "
            "print('ready', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_the_report_tells_crashed_and_incomplete_runs_from_running_ones(completed_run,
                                                                        tmp_path):
    sweep = tmp_path / "sweep"
    live, killed, no_record, gone, done = (copy_of(completed_run, sweep / name) for name in
                                           ("live", "killed", "no_record", "gone", "done"))
    (no_record / "metrics.json").unlink()
    for run in (killed, gone):
        dead = _hold(run)
        dead.kill()
        dead.wait()
    (gone / "checkpoints/last.pt").unlink()  # and its checkpoints deleted
    holder = _hold(live)
    try:
        proc = cli(str(sweep), "--out", str(tmp_path / "report"), cwd=tmp_path,
                   module="rasp_hydra.report")
        table = pd.read_csv(tmp_path / "report" / "runs.csv")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0, proc.stderr
    status = {Path(d).name: s for d, s in zip(table["run_dir"], table["status"], strict=True)}
    assert status == {"live": "running", "killed": "crashed", "no_record": "incomplete",
                      "gone": "incomplete", "done": "completed"}
    from rasp_hydra.report.tables import counted

    assert list(table.loc[counted(table), "status"]) == ["completed"]  # never accuracy 0
    for word in ("1 running", "1 crashed", "2 incomplete"):
        assert word in proc.stdout


# ---------------------------------------------- every checkpoint read is checked against its run

@pytest.mark.parametrize("damage, says", [
    ("wider", "d_model 32 where the run has 16"),
    ("sort", "task sort_10 where the run has hist_10_bos"),
    ("empty", "best.pt cannot be read (it is empty (0 bytes))"),
    ("missing", "has no best checkpoint"),
])
def test_the_drawer_and_load_run_refuse_a_checkpoint_of_another_run(
        completed_run, foreign_runs, tmp_path, damage, says):
    run = copy_of(completed_run, tmp_path / "run")
    best = run / "checkpoints/best.pt"
    if damage == "missing":
        best.unlink()
    elif damage == "empty":
        best.write_bytes(b"")
    else:
        best.write_bytes((foreign_runs[damage] / "checkpoints/best.pt").read_bytes())
    err = one_paragraph(cli(str(run), "--sequence", "abc", cwd=tmp_path,
                            module="rasp_hydra.draw"))
    assert says in err and "--which last" in err and "IndexError" not in err
    assert not (run / "maps").exists()
    from rasp_hydra.api import load_run

    with pytest.raises((runs.CheckpointError, FileNotFoundError), match=says.split(" (")[0]):
        load_run(run)
    assert load_run(run, which="last").checkpoint == "last"  # the way out works
