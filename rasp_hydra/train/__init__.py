"""The training loop of the original experiments: `train()` runs a `Trainer` step by step.

    from rasp_hydra.tasks import get_task
    from rasp_hydra.data import build_splits
    from rasp_hydra.config import ModelConfig
    from rasp_hydra.train import TrainConfig, train

    task = get_task("hist_10_bos")
    splits = build_splits(task, sizes={"train": 2000, "valid": 200, "test": 200}, max_len=10)
    cfg = ModelConfig(layers=1, heads=1, d_model=64, ff=128, max_len=11)
    metrics = train(task, splits, cfg, train_cfg=TrainConfig(epochs=20), run_dir="out/run")

The procedure (docs/tasks.md, "Training defaults"), once per epoch:
  1. train on length-bucketed batches in an order that depends only on (seed, epoch);
     loss = per-sequence mean cross-entropy, averaged over the batch, plus
     attn_loss_c * (MSE between supervised heads' attention and their row-normalized
     target selectors over real query rows and keys, averaged over the heads);
  2. validate (loss, token and sequence accuracy, attention match of selector heads);
  3. keep the best validation loss in checkpoints/best.pt; after more than
     reset_patience epochs without improvement, reload it (weights and optimizer moments)
     and go on at the current learning rate;
  4. decay the learning rate (exponential, gamma) and write checkpoints/last.pt,
     history.csv, train.log and metrics.json;
  5. stop early after perfect_acc_epochs epochs in a row of validation token accuracy 1.0.
At the end (or on SIGINT/SIGTERM, after the current batch) the best checkpoint is reloaded
and evaluated on every split. "loss" everywhere is the training objective (cross-entropy
plus the weighted attention term for supervised runs; "attn_loss" is the unweighted MSE).
A loss that becomes NaN or infinite ends the run as "diverged" after that epoch, keeping
the best checkpoint and the last.pt of the epoch before; if no epoch ended finite, the run
keeps no model (no best.pt, best_epoch None) and says so.

Each epoch writes last.pt, history.csv, best.pt (if better), then metrics.json, each
atomically: a write that fails (runs.WriteError) leaves a record that describes files that
are all there. A resume refuses a last.pt that is missing, empty, unreadable or another
run's when the run has finished epochs (RunDir.resume_problem), and a diverged run.

Resume: checkpoints/last.pt holds the model, optimizer, scheduler, trainer counters,
history, and torch RNG state, written after every epoch (and after the last batch on an
interrupt), so a resumed run continues exactly where the checkpoint was taken: on CPU with
the same thread count the final metrics are bit-identical to an uninterrupted run.
`train.resume_from=best` continues from best.pt instead (the way out when last.pt is
broken): its epoch, weights and optimizer moments, the learning rate the schedule gives
after that epoch, and the history up to it; the batch order and dropout are reseeded, so
it is not bit-exact.

The package in four parts: ``losses`` (the objective and the metrics, batched), ``trainer``
(the `Trainer`, its steps and checkpoints), ``record`` (the `Recorder` of metrics.json,
train.log and the curves, and the console's lines) and ``loop`` (`train()` itself).
"""

from __future__ import annotations

# the names that job.py, the API, the drawer, the tests and the benchmarks import from here
from rasp_hydra.config import OptimizerConfig, ScheduleConfig, TrainConfig
from rasp_hydra.train.loop import check_run, logger, train  # noqa: F401
from rasp_hydra.train.losses import (  # noqa: F401
    IGNORE,
    attention_terms,
    evaluate,
    present_heads,
    selector_targets,
    sequence_loss,
)
from rasp_hydra.train.record import Recorder, show_progress  # noqa: F401
from rasp_hydra.train.trainer import (  # noqa: F401
    EpochStats,
    Trainer,
    make_optimizer,
    make_scheduler,
    resolve_device,
)

__all__ = ["OptimizerConfig", "ScheduleConfig", "TrainConfig", "evaluate", "train"]
