"""Data building through compiled RASP programs vs the hand-written families, for every
Table 1 task: seconds to build the default splits (50,000 / 1,000 / 1,000 sequences,
lengths 1..100) through ``Task.sample`` + ``Task.outputs``, on one thread, median of
--repeats runs (the two builds alternate, so that load on a shared machine slows both
alike), wall clock and CPU time; the ratio program / hand-written (the brief's bound: at
most 5x). Both tasks draw the same sequences (same base name and sampler), and the
targets are checked to decode to the same classes.

Run: ``python benchmarks/rasp_data_build.py [--repeats 5] [--size 100]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rasp_hydra.data import build_splits
from rasp_hydra.rasp import library
from rasp_hydra.tasks import get_task
from rasp_hydra.tasks.program import make_program_task

# shipped program -> (hand-written task with the same data, alphabet argument, sampler)
TASKS = {
    "reverse": ("reverse_{k}", "{k}", "uniform"),
    "hist_bos": ("hist_{k}_bos", "{k}", "uniform"),
    "hist2_bos": ("hist2_{k}_bos_with_attns", "{k}", "uniform"),
    "sort_bos": ("sort_{k}_bos_with_attns", "{k}", "uniform"),
    "sort_by_freq_bos": ("sort_by_freq_{k}_bos_with_attns", "{k}", "uniform"),
    "dyck1_ptf": ("dyck1_ptf", "1", "dyck"),
    "dyck2_ptf": ("dyck2_ptf", "2", "dyck"),
}


def timed(fns, repeats: int) -> list[tuple[float, float, object]]:
    """Median wall and CPU seconds of each function, and its last result; the functions
    run in turn, ``repeats`` rounds, so that a noisy machine slows them alike."""
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    outs: list = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            outs[i] = fn()
            wall[i].append(time.perf_counter() - t0)
            cpu[i].append(time.process_time() - c0)
    return [(statistics.median(w), statistics.median(c), o)
            for w, c, o in zip(wall, cpu, outs, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=100, help="alphabet size k")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; splits 50000/1000/1000, lengths 1..100")
    print(f"{'program':<18} {'hand-written task':<30} {'hand s':>7} {'(cpu)':>6} "
          f"{'program s':>9} {'(cpu)':>6} {'ratio':>6} {'cpu ratio':>9}  same")
    for prog, (task_fmt, alphabet, sampler) in TASKS.items():
        _, bos = library.TABLE1[prog]
        hand = get_task(task_fmt.format(k=args.size))
        program = make_program_task(library.program(prog),
                                    alphabet=int(alphabet.format(k=args.size)), bos=bos,
                                    with_attns=hand.with_attns, sampler=sampler,
                                    base=hand.base_name)
        (hw, hc, hs), (pw, pc, ps) = timed(
            [lambda t=hand: build_splits(t, seed=0), lambda t=program: build_splits(t, seed=0)],
            args.repeats)
        same = all(
            hand.decode_outputs(hs[s].targets.clamp(min=0), hs[s].lengths)
            == program.decode_outputs(ps[s].targets.clamp(min=0), ps[s].lengths)
            for s in ("valid", "test"))
        print(f"{prog:<18} {hand.name:<30} {hw:>7.2f} {hc:>6.2f} {pw:>9.2f} {pc:>6.2f} "
              f"{pw / hw:>6.1f} {pc / hc:>9.1f}  {same}")


if __name__ == "__main__":
    main()
