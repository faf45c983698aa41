"""How many jobs of a sweep share one GPU when `hydra.launcher.n_jobs` is not given.

One job at the paper's size keeps a GPU less than a fifth busy (docs/gpu.md: 18% of an
H200's float32 matmul rate; four jobs together went three times as fast as one), so a GPU
sweep runs as many jobs at a time as the GPU's memory and the CPU cores allow:

    jobs = min(memory allows, cores allow, jobs in the sweep), at least 1
    memory allows = 90% of the GPU's free memory // what one job's process takes
    one job's process = 1 GiB + 3 x the memory guard's GPU estimate of the sweep's largest job
    cores allow = this process's CPU cores (one each: a job's Python launches its kernels)

The GPU estimate is `memory.estimate`'s (the splits' tensors, the model with its optimizer
state, one batch); the 1 GiB and the factor 3 cover what it leaves out (the CUDA context,
the caching allocator's blocks, kernel workspaces), from the H200 measurement in
docs/gpu.md: 1,382 MiB per process by nvidia-smi for reverse_100's 264 MiB estimate,
1,994 MiB for hist2_100_bos's largest variant's 396 MiB. The GPU is asked through
nvidia-smi: the sweep's own process must not start CUDA (it would hold a context, hundreds
of MiB, for the whole sweep). Torch-free; `jobs_per_gpu` is the rule, the rest its facts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

MiB = 1024**2
CONTEXT_BYTES = 1024 * MiB  # a CUDA process's own, beyond its tensors
ESTIMATE_FACTOR = 3  # the allocator's cache and workspaces over the estimated tensors
MEMORY_SHARE = 0.9  # of the GPU's free memory: the rest for drift and other processes


@dataclass(frozen=True)
class GpuFacts:
    """What the rule needs to know of one GPU and this machine."""

    name: str
    free_bytes: int
    total_bytes: int
    cores: int


def job_bytes(estimate_bytes: int) -> int:
    """What one job's process takes on the GPU, for the memory guard's estimate of it."""
    return CONTEXT_BYTES + ESTIMATE_FACTOR * estimate_bytes


def jobs_per_gpu(estimate_bytes: int, gpu: GpuFacts, sweep_jobs: int) -> tuple[int, str]:
    """(jobs at a time, the sentence that says why) for a sweep whose largest job the
    memory guard estimates at `estimate_bytes` on the GPU.

    >>> n, why = jobs_per_gpu(264 * MiB, GpuFacts("H100", 80_000 * MiB, 81_559 * MiB, 16), 8)
    >>> n, why.split(": ")[1]
    (8, '8 at a time')
    """
    per_job = job_bytes(estimate_bytes)
    by_memory = int(MEMORY_SHARE * gpu.free_bytes // per_job)
    n = max(1, min(by_memory, gpu.cores, sweep_jobs))
    limit = ("the sweep's own size" if n == sweep_jobs else
             "the GPU's memory" if n == by_memory or by_memory < 1 else "the CPU cores")
    if by_memory < 1:
        limit += " (not even one job fits: one runs anyway, the memory guard has the word)"
    return n, (
        f"jobs per GPU: {n} at a time: {gpu.name} has {gpu.free_bytes / MiB:,.0f} MiB free "
        f"and a job takes about {per_job / MiB:,.0f} MiB (1 GiB for its CUDA context, "
        f"plus 3 x the memory guard's {estimate_bytes / MiB:,.0f} MiB for the largest job), "
        f"so memory allows {by_memory} ({MEMORY_SHARE:.0%} of the free memory); "
        f"{gpu.cores} CPU cores allow {gpu.cores} (one each); the sweep has {sweep_jobs} "
        f"jobs; the limit: {limit} (rasp_hydra/devices.py; hydra.launcher.n_jobs=N sets it)")


def n_jobs_given(hydra_overrides: list[str], n_jobs) -> bool:
    """Whether the user chose hydra.launcher.n_jobs: on the command line, or in a preset
    (a value other than joblib's default, -1).

    >>> n_jobs_given(["hydra.launcher.n_jobs=4"], 4), n_jobs_given([], -1)
    (True, False)
    """
    keys = {o.split("=", 1)[0].lstrip("+~") for o in hydra_overrides}
    return "hydra.launcher.n_jobs" in keys or n_jobs not in (-1, None)


def cpu_cores() -> int:
    """The cores this process may run on (its affinity, else the machine's)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


def gpu_facts(device: str) -> GpuFacts | None:
    """The first visible GPU's facts where a job with `train.device=device` trains on a
    GPU (cuda, or auto with one); None for the CPU or where nvidia-smi cannot tell."""
    if device == "cpu" or shutil.which("nvidia-smi") is None:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    index = (visible.split(",")[0].strip() if visible is not None else "0") or None
    if index is None:  # CUDA_VISIBLE_DEVICES="": no GPU for torch
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.free,memory.total",
             "--format=csv,noheader,nounits", "-i", index],
            capture_output=True, text=True, timeout=30, check=True).stdout
        name, free, total = (x.strip() for x in out.strip().splitlines()[0].rsplit(",", 2))
        return GpuFacts(name, int(float(free) * MiB), int(float(total) * MiB), cpu_cores())
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def largest_estimate(configs) -> int:
    """The memory guard's GPU estimate (bytes) of the largest of these job configs (typed
    Configs); a job whose config cannot train, or is skipped, counts 0 (it says so itself)."""
    from rasp_hydra.job import memory_estimate, resolve_shape, resolve_task, skip_reason

    largest = 0
    for cfg in configs:
        try:
            task = resolve_task(cfg.lang)
            shape = resolve_shape(cfg, task)
            if skip_reason(task, cfg.arch, shape):
                continue
            est = memory_estimate(cfg, task, shape)
        except Exception:  # noqa: BLE001 - the job's own checks give the paragraph
            continue
        largest = max(largest, est.tensors + est.model + est.batch)
    return largest
