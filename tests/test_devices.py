"""Jobs per GPU: the rule on fake device facts, and a sweep that takes it from a fake
nvidia-smi (on a CPU: the jobs themselves train on the CPU, as train.device=auto finds)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rasp_hydra import devices
from rasp_hydra.devices import GpuFacts, MiB, jobs_per_gpu
from tests.conftest import TINY, cli

H100 = GpuFacts("NVIDIA H100 80GB HBM3", 80_000 * MiB, 81_559 * MiB, 16)


def test_memory_cores_and_the_sweep_each_can_be_the_limit():
    # a paper-size job: the guard's 264 MiB -> 1,024 + 3 * 264 = 1,816 MiB a process
    assert devices.job_bytes(264 * MiB) == 1816 * MiB
    n, why = jobs_per_gpu(264 * MiB, H100, 112)
    assert n == 16 and "memory allows 39" in why and why.endswith(
        "the limit: the CPU cores (rasp_hydra/devices.py; hydra.launcher.n_jobs=N sets it)")
    n, why = jobs_per_gpu(264 * MiB, H100, 8)
    assert n == 8 and "the limit: the sweep's own size" in why
    small = GpuFacts("small", 8_000 * MiB, 8_192 * MiB, 16)
    n, why = jobs_per_gpu(264 * MiB, small, 112)  # 0.9 * 8000 // 1816 = 3
    assert n == 3 and "the limit: the GPU's memory" in why
    n, why = jobs_per_gpu(10_000 * MiB, small, 112)
    assert n == 1 and "not even one job fits" in why
    assert why.startswith("jobs per GPU: 1 at a time: small has 8,000 MiB free")


def test_a_given_n_jobs_is_kept():
    assert devices.n_jobs_given(["hydra.launcher.n_jobs=-1"], -1)
    assert devices.n_jobs_given(["+hydra.launcher.n_jobs=3"], 3)
    assert devices.n_jobs_given([], 2)  # a preset's value
    assert not devices.n_jobs_given(["hydra.sweep.dir=x"], -1)


def test_no_gpu_no_rule(tmp_path, monkeypatch):
    assert devices.gpu_facts("cpu") is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert devices.gpu_facts("auto") is None


def fake_nvidia_smi(folder: Path, free_mib: int) -> dict:
    folder.mkdir()
    smi = folder / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\necho 'Fake GPU, {free_mib}, 8192'\n")
    smi.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_gpu_facts_from_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "bin", 5000)["PATH"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = devices.gpu_facts("auto")
    assert (gpu.name, gpu.free_bytes, gpu.total_bytes) == ("Fake GPU", 5000 * MiB, 8192 * MiB)
    assert gpu.cores == devices.cpu_cores()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.gpu_facts("auto") is None


@pytest.mark.slow  # a sweep of three tiny jobs: about 30 s on a busy 2-core machine
def test_a_gpu_sweep_without_n_jobs_says_how_many_and_its_jobs_share_the_cores(tmp_path):
    env = fake_nvidia_smi(tmp_path / "bin", 5000)  # memory allows 4 tiny jobs
    sweep = tmp_path / "sweep"
    proc = cli("-m", "lang=hist_10_bos", "model.layers=1", *TINY, "train.epochs=1",
               "optimizer.lr=1e-3,3e-3,1e-2", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
               env=env, check=True)
    n = min(4, devices.cpu_cores(), 3)
    first = proc.stdout.splitlines()[0]
    assert f"jobs per GPU: {n} at a time: Fake GPU has 5,000 MiB free" in first
    assert "so memory allows 4" in first and "the sweep has 3 jobs" in first
    assert f"Joblib.Parallel(n_jobs={n}," in proc.stdout
    threads = {json.loads((sweep / str(i) / "metrics.json").read_text())["num_threads"]
               for i in range(3)}
    assert threads == {1}  # train.num_threads=1 by default; null would give cores // n
    given = cli("-m", "lang=hist_10_bos", "model.layers=1", *TINY, "train.epochs=1",
                "hydra.launcher.n_jobs=1", f"hydra.sweep.dir={tmp_path / 'given'}",
                cwd=tmp_path, env=env, check=True)
    assert "jobs per GPU" not in given.stdout
