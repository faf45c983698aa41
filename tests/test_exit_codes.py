"""One test per exit code of `python -m rasp_hydra` (the table in rasp_hydra/errors.py), each
on a real process: 0 done, 1 a sweep with a failed job, 2 refused (a misspelled key, a wrong
type, a refused value), 3 held, 130/143 interrupted after the record says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import TINY, cli, metrics

# long enough to be stopped mid-run: an epoch takes a fraction of a second
LONG = ["lang=sort_10", "model.d_model=32", "lang.max_len=8", "lang.train_size=3000",
        "lang.valid_size=100", "lang.test_size=100", "train.num_threads=1",
        "train.epochs=200", "train.perfect_acc_epochs=1000"]


def refused(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The process exited `code` with one "error:" paragraph and no traceback."""
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: "), proc.stderr
    return proc.stderr


def test_0_a_tiny_run(tmp_path):
    proc = cli(*TINY, "train.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert metrics(tmp_path / "run")["status"] == "completed"


def test_1_a_sweep_with_a_failed_job(tmp_path):
    # hist_10_bos needs 7 positions (BOS and 6 tokens): model.max_len=6 fails that job
    proc = cli("-m", "lang=hist_10_bos", "model.max_len=6", *TINY,
               f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "1 of 1 jobs" in proc.stderr and "did not complete" in proc.stderr
    assert metrics(tmp_path / "sweep" / "0")["status"] == "failed"


@pytest.mark.parametrize("override, said", [
    ("model.layerz=2", "Key 'layerz' not in 'ModelConfig'"),  # Hydra's own message, kept
    ("model.layers=two", "Value 'two' of type 'str' could not be converted to Integer"),
    ("model.dropout=1.5", "model.dropout"),  # a refused value
])
def test_2_a_misspelled_key_a_wrong_type_a_refused_value(tmp_path, override, said):
    run = tmp_path / "run"
    err = refused(cli(*TINY, override, f"hydra.run.dir={run}", cwd=tmp_path))
    assert said in err
    assert not run.exists()  # refused before anything was written


def test_3_a_run_directory_another_process_holds(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from rasp_hydra import runs; "
         "lock = runs.RunDir(sys.argv[1]).lock().acquire().announce(); "
         "print('ready', flush=True); time.sleep(600)", str(run)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        err = refused(cli(*TINY, f"hydra.run.dir={run}", cwd=tmp_path), code=3)
        assert f"process {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_130_143_a_run_stopped_by_a_signal_exits_after_its_record(tmp_path, sig, code):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rasp_hydra", *LONG, f"hydra.run.dir={run}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stdout:  # the first epoch's line: training is under way
            if "epoch   1/" in line:
                break
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, (out, err)
    m = metrics(run)
    assert m["status"] == "interrupted" and m["reason"] == sig.name
    assert err.strip().splitlines()[-1].startswith(f"error: {sig.name}: "), err
    assert "--resume" in err and "Traceback" not in err
