"""Data speed for every Table 1 task at the default sizes (50,000 / 1,000 / 1,000,
lengths 1..100), on one thread:

- seconds to build all splits (sampling + targets), median of --repeats runs (wall
  clock, and CPU time of this process, which a busy machine inflates less);
- microseconds to compute all selectors (target and reference heads; the
  ``_with_attns`` variant where one exists) of one batch of 50 sequences of length 100,
  median of many calls.

Targets: < 2 s per task, < 1000 us per batch.  Run: ``python benchmarks/data_build.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rasp_hydra.data import build_splits
from rasp_hydra.tasks import get_task

TABLE1 = ["reverse_100", "hist_100_bos", "hist2_100_with_attns", "sort_100_with_attns",
          "sort_by_freq_100_with_attns", "dyck1_ptf", "dyck2_ptf"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; splits 50000/1000/1000, lengths 1..100")
    print(f"{'task':<30} {'build s':>8} {'(cpu s)':>8} {'selectors us':>13} {'heads':>6}")
    for name in TABLE1:
        task = get_task(name)
        build, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            build_splits(task, seed=0)
            build.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        tokens, lengths = task.sample(50, seed=0, split="bench", min_len=100, max_len=100)
        task.selectors(tokens, lengths)  # warm up
        calls = []
        for _ in range(args.calls):
            t0 = time.perf_counter()
            task.selectors(tokens, lengths)
            calls.append(time.perf_counter() - t0)
        print(f"{name:<30} {statistics.median(build):>8.2f} {statistics.median(cpu):>8.2f} "
              f"{statistics.median(calls) * 1e6:>13.0f} {len(task.selector_heads):>6}")


if __name__ == "__main__":
    main()
