"""What a run says about itself: the `Recorder` writes metrics.json (a runs.RunRecord),
train.log and the curves, and makes their lines (the first one, each epoch's, the final
one, what a diverged run keeps); the console's progress bar over an epoch's batches. Its
one reason to change: what the record and the console say.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import torch

from rasp_hydra import runs
from rasp_hydra.config import ModelConfig
from rasp_hydra.train.trainer import Trainer, TrainState


def _terminal_width() -> int:
    """stderr's columns; 0 for a pty that has no width (`script`) or no terminal at all."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


def show_progress(progress) -> bool:
    """train.progress: auto draws a bar on a terminal that has a width; true always."""
    progress = str(progress).lower()
    if progress == "auto":
        return sys.stderr.isatty() and _terminal_width() > 0
    return progress == "true"


class ProgressBar:
    """A tqdm bar over one epoch's batches, with the loss and tokens/s."""

    def __init__(self, epoch: int, total: int, initial: int):
        from tqdm import tqdm

        width = _terminal_width()  # a pty of 0 columns (asked for with true): 80
        self.tqdm = tqdm(total=total, initial=initial, desc=f"epoch {epoch}", leave=False,
                         dynamic_ncols=width > 0, ncols=None if width > 0 else 80)

    def step(self, loss: torch.Tensor, tokens: int, t0: float) -> None:
        self.tqdm.update(1)
        if self.tqdm.n % 20 == 0:  # reading the loss syncs the device: not every batch
            rate = tokens / max(time.perf_counter() - t0, 1e-9)
            self.tqdm.set_postfix(loss=f"{loss.detach().item():.4f}", tok_s=f"{rate:,.0f}")

    def close(self) -> None:
        self.tqdm.close()


class Recorder:
    """The run's record: metrics.json, train.log, history.csv and the curves.

    A run that already holds a finished record (a resume) keeps it until this session
    has a whole epoch on disk (last.pt, history.csv, best.pt), and keeps it when it fails
    before that: a failure never rewrites the status of finished work. metrics.json is
    always written last, so it never describes files that are not there.
    """

    def __init__(self, run_dir, record: runs.RunRecord, log: Callable[[str], None]):
        self.rd, self.record, self.log = runs.RunDir(run_dir), record, log
        self.run_dir = self.rd.path
        previous = self.rd.record()
        self.previous = previous if previous.get("status") in runs.FINAL_STATUSES else None
        self.session_start = time.perf_counter()
        self.epochs_this_session = 0
        self._last_plot = 0.0
        self.wrote = False  # whether this session has replaced the record
        # (epochs, best epoch) whose files are all on disk: what a failure may name
        self.on_disk = (0, 0)

    def start(self, st: TrainState) -> None:
        """A new run says `running` at once; a resumed one keeps its record for now."""
        self.on_disk = (st.epoch, st.best_epoch)  # restored: its files agree (finished)
        if self.previous is None:
            self.update(st)

    def line(self, text: str) -> None:
        self.rd.log(text)
        self.log(text)

    def wall_seconds(self, st: TrainState) -> float:
        return st.wall_seconds + time.perf_counter() - self.session_start

    def update(self, st: TrainState, **fields) -> None:
        self.record.epochs_run, self.record.best_epoch = st.epoch, st.best_epoch
        self.record.wall_seconds = self.wall_seconds(st)
        self.record.tokens_per_second = st.tokens_per_second
        self.record.resumes = st.resumes
        for k, v in fields.items():
            setattr(self.record, k, v)
        self.rd.write_record(self.record)
        self.wrote = True

    def epoch(self, st: TrainState, row: dict, val: dict, total_epochs: int, note: str) -> None:
        """The epoch's log line and record (its last.pt, history and best.pt are written)."""
        self.on_disk = (st.epoch, st.best_epoch)
        self.epochs_this_session += 1
        line = (f"epoch {row['epoch']:3d}/{total_epochs} train_loss {row['train_loss']:.4f} "
                f"train_acc {row['train_token_acc']:.4f} val_loss {val['loss']:.4f} "
                f"val_acc {val['token_acc']:.4f} val_seq_acc {val['seq_acc']:.4f} "
                f"lr {row['lr']:.3g} {row['seconds']:.1f}s")
        if row.get("train_attn_loss") is not None:
            line += f" attn_loss {row['train_attn_loss']:.5f}"
        if val["attention_match"]:
            line += " match " + " ".join(f"{k}:{v:.3f}" for k, v in val["attention_match"].items())
        self.line(line + note)
        self.update(st)
        if time.perf_counter() - self._last_plot > 60:
            self.rd.plot_curves(st.history)
            self._last_plot = time.perf_counter()

    def finish(self, st: TrainState, status: str, reason: str | None, final: dict,
               match: dict, uniform: dict, **fields) -> dict:
        self.update(st, status=status, reason=reason, final=final, attention_match=match,
                    attention_uniform=uniform, **fields)
        self.rd.plot_curves(st.history)
        line = "final " + (" ".join(
            f"{k} acc {v['token_acc']:.4f} (seq {v['seq_acc']:.4f})" for k, v in final.items())
            or "accuracy: none, the run has no model")
        if match:
            line += " attention match " + " ".join(f"{k}:{v:.3f}" for k, v in match.items())
        best = self.record.best_epoch
        self.line(line + f" [{status}, " + (f"best epoch {best}]" if best is not None else
                                            "no model]"))
        return self.record.to_dict()

    def fail(self, st: TrainState, err: BaseException) -> None:
        """Record an exception that ends the run (re-raised by the caller)."""
        what = f"{type(err).__name__}: {err}"
        if isinstance(err, KeyboardInterrupt):
            status, reason, error = "interrupted", "forced (second SIGINT)", None
        else:
            status, reason, error = "failed", type(err).__name__, what
        try:
            if self.previous is not None and not self.wrote:
                # finished work stays as it was
                self.rd.log(f"resume failed before training: {what}")
            else:
                # a write that failed mid-epoch left that epoch's files incomplete: the
                # record names only the epochs whose files are all on disk
                epochs, best = self.on_disk
                self.update(st, status=status, reason=reason, error=error,
                            epochs_run=epochs, best_epoch=best)
                self.rd.log(f"{status}: {what}")
        except Exception:  # pragma: no cover - the original error matters more
            pass


def first_line(trainer: Trainer, model_cfg: ModelConfig, params: int, source) -> str:
    st = trainer.st
    if st.resumes:
        return (f"resumed from {source} after epoch {st.epoch}"
                + (f" (+{st.batch} batches)" if st.batch else "")
                + f", {torch.get_num_threads()} threads")
    return (f"start {trainer.task.name}: {model_cfg.layers} layers, {model_cfg.heads} heads, "
            f"d_model {model_cfg.d_model}, {params} params, "
            f"{len(trainer.splits['train'])} train sequences, device {trainer.device.type}, "
            f"{torch.get_num_threads()} threads"
            + ("" if trainer.precision == "fp32" else f", precision {trainer.precision.value}"))


NO_MODEL = "; no epoch ended with a finite loss, so the run has no model (no best.pt)"


def kept_after_divergence(trainer: Trainer) -> str:
    """What a diverged run keeps, as train.log says it."""
    st = trainer.st
    if not trainer.has_model:
        return "no epoch ended finite: no model is kept (no best.pt, no last.pt)"
    return (f"keeping the best checkpoint (epoch {st.best_epoch}) and the last.pt of epoch "
            f"{st.epoch}")
