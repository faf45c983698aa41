"""The record and the files agree at every instant of the last epoch's writes: a run killed
(as by kill -9) just before any one of them, then resumed, ends bit for bit as the run that
was never killed, and its record's best epoch is the epoch best.pt holds. A first epoch that
does not fit on the disk is recorded as no epoch, and resumes once there is space. A
completed run whose best.pt is gone or another run's is refused, as a missing last.pt is.

The killed runs are tests/kill_writes.py in subprocesses (each write of the trainer wrapped;
os._exit before the N-th)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from rasp_hydra import runs
from tests.conftest import TINY, cli, metrics
from tests.kill_writes import KILLED
from tests.test_run_dir_guarantees import RUN, faulty, one_paragraph, snapshot

ROOT = Path(__file__).resolve().parents[1]
# what a resume may change in the record, and history.csv's wall-clock column
TIMING = {"wall_seconds", "tokens_per_second", "resumes"}


def kill_writes(run_dir: Path, writes: Path, before: int | None = None) -> int:
    args = [] if before is None else [str(before)]
    proc = subprocess.run([sys.executable, "-m", "tests.kill_writes", str(run_dir),
                           str(writes), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode in (0, KILLED), proc.stderr
    return proc.returncode


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> tuple[Path, list[str]]:
    """The run that was never killed, and the names of its writes in order."""
    base = tmp_path_factory.mktemp("whole")
    assert kill_writes(base / "run", base / "writes") == 0
    return base / "run", (base / "writes").read_text().splitlines()


def final_epoch_writes(writes: list[str]) -> range:
    """The indices of the last epoch's writes: from its last.pt to the final record."""
    return range(max(i for i, w in enumerate(writes) if w == "last.pt"), len(writes))


def model(path: Path) -> dict:
    return runs.load_checkpoint(path)["model"]


