"""A tiny library run that dies just before its N-th write to the run directory, as under
kill -9 (``os._exit``: no handler, no clean-up), for tests/test_write_window.py.

    python -m tests.kill_writes RUN_DIR WRITES_FILE [N]

Every write of the trainer (checkpoints, history.csv, metrics.json, train.log lines) goes
through a ``RunDir`` method; each is wrapped here, so WRITES_FILE gets one line per write
that happened (the file's name), and with N the process ends with status 137 instead of
making write N (counting from 0). Without N the run goes to its end: the uninterrupted run,
or the resume of a killed one (same config: train.resume continues from last.pt).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

KILLED = 137


def spy(kill_before: int | None, writes: Path) -> None:
    from rasp_hydra import runs

    count = [0]

    def wrap(name: str, what):
        real = getattr(runs.RunDir, name)

        def write(self, *args, **kwargs):
            if count[0] == kill_before:
                os._exit(KILLED)
            with open(writes, "a") as f:
                f.write(what(self, *args) + "\n")
            count[0] += 1
            return real(self, *args, **kwargs)

        setattr(runs.RunDir, name, write)

    wrap("save_checkpoint", lambda rd, which, _obj: rd.checkpoint_file(which).name)
    wrap("write_history", lambda *_: runs.files.HISTORY)
    wrap("write_record", lambda _rd, record: f"{runs.files.METRICS} {_status(record)}")
    wrap("log", lambda *_: runs.files.LOG)


def _status(record) -> str:
    return record["status"] if isinstance(record, dict) else record.status


def run(run_dir: Path) -> dict:
    import torch

    from rasp_hydra.config import ModelConfig, OptimizerConfig, TrainConfig
    from rasp_hydra.data import build_splits
    from rasp_hydra.tasks import get_task
    from rasp_hydra.train import train

    torch.set_num_threads(1)
    task = get_task("hist_10_bos")  # conf/debug/tiny.yaml's sizes, 3 epochs that improve
    splits = build_splits(task, sizes={"train": 300, "valid": 50, "test": 50}, max_len=6)
    shape = ModelConfig(layers=1, heads=1, d_model=16, ff=32, max_len=7)
    tc = TrainConfig(epochs=3, num_threads=1, device="cpu", progress="false")
    return train(task, splits, shape, OptimizerConfig(lr=1e-2), train_cfg=tc, run_dir=run_dir,
                 log=lambda _line: None)


if __name__ == "__main__":
    run_dir, writes = Path(sys.argv[1]), Path(sys.argv[2])
    spy(int(sys.argv[3]) if len(sys.argv) > 3 else None, writes)
    run(run_dir)
