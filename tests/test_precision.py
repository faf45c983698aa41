"""train.precision on the CPU: bf16 autocast trains and learns, the record and a resume keep
the precision, and what the CPU cannot do (TF32) is refused with one paragraph."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rasp_hydra import runs
from rasp_hydra.checks import check_precision
from rasp_hydra.config import ConfigError, ModelConfig, OptimizerConfig, TrainConfig
from rasp_hydra.data import build_splits
from rasp_hydra.tasks import get_task
from rasp_hydra.train import train
from rasp_hydra.train.trainer import matmul_precision
from tests.conftest import TINY, cli, metrics


def quiet(_line):
    pass


@pytest.fixture(scope="module")
def hist():
    # conf/debug/tiny.yaml's sizes (d_model 16, max_len 6, 300/50/50 sequences)
    task = get_task("hist_10_bos")
    splits = build_splits(task, sizes={"train": 300, "valid": 50, "test": 50}, max_len=6)
    return task, splits, ModelConfig(layers=1, heads=1, d_model=16, ff=32, max_len=7)


def run(hist, path, precision, epochs=8, **kw):
    task, splits, shape = hist
    tc = TrainConfig(epochs=epochs, precision=precision, num_threads=1, progress="false",
                     device="cpu", **kw)
    return train(task, splits, shape, OptimizerConfig(lr=1e-2), train_cfg=tc, run_dir=path,
                 log=quiet)


def test_bf16_autocast_learns_as_float32_does(hist, tmp_path):
    fp32 = run(hist, tmp_path / "fp32", "fp32")
    bf16 = run(hist, tmp_path / "bf16", "bf16")
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    first = runs.RunDir(tmp_path / "bf16").history()[0]["train_loss"]
    assert first > 1.5  # about ln(11) for 11 classes at the start
    for m in (fp32, bf16):
        assert m["status"] == "completed" and m["final"]["valid"]["loss"] < 0.6
    # bfloat16 matmuls: not the same bits as float32, but the same learning
    assert bf16["final"]["valid"]["loss"] != fp32["final"]["valid"]["loss"]
    assert bf16["final"]["valid"]["loss"] == pytest.approx(fp32["final"]["valid"]["loss"],
                                                           abs=0.05)
    # float32 master weights and optimizer state
    last = runs.load_checkpoint(tmp_path / "bf16" / runs.files.LAST)
    assert last["precision"] == "bf16"
    assert {t.dtype for t in last["model"].values() if t.is_floating_point()} == {torch.float32}
    moments = [v for s in last["optimizer"]["state"].values() for k, v in s.items()
               if k.startswith("exp_avg")]
    assert moments and {t.dtype for t in moments} == {torch.float32}


def test_a_library_resume_keeps_the_precision_and_refuses_another(hist, tmp_path):
    whole = run(hist, tmp_path / "whole", "bf16", epochs=4)
    run(hist, tmp_path / "cut", "bf16", epochs=2)
    with pytest.raises(ConfigError, match=r"train.precision=bf16, but this run asks for fp32"):
        run(hist, tmp_path / "cut", "fp32", epochs=4)
    resumed = run(hist, tmp_path / "cut", "bf16", epochs=4)
    assert resumed["precision"] == "bf16" and resumed["resumes"] == 1
    assert resumed["final"] == whole["final"]  # bit for bit, as a float32 resume is


def test_tf32_on_the_cpu_is_refused_and_the_checks_of_a_gpu():
    with pytest.raises(ConfigError, match="TF32 matmuls, a mode of NVIDIA GPUs") as err:
        check_precision("tf32", "cpu", None)
    assert "\n" not in str(err.value)
    check_precision("bf16", "cpu", None)
    check_precision("fp32", "cpu", None)
    for p in ("tf32", "bf16"):
        check_precision(p, "cuda", (9, 0))  # H100, H200
        with pytest.raises(ConfigError, match="compute capability 8.0 or later"):
            check_precision(p, "cuda", (7, 0))  # V100
    with pytest.raises(ConfigError, match="allowed: fp32, tf32, bf16"):
        check_precision("fp16", "cpu", None)


def test_matmul_precision_is_set_for_the_run_and_restored():
    before = torch.get_float32_matmul_precision()
    with matmul_precision("tf32"):
        assert torch.get_float32_matmul_precision() == "high"
    with matmul_precision("fp32"):
        assert torch.get_float32_matmul_precision() == "highest"
    assert torch.get_float32_matmul_precision() == before


@pytest.mark.slow  # four command lines: about 40 s on a busy 2-core machine
def test_cli_records_keeps_and_refuses(cli_cwd):
    """The command line: bf16 recorded, kept by --resume, a resume that changes it and tf32
    on the CPU refused with one paragraph and exit 2, nothing written."""
    run_dir = cli_cwd / "run"
    cli(*TINY, "train.precision=bf16", "train.device=cpu", f"hydra.run.dir={run_dir}",
        cwd=cli_cwd, check=True)
    assert metrics(run_dir)["precision"] == "bf16"
    before = (run_dir / "metrics.json").read_text()
    proc = cli("--resume", str(run_dir), "train.precision=fp32", cwd=cli_cwd)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "train.precision: 'bf16' -> 'fp32'" in proc.stderr
    assert (run_dir / "metrics.json").read_text() == before
    cli("--resume", str(run_dir), "train.epochs=3", cwd=cli_cwd, check=True)
    m = metrics(run_dir)
    assert (m["precision"], m["epochs_run"], m["resumes"]) == ("bf16", 3, 1)
    proc = cli(*TINY, "train.precision=tf32", "train.device=cpu",
               f"hydra.run.dir={cli_cwd / 'tf32'}", cwd=cli_cwd)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("error:") == 1 and "TF32 matmuls" in proc.stderr
    assert not (cli_cwd / "tf32").exists()


def test_the_default_stays_float32(hist, tmp_path):
    m = run(hist, tmp_path / "default", TrainConfig().precision, epochs=1)
    assert m["precision"] == "fp32" and math.isfinite(m["final"]["test"]["loss"])
    assert json.loads((tmp_path / "default" / "metrics.json").read_text())["precision"] == "fp32"