def assert_same_run(run: Path, whole: Path) -> None:
    """Bit for bit: the record (but its clocks), history.csv (but its seconds), both
    checkpoints' weights; and the record's best epoch is best.pt's."""
    m, w = metrics(run), metrics(whole)
    assert m["status"] == "completed"
    assert {k: v for k, v in m.items() if k not in TIMING} == \
        {k: v for k, v in w.items() if k not in TIMING}
    assert m["best_epoch"] == runs.load_checkpoint(run / runs.files.BEST)["epoch"]
    hist = [pd.read_csv(d / runs.files.HISTORY).drop(columns="seconds") for d in (run, whole)]
    pd.testing.assert_frame_equal(*hist, check_exact=True)
    for name in (runs.files.BEST, runs.files.LAST):
        a, b = model(run / name), model(whole / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_the_uninterrupted_run_writes_best_pt_in_its_last_epoch(whole):
    run, writes = whole
    last = [writes[i] for i in final_epoch_writes(writes)]
    assert last == ["last.pt", "history.csv", "best.pt", "train.log", "metrics.json running",
                    "metrics.json completed", "train.log"]
    assert metrics(run)["best_epoch"] == metrics(run)["epochs_run"] == 3


def _kill_then_resume(whole, tmp_path, offset: int) -> None:
    run_whole, writes = whole
    before = final_epoch_writes(writes)[offset]
    run = tmp_path / "run"
    assert kill_writes(run, tmp_path / "writes", before) == KILLED
    m = metrics(run)
    # the record names only epochs whose files are all there; it may lag them by the
    # epoch whose writes were cut (best.pt then may hold that epoch already)
    last, best = (runs.load_checkpoint(run / n)["epoch"]
                  for n in (runs.files.LAST, runs.files.BEST))
    assert m["epochs_run"] <= len(pd.read_csv(run / runs.files.HISTORY)) <= last
    assert m["best_epoch"] <= best <= last and m["epochs_run"] >= last - 1
    assert kill_writes(run, tmp_path / "writes") == 0
    assert_same_run(run, run_whole)


def test_a_kill_between_last_pt_and_best_pt_resumes_as_if_never_killed(whole, tmp_path):
    _kill_then_resume(whole, tmp_path, 2)  # last.pt and history.csv written, best.pt not


@pytest.mark.slow  # seven kills and resumes: about a minute
@pytest.mark.parametrize("offset", range(7))
def test_a_kill_before_any_write_of_the_last_epoch_resumes_bit_for_bit(whole, tmp_path,
                                                                       offset):
    _kill_then_resume(whole, tmp_path, offset)


# ---------------------------------------------------------------- a first epoch, no space

def test_a_first_epoch_that_does_not_fit_records_no_epoch_and_resumes(tmp_path):
    run = tmp_path / "run"
    proc = cli(*RUN, f"hydra.run.dir={run}", cwd=tmp_path,
               env=faulty(run, "*last.pt*", once=True))  # the first last.pt: an I/O error
    assert "last.pt could not be written" in one_paragraph(proc, 1)
    m = metrics(run)
    assert (m["status"], m["epochs_run"], m["best_epoch"]) == ("failed", 0, 0)
    assert not (run / runs.files.LAST).exists() and not (run / runs.files.BEST).exists()
    assert not (run / runs.files.HISTORY).exists()
    cli("--resume", str(run), cwd=tmp_path, check=True)  # once there is space again
    m = metrics(run)
    assert (m["status"], m["epochs_run"]) == ("completed", 2)
    assert m["best_epoch"] == runs.load_checkpoint(run / runs.files.BEST)["epoch"]


@pytest.mark.slow  # two command lines
def test_a_best_pt_that_fails_is_written_by_the_resume(tmp_path):
    run = tmp_path / "run"
    proc = cli(*RUN, f"hydra.run.dir={run}", cwd=tmp_path,
               env=faulty(run, "*best.pt*", once=True))  # epoch 1's best.pt
    one_paragraph(proc, 1)
    m = metrics(run)
    assert (m["status"], m["epochs_run"], m["best_epoch"]) == ("failed", 0, 0)
    assert runs.load_checkpoint(run / runs.files.LAST)["epoch"] == 1
    cli("--resume", str(run), cwd=tmp_path, check=True)
    m = metrics(run)
    assert (m["status"], m["epochs_run"]) == ("completed", 2)
    assert [r["epoch"] for r in runs.RunDir(run).history()] == [1, 2]
    assert m["best_epoch"] == runs.load_checkpoint(run / runs.files.BEST)["epoch"]


# ------------------------------------------------- a completed run's best.pt, gone or foreign

@pytest.fixture(scope="module")
def completed(tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("completed")
    cli(*RUN, f"hydra.run.dir={cwd / 'run'}", cwd=cwd, check=True)
    cli(*RUN, "model.d_model=32", f"hydra.run.dir={cwd / 'wider'}", cwd=cwd, check=True)
    return {"run": cwd / "run", "wider": cwd / "wider"}


@pytest.mark.parametrize("damage, says", [
    ("missing", "best.pt does not exist, but the run's best epoch is"),
    pytest.param("wider", "d_model 32 where the run has 16", marks=pytest.mark.slow),
])
def test_a_completed_run_without_its_own_best_pt_is_not_resumed(completed, tmp_path, damage,
                                                                says):
    import shutil

    run = Path(shutil.copytree(completed["run"], tmp_path / "run"))
    best = run / runs.files.BEST
    if damage == "missing":
        best.unlink()
    else:
        best.write_bytes((completed["wider"] / runs.files.BEST).read_bytes())
    before = snapshot(run)
    err = one_paragraph(cli("--resume", str(run), "train.epochs=3", cwd=tmp_path))
    assert says in err and str(best) in err
    assert snapshot(run) == before


def test_readers_check_best_pt_against_the_run_config_without_metrics_json(completed,
                                                                           tmp_path):
    import shutil

    from rasp_hydra.api import load_run

    run = Path(shutil.copytree(completed["run"], tmp_path / "run"))
    (run / runs.files.BEST).write_bytes((completed["wider"] / runs.files.BEST).read_bytes())
    (run / runs.files.METRICS).unlink()
    with pytest.raises(runs.CheckpointError, match="d_model 32 where the run has 16"):
        load_run(run, which="best")
    err = one_paragraph(cli(str(run), "--which", "best", "--sequence", "abc", cwd=tmp_path,
                            module="rasp_hydra.draw"))
    assert "d_model 32 where the run has 16" in err
    assert not (run / runs.files.MAPS).exists()
    # a resume checks it against the run's config, record or none, before it writes
    # anything (it used to write invocations/002/ and its lines first)
    before = snapshot(run)
    err = one_paragraph(cli("--resume", str(run), *TINY[-1:], cwd=tmp_path))
    assert "d_model 32 where the run has 16" in err
    assert snapshot(run) == before
