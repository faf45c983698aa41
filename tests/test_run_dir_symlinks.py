"""Symlinks inside a run directory, on real processes: a run refuses to start or resume when
a path it writes inside its directory (train.log, invocations.jsonl, metrics.json, run.lock,
checkpoints/ or a checkpoint, .hydra/, ...) is a symlink: one paragraph naming each link and
its target, exit code 2, and nothing written, neither in the directory nor where the links
point. They used to be written through: an outside train.log and invocations.jsonl gained
lines, and a checkpoints/ linked to another run's overwrote that run's checkpoints. The run
directory itself may be a link."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
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
