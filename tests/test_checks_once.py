"""The config is checked once per job: one real run (`python -m rasp_hydra` in its own
process) counts the calls of every check function, and each that ran ran once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY

ROOT = Path(__file__).parents[1]

# Replaces every check function by a counting one before the modules that call them are
# imported (they import the functions by name), then runs the command as `python -m
# rasp_hydra ARGS` does; the counts are written at exit.
COUNTING = """
import atexit, functools, json, sys
sys.path.insert(0, {root!r})
import rasp_hydra.checks as checks
counts = {{}}
def counted(module, name):
    f = getattr(module, name)
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        counts[name] = counts.get(name, 0) + 1
        return f(*args, **kwargs)
    setattr(module, name, wrapper)
for name in dir(checks):
    if name.startswith("check_") and callable(getattr(checks, name)):
        counted(checks, name)
import rasp_hydra.job as job
for name in ("check_job", "check_values", "check_for_task", "check_memory"):
    counted(job, name)
atexit.register(lambda: open({out!r}, "w").write(json.dumps(counts)))
sys.argv = ["rasp_hydra", *sys.argv[1:]]
from rasp_hydra.cli.entry import train
train()
"""


def test_each_check_runs_once_in_a_run(tmp_path):
    out = tmp_path / "counts.json"
    script = tmp_path / "counting.py"
    script.write_text(COUNTING.format(root=str(ROOT), out=str(out)))
    # supervised heads (check_supervision), a given model.max_len (check_max_len) and
    # bf16, which a CPU runs (check_precision)
    args = ["lang=sort_10_bos_with_attns", "arch=predicted", *TINY, "model.max_len=7",
            "train.device=cpu", "train.precision=bf16", "train.progress=false",
            "hydra.run.dir=run"]
    proc = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
    counts = json.loads(out.read_text())
    expected = {"check_job", "check_values", "check_for_task", "check_lang",
                "check_lang_fields", "check_optimizer", "check_train", "check_model_shape",
                "check_supervision", "check_max_len", "check_precision", "check_memory"}
    assert expected <= set(counts), counts
    assert {name: n for name, n in counts.items() if n != 1} == {}, counts
