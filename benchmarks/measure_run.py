"""Run `python -m rasp_hydra OVERRIDES` in this process, then print its wall time and,
on a GPU, its peak GPU memory.

    python benchmarks/measure_run.py [--json PATH] -- lang=reverse_100 model=paper \\
        train.epochs=1 train.device=cuda

The run is the real command line (the same Hydra app, config checks and run directory),
executed with runpy as `python -m` would; only this process sees its CUDA allocator, so
the peak is torch.cuda.max_memory_allocated() (tensors) and max_memory_reserved() (what
the caching allocator took from the GPU; add the CUDA context, a few hundred MiB, for
what nvidia-smi shows). The exit status is the run's own.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import time


def cuda_figures() -> dict:
    """Peak memory of this process's CUDA allocator; empty if CUDA was never used."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    import torch  # the real module even if the command line put a lazy stand-in there

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    return {"gpu": torch.cuda.get_device_name(),
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, overrides = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) \
        if "--" in argv else ([], argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(ours)
    # as `python -m rasp_hydra` would start (its __main__ sets it too, for the run itself)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.argv = ["rasp_hydra", *overrides]
    t0 = time.perf_counter()
    code: int | str | None = 0
    try:
        runpy.run_module("rasp_hydra", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code
    figures = {"command": "python -m rasp_hydra " + " ".join(overrides),
               "exit_status": code if isinstance(code, int) else (0 if code is None else 1),
               "wall_seconds": time.perf_counter() - t0, **cuda_figures()}
    line = f"measured: exit {figures['exit_status']}, wall {figures['wall_seconds']:.1f} s"
    if "peak_allocated_bytes" in figures:
        line += (f", {figures['gpu']}: peak allocated "
                 f"{figures['peak_allocated_bytes'] / 2**20:,.0f} MiB, peak reserved "
                 f"{figures['peak_reserved_bytes'] / 2**20:,.0f} MiB")
    print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    if isinstance(code, str):  # sys.exit("message"): runpy already printed nothing
        print(code, file=sys.stderr)
    return figures["exit_status"]


if __name__ == "__main__":
    sys.exit(main())
