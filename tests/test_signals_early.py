"""SIGINT and SIGTERM before the training loop starts (here: while the data is built), on a
real process: an `interrupted` record that says it came before the first epoch, the
invocation's end in invocations.jsonl, one paragraph and exit code 130 or 143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import metrics

# sort_10 with 400,000 training sequences: the data build takes seconds, the signal lands
# in it (the run directory is announced just before)
BIG = ["lang=sort_10", "lang.train_size=400000", "model.d_model=16", "train.epochs=1",
       "train.check_memory=false", "train.num_threads=1"]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_data_build_leaves_an_interrupted_record(sig, code, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rasp_hydra", *BIG, f"hydra.run.dir={run}"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "run directory:" in line, (line, proc.communicate())
    time.sleep(1.0)  # into the data build, before the `start` line
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (out, err)
    assert " start sort_10" not in out  # it never reached the training loop
    name = signal.Signals(sig).name
    assert err.strip() == (f"error: {name} before the first epoch: the run stopped and wrote "
                           f"its record as interrupted; continue it with --resume {run}.")
    m = metrics(run)
    assert m["status"] == "interrupted" and m["reason"] == f"{name} before the first epoch"
    assert not m.get("epochs_run")
    last = json.loads((run / "invocations.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "end" and last["outcome"] == "interrupted"
    assert "interrupted (" in (run / "train.log").read_text()
