"""A signal to a sweep on real processes: Ctrl+C to its process group, SIGTERM to its own
process. Each running job ends `interrupted` with its record, no new job starts, and the
sweep ends with its count line and exit code 130 or 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import metrics

SLOW = ["-m", "lang=sort_10", "lang.train_size=3000", "model.d_model=32", "lang.max_len=8",
        "train.epochs=200", "train.num_threads=1", "train.seed=0,1,2,3",
        "hydra.launcher.n_jobs=2"]


@pytest.mark.parametrize("sig, group, code", [(signal.SIGINT, True, 130),
                                              (signal.SIGTERM, False, 143)])
def test_a_signal_stops_the_sweep_with_every_record(sig, group, code, tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "rasp_hydra", *SLOW,
                             f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    for line in proc.stdout:  # both workers' jobs train
        if "epoch   2/200" in line:
            break
    if group:
        os.killpg(proc.pid, sig)  # as Ctrl+C reaches the terminal's process group
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == code, (out, err)
    name = signal.Signals(sig).name
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: {name}: the sweep stopped in 0:"), err
    assert f"jobs of {sweep} did not complete" in last and "Traceback" not in err
    statuses = {}
    for n in range(4):
        run = sweep / str(n)
        statuses[n] = metrics(run)["status"] if (run / "metrics.json").is_file() else None
        if statuses[n]:
            assert statuses[n] == "interrupted" and metrics(run)["reason"] == name
    assert "interrupted" in statuses.values() and None in statuses.values(), statuses
    assert f"{list(statuses.values()).count('interrupted')} interrupted" in last
