"""The GPU check end to end on a CPU (`--smoke`), and the errors where a GPU is asked for
and none exists (CUDA_VISIBLE_DEVICES="" hides any GPU, so these hold on a GPU machine too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY, cli

ROOT = Path(__file__).resolve().parents[1]
# hist2's RASP budget is 2 layers, 2 heads; the smoke run's d_model is 16
SWEEP_SHAPES = {"predicted": (2, 2, 16), "fewer_heads": (2, 1, 16), "fewer_layers": (1, 2, 16),
                "fewer_layers_wider": (1, 4, 32)}


def gpu_check(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "benchmarks/gpu_check.sh", *args], cwd=ROOT,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = gpu_check("--smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, out, json.loads((out / "figures.json").read_text())


def test_smoke_installs_nothing_and_logs_what_it_printed(smoke):
    proc, out, fig = smoke
    assert "installing" not in proc.stdout  # everything imports here
    assert proc.stdout == (out / "gpu_check.log").read_text()
    assert fig["smoke"] is True and fig["machine"]["device"] == "cpu"
    assert "== summary ==" in proc.stdout


def test_smoke_throughput_figures(smoke):
    proc, _, fig = smoke
    tp = fig["throughput"]
    assert tp["exit_status"] == 0
    assert [c["case"] for c in tp["cases"]] == ["a", "b"]
    for c in tp["cases"]:
        assert (c["device"], c["d_model"], c["ff"], c["steps"]) == ("cpu", 32, 64, 3)
        assert c["tokens_per_s"] > 0 and c["seconds"] > 0 and 0 <= c["padding"] < 1
        assert c["model_gflops"] == pytest.approx(c["fraction"] * c["matmul_gflops"])
        assert 0 < c["fraction"] < 2 and c["peak_memory_bytes"] is None
        assert (f"throughput ({c['case']}) {c['task']} {c['layers']}L{c['heads']}H d32: "
                f"{c['tokens_per_s']:,.0f} tokens/s, {c['fraction']:.1%} of matmul"
                ) in proc.stdout


def test_smoke_epoch_figures(smoke):
    proc, out, fig = smoke
    ep = fig["epoch"]
    assert (ep["exit_status"], ep["status"], ep["train_sequences"]) == (0, "completed", 300)
    assert 0 < ep["epoch_seconds"] < ep["wall_seconds"] <= ep["seconds"]
    metrics = json.loads((out / "epoch" / "metrics.json").read_text())
    assert (metrics["epochs_run"], metrics["device"], metrics["d_model"]) == (1, "cpu", 16)
    assert ep["tokens_per_second"] == metrics["tokens_per_second"] > 0
    assert "peak_allocated_bytes" not in ep  # no CUDA in this process
    assert f"epoch: completed, 300 sequences, epoch {ep['epoch_seconds']:.1f} s" in proc.stdout


def test_smoke_sweep_figures(smoke):
    proc, out, fig = smoke
    sw = fig["sweep"]
    assert (sw["exit_status"], sw["n_jobs"], sw["epochs"]) == (0, 4, 1)
    shapes = {j["arch"]: (j["layers"], j["heads"], j["d_model"]) for j in sw["jobs"]}
    assert shapes == SWEEP_SHAPES
    for j in sw["jobs"]:
        assert (j["status"], j["epochs_run"], j["num_threads"], j["device"]) \
            == ("completed", 1, 1, "cpu")
        assert 0 < j["wall_seconds"] < sw["wall_seconds"] and 0 <= j["test_token_acc"] <= 1
    assert len(list(out.glob("sweep/*/metrics.json"))) == 4
    assert (f"sweep: 4 jobs (4 completed), 4 at a time, 1 epochs, wall "
            f"{sw['wall_seconds']:.1f} s; threads per job [1]") in proc.stdout


def test_gpu_check_without_a_gpu_says_so_before_any_work(tmp_path):
    out = tmp_path / "out"
    proc = gpu_check("--out", str(out), env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no CUDA device") and "--smoke" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_throughput_on_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    proc = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--device", "cuda"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_device_cuda_without_a_gpu_is_one_paragraph(cli_cwd, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    proc = cli("train.device=cuda", *TINY, cwd=cli_cwd)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: train.device=cuda") and "Traceback" not in proc.stderr
    assert "no CUDA device" in proc.stderr and "train.device=auto" in proc.stderr
    assert not list((cli_cwd / "outputs").rglob("metrics.json"))
