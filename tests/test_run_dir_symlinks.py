"""Symlinks inside a run directory, on real processes: a run refuses to start or resume when
a path it writes inside its directory (train.log, invocations.jsonl, metrics.json, run.lock,
checkpoints/ or a checkpoint, .hydra/, ...) is a symlink: one paragraph naming each link and
its target, exit code 2, and nothing written, neither in the directory nor where the links
point. They used to be written through: an outside train.log and invocations.jsonl gained
lines, and a checkpoints/ linked to another run's overwrote that run's checkpoints. The run
directory itself may be a link; a link that appears while the run trains stops it before
its next writes, and the writers themselves never follow one."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY, cli, metrics

RUN = ["lang=hist_10_bos", "model.layers=1", *TINY]


def tree(root: Path) -> dict:
    """Every path below root, links not followed: a link's target, a file's content hash."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            key = str(p.relative_to(root))
            out[key] = ("link", os.readlink(p)) if p.is_symlink() else (
                ("dir",) if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def refused(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "Traceback" not in err and "\n" not in err, err
    assert "holds symlinks where the run writes its own files" in err
    assert "so nothing was written" in err
    return err


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("two")
    for name in ("run", "other"):
        cli(*RUN, f"hydra.run.dir={cwd / name}", cwd=cwd, check=True)
    return {"run": cwd / "run", "other": cwd / "other"}


# a file and a folder in the default suite; the other links of the same rule with -m slow
_slow = pytest.mark.slow
@pytest.mark.parametrize("link", [
    "train.log", "checkpoints",
    *(pytest.param(name, marks=_slow) for name in (
        "invocations.jsonl", "metrics.json", "run.lock", "checkpoints/last.pt", ".hydra"))])
def test_a_resume_through_a_symlink_is_refused_and_writes_nothing(two_runs, tmp_path, link):
    run = Path(shutil.copytree(two_runs["run"], tmp_path / "run"))
    other = Path(shutil.copytree(two_runs["other"], tmp_path / "other"))
    (run / link).unlink() if (run / link).is_file() else shutil.rmtree(run / link)
    (run / link).symlink_to(other / link)  # another run's file or folder
    before, elsewhere = tree(run), tree(other)
    err = refused(cli("--resume", str(run), "train.epochs=3", cwd=tmp_path))
    assert f"{link} -> {other / link}" in err
    assert tree(run) == before and tree(other) == elsewhere
    # the way out: the link replaced by a copy of what it points to
    (run / link).unlink()
    copy = shutil.copytree if (other / link).is_dir() else shutil.copy2
    copy(other / link, run / link)
    cli("--resume", str(run), "train.epochs=3", cwd=tmp_path, check=True)
    assert metrics(run)["epochs_run"] == 3 and tree(other) == elsewhere


def test_a_new_run_into_a_directory_with_a_linked_log_is_refused(tmp_path):
    outside = tmp_path / "outside.log"
    outside.write_text("someone else's log\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").symlink_to(outside)
    err = refused(cli(*RUN, f"hydra.run.dir={run}", cwd=tmp_path))
    assert f"train.log -> {outside}" in err
    assert outside.read_text() == "someone else's log\n"
    assert sorted(p.name for p in run.iterdir()) == ["train.log"]  # the link, left as it was
    assert (run / "train.log").is_symlink()


def test_a_run_directory_that_is_itself_a_link_is_fine(tmp_path):
    (tmp_path / "scratch").mkdir()
    (tmp_path / "outputs").symlink_to(tmp_path / "scratch")  # e.g. outputs/ on another disk
    cli(*RUN, "hydra.run.dir=outputs/run", cwd=tmp_path, check=True)
    assert metrics(tmp_path / "scratch" / "run")["status"] == "completed"


def test_a_sweep_job_with_a_linked_checkpoints_folder_is_not_run(two_runs, tmp_path):
    sweep = tmp_path / "sweep"
    other = Path(shutil.copytree(two_runs["other"], tmp_path / "other"))
    (sweep / "1").mkdir(parents=True)
    (sweep / "1" / "checkpoints").symlink_to(other / "checkpoints")
    elsewhere = tree(other)
    proc = cli("-m", *RUN, "train.seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert f"job not run: {sweep / '1'} holds symlinks" in proc.stdout
    assert "1 of 2 jobs" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert metrics(sweep / "0")["status"] == "completed"
    assert sorted(p.name for p in (sweep / "1").iterdir()) == ["checkpoints"]
    assert tree(other) == elsewhere


def test_a_library_run_refuses_a_linked_checkpoints_folder(tmp_path):
    from rasp_hydra.config import ModelConfig
    from rasp_hydra.data import build_splits
    from rasp_hydra.errors import UserError
    from rasp_hydra.tasks import get_task
    from rasp_hydra.train import TrainConfig, train

    task = get_task("hist_10_bos")
    splits = build_splits(task, sizes={"train": 40, "valid": 10, "test": 10}, min_len=1,
                          max_len=4)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="checkpoints -> .*elsewhere"):
        train(task, splits, ModelConfig(layers=1, heads=1, d_model=16, ff=32, max_len=5),
              train_cfg=TrainConfig(epochs=1, num_threads=1), run_dir=tmp_path / "run",
              log=lambda line: None, handle_signals=False)
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints"]


def test_a_link_that_appears_while_a_run_trains_stops_it_before_its_next_writes(
        two_runs, tmp_path):
    # checked before each epoch's writes, not only at the start: a checkpoints/ swapped for
    # another run's while an epoch trains is never written through
    other = Path(shutil.copytree(two_runs["other"], tmp_path / "other"))
    elsewhere, run = tree(other), tmp_path / "run"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    args = [*RUN, "lang.train_size=40000", "train.epochs=2", "train.num_threads=1",
            f"hydra.run.dir={run}"]
    proc = subprocess.Popen([sys.executable, "-m", "rasp_hydra", *args], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "history.csv").is_file():  # epoch 1's writes are done
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # into epoch 2
    (run / "checkpoints").rename(tmp_path / "kept")
    (run / "checkpoints").symlink_to(other / "checkpoints")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    err = err.strip()
    assert err.startswith("error: ") and "Traceback" not in err + out and "\n" not in err, err
    assert f"checkpoints -> {other / 'checkpoints'}" in err
    assert "the run stopped before its next writes" in err and "--resume" in err
    assert tree(other) == elsewhere  # nothing went through the link
    record = metrics(run)
    assert (record["status"], record["reason"], record["epochs_run"]) == (
        "failed", "SymlinkInside", 1)
    # the way out the paragraph gives: the link replaced by the run's own folder, then resume
    (run / "checkpoints").unlink()
    (tmp_path / "kept").rename(run / "checkpoints")
    cli("--resume", str(run), "train.num_threads=1", cwd=tmp_path, check=True)
    assert metrics(run)["epochs_run"] == 2 and tree(other) == elsewhere


def test_the_writers_themselves_never_follow_a_link(tmp_path):
    # the last line of defence, for a link made between the trainer's check and its write:
    # appends open with O_NOFOLLOW, and an atomic write does not replace a link
    from rasp_hydra import runs

    outside = tmp_path / "outside.txt"
    outside.write_text("someone else's file\n")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("train.log", "invocations.jsonl", "metrics.json"):
        (run / name).symlink_to(outside)
    with pytest.raises(runs.WriteError, match="train.log could not be written .*Replace the "
                                              "link by a copy"):
        runs.append_log(run, "a line")
    with pytest.raises(runs.WriteError, match="invocations.jsonl could not be written"):
        runs.append_invocation(run, event="start")
    with pytest.raises(runs.WriteError, match="metrics.json could not be written"):
        runs.write_metrics(run, runs.RunRecord(status="running"))
    assert outside.read_text() == "someone else's file\n"
    assert all((run / name).is_symlink() for name in ("train.log", "invocations.jsonl",
                                                      "metrics.json"))
    assert sorted(p.name for p in run.iterdir()) == ["invocations.jsonl", "metrics.json",
                                                     "train.log"]  # no temporary file left
