"""Seconds to probe a paper-size run: ``python -m rasp_hydra.probe`` end to end (data,
program values, residual streams, every (s-op, layer) probe for the trained model and the
control), on a model of the paper's size (d_model 256, ff 512) and data (1..100 tokens).

    python benchmarks/probe_speed.py [--threads N] [--sequences 500] [--positions 4000]

The fit cost does not depend on training, so each case is a run directory written here
(under a temporary folder) holding an untrained model's checkpoint:
  (a) reverse_100: 2 layers, 1 head; s-ops tokens, indices, length, reverse
  (b) sort_by_freq_26_bos: 3 layers, 2 heads; ten s-ops (the program's named ones)
It prints wall and CPU seconds (of all the process's threads). On a machine shared with
other work the wall time includes waiting for a core; with ``--threads 1`` (the fits use
one BLAS thread anyway) the CPU seconds are the probe's own work, the wall time it takes
on an idle core.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train_throughput.py

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from rasp_hydra import probe, runs  # noqa: E402
from rasp_hydra.config import ModelConfig  # noqa: E402
from rasp_hydra.model import Encoder  # noqa: E402
from rasp_hydra.tasks import get_task  # noqa: E402

CASES = [("reverse_100", "reverse", 100, False, 2, 1), ("sort_by_freq_26_bos", "sort_by_freq",
                                                        26, True, 3, 2)]


def fake_run(root: str, name: str, family: str, size: int, bos: bool, layers: int,
             heads: int) -> str:
    """A completed run directory with an untrained paper-size model."""
    task = get_task(name)
    run_dir = os.path.join(root, name)
    os.makedirs(os.path.join(run_dir, ".hydra"))
    lang = {"family": family, "size": size, "bos": bos, "min_len": 1, "max_len": 100,
            "train_size": 50000, "valid_size": 1000, "test_size": 1000, "data_seed": 0}
    OmegaConf.save({"lang": lang, "train": {"seed": 0}},
                   os.path.join(run_dir, ".hydra", "config.yaml"))
    cfg = ModelConfig(layers=layers, heads=heads, d_model=256, ff=512, max_len=101)
    torch.manual_seed(1)
    model = Encoder(cfg, task.vocab_size, task.n_out, task.pad_id)
    runs.RunDir(run_dir).save_checkpoint("best", {
        "model": model.state_dict(), "model_config": model.config_dict(), "epoch": 0,
        "task_spec": {"family": family, "size": size, "bos": bos, "with_attns": False}})
    runs.RunDir(run_dir).write_record({"status": "completed", "seed": 0})
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--sequences", type=int, default=probe.DEFAULT_SEQUENCES)
    parser.add_argument("--positions", type=int, default=probe.MAX_POSITIONS)
    parser.add_argument("--cases", default=",".join(c[0] for c in CASES))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, sequences {args.sequences} per split, "
          f"at most {args.positions} / {args.positions // 2} positions; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as root:
        for case in CASES:
            if case[0] not in args.cases.split(","):
                continue
            run_dir = fake_run(root, *case)
            start, cpu = time.perf_counter(), time.process_time()
            res = probe.probe_run(run_dir, sequences=args.sequences, positions=args.positions)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            df = res["frame"]
            fits = 2 * int((df["kind"] != "constant").sum())
            print(f"{case[0]}: {case[4]} layers, {df['sop'].nunique()} s-ops, {fits} fits: "
                  f"{seconds:.1f} s wall, {cpu:.1f} s CPU (all threads)", flush=True)


if __name__ == "__main__":
    main()
