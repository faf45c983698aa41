"""benchmarks/gpu_table1.sh end to end on a CPU (`--smoke`): one sweep of a task's four
arch variants at fp32 and bf16, its figures, and a report per precision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# reverse's RASP budget is 2 layers, 1 head: fewer_heads cannot exist; smoke d_model 16
SHAPES = {"predicted": (2, 1, 16), "fewer_layers": (1, 1, 16), "fewer_layers_wider": (1, 2, 32)}


@pytest.mark.slow  # eight tiny jobs and two reports: about 2 minutes on a busy 2-core machine
def test_smoke_runs_the_row_at_both_precisions_and_reports_each(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "benchmarks/gpu_table1.sh", "reverse_10", "--smoke",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "installing" not in proc.stdout
    assert proc.stdout == (out / "table1.log").read_text()
    fig = json.loads((out / "figures.json").read_text())
    sw = fig["sweep"]
    assert (fig["smoke"], fig["task"], sw["exit_status"], sw["stopped_by_budget"]) == \
        (True, "reverse_10", 0, False)
    jobs = sw["jobs"]
    assert sorted((j["arch"], j["precision"]) for j in jobs) == sorted(
        (a, p) for a in (*SHAPES, "fewer_heads") for p in ("fp32", "bf16"))
    for j in jobs:
        if j["arch"] == "fewer_heads":
            assert j["status"] == "skipped"
            continue
        assert (j["status"], j["epochs_run"], j["device"]) == ("completed", 2, "cpu")
        assert (j["layers"], j["heads"], j["d_model"]) == SHAPES[j["arch"]]
        assert j["tokens_per_second"] > 0 and 0 <= j["test_token_acc"] <= 1
        assert (f"  {j['arch']} {j['precision']}: completed, {j['layers']}L{j['heads']}H "
                f"d{j['d_model']}, 2 epochs") in proc.stdout
    for p, r in sw["by_precision"].items():
        rates = [j["tokens_per_second"] for j in jobs if j["precision"] == p
                 and j["status"] == "completed"]
        assert r["jobs"] == 3 and r["gpu_tokens_per_second"] == pytest.approx(sum(rates))
        # 7 tasks' existing variants (3+1+4+3+4+3+3) x 4 lr/gamma pairs
        assert r["grid_jobs"] == 84 and r["grid_hours_100_epochs"] == pytest.approx(
            84 * 100 * r["epoch_seconds_mean"] / sw["jobs_at_a_time"] / 3600)
        assert f"precision {p}: 3 jobs together {r['gpu_tokens_per_second']:,.0f} tokens/s" \
            in proc.stdout
        report = Path(fig["reports"][p]["folder"])
        assert fig["reports"][p]["exit_status"] == 0 and (report / "table1.md").is_file()
        table = (report / "table1.md").read_text()
        assert "missing" not in table and "reverse_10" in table
    assert "bf16 / fp32 tokens/s:" in proc.stdout
