"""`train()`: check the config, build the `Trainer` (or restore it from a checkpoint),
describe the run, then the epochs in the order of the procedure (train, validate, keep the
best or reset, write last.pt, history.csv, best.pt, then the record) and the final
evaluation; SIGINT/SIGTERM or a stop Event end it after the current batch. Its one reason
to change: the order of the procedure and how a run starts and ends.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from rasp_hydra import runs
from rasp_hydra.checks import (
    check_max_len,
    check_optimizer,
    check_precision,
    check_supervision,
    check_train,
)
from rasp_hydra.config import (
    Checkpoint,
    ConfigError,
    ModelConfig,
    OptimizerConfig,
    Positions,
    Precision,
    ScheduleConfig,
    TrainConfig,
)
from rasp_hydra.train.record import (
    NO_MODEL,
    ProgressBar,
    Recorder,
    first_line,
    kept_after_divergence,
    show_progress,
)
from rasp_hydra.train.trainer import (
    Trainer,
    device_capability,
    matmul_precision,
    resolve_device,
)

logger = logging.getLogger("rasp_hydra.train")


def check_run(task, splits: dict, model_cfg: ModelConfig, opt_cfg: OptimizerConfig,
              sched_cfg: ScheduleConfig, tc: TrainConfig) -> None:
    """The config checks that need the built data; the rest ran when the config was made."""
    check_supervision(task, model_cfg.layers, model_cfg.heads)
    check_optimizer(opt_cfg, sched_cfg)
    check_train(tc)
    check_max_len(model_cfg.max_len,
                  max(int(s.lengths.max()) for s in splits.values() if len(s)))


class _StopFlag:
    """Set by SIGINT/SIGTERM (or by the caller via `stop`): training ends after the batch."""

    def __init__(self, event: threading.Event | None):
        self.event = event or threading.Event()
        self.signal = None
        self._old = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):  # pragma: no cover - exotic embedding
                pass

    def _handle(self, signum, frame):
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: stop now
        self.signal = signal.Signals(signum).name
        self.event.set()

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def __bool__(self):
        return self.event.is_set()


def _resume_path(run_dir: Path, tc: TrainConfig, resume_from) -> Path | None:
    """The checkpoint to continue from: `resume_from` (a run directory or a .pt file), else
    this run directory's last.pt (or best.pt) when train.resume is on and it exists."""
    rd, which = runs.RunDir(run_dir), Checkpoint(tc.resume_from).value
    if resume_from is None and tc.resume:
        problem = rd.resume_problem(which)
        if problem:
            raise runs.CheckpointError(problem)
    if resume_from is not None:
        path = Path(resume_from)
        path = runs.RunDir(path).checkpoint_file(which) if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"cannot resume from {resume_from}: {path} does not exist.")
        return path
    path = rd.checkpoint_file(which)
    if tc.resume and path.is_file():
        return path
    if tc.resume and tc.resume_from == "best" and rd.has_run():
        raise ConfigError(f"train.resume_from=best, but {run_dir} has no "
                          f"{path.relative_to(run_dir)}: the run never finished an epoch. "
                          "Start it over in a new directory.")
    return None


def _copy_best(source: Path, run_dir: Path) -> None:
    """Resuming into a new directory: bring the best checkpoint along."""
    src_best = runs.RunDir(source.parent.parent).checkpoint_file("best")
    if src_best.is_file() and source.parent.parent != run_dir:
        runs.RunDir(run_dir).save_checkpoint("best", runs.load_checkpoint(src_best))


def _diverged(row: dict, val: dict | None) -> str | None:
    values = [row["train_loss"]] + ([val["loss"]] if val is not None else [])
    bad = [v for v in values if not math.isfinite(v)]
    return None if not bad else f"the loss became {bad[0]} in epoch {row['epoch']}"


def _describe(trainer: Trainer, opt_cfg: OptimizerConfig, sched_cfg: ScheduleConfig,
              params: int, meta: dict | None) -> runs.RunRecord:
    """The run's record as it starts: what is trained, how, and on what."""
    model_cfg, tc = trainer.model_cfg, trainer.tc
    record = runs.RunRecord.describe(
        trainer.task, layers=model_cfg.layers, heads=model_cfg.heads, d_model=model_cfg.d_model,
        ff=model_cfg.ff, optimizer=opt_cfg, schedule=sched_cfg, train=tc,
        dropout=model_cfg.dropout, positions=Positions(model_cfg.positions).value,
        params=params, supervised_heads=[runs.head_key(h) for h in trainer.supervised],
        num_threads=torch.get_num_threads(), device=trainer.device.type,
        precision=Precision(tc.precision).value)
    for k, v in (meta or {}).items():
        setattr(record, k, v)
    return record


# ------------------------------------------------------------------------------ train

def train(
    task,
    splits: dict,
    model_cfg: ModelConfig,
    opt_cfg: OptimizerConfig | None = None,
    sched_cfg: ScheduleConfig | None = None,
    train_cfg: TrainConfig | None = None,
    run_dir=".",
    *,
    meta: dict | None = None,
    log: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    handle_signals: bool = True,
    resume_from=None,
    checked: bool = False,
) -> dict:
    """Train one model on `task`; write the run directory; return metrics.json's dict.

    splits: {"train", "valid", "test"[, "test_long"]} of data.Split.
    meta: extra RunRecord fields (e.g. {"arch": "predicted"}).
    log: called with each train.log line (default: logging, logger "rasp_hydra.train").
    stop: an Event; when set (or on SIGINT/SIGTERM if handle_signals, in the main thread)
        training stops after the current batch and the run ends "interrupted".
    on_epoch_end: called (epoch, history_row) after each epoch's files are written; an
        exception there ends the run "failed" (and is re-raised), like a crash.
    resume_from: another run directory (or a .pt file) to continue from; by default a
        run continues from its own checkpoints when train_cfg.resume is on.
    checked: the caller has run every check of this config (job.check_job does), so
        they are not run again.
    Bad values raise ConfigError before anything is written; so does a checkpoint that
    cannot be read (runs.CheckpointError).
    """
    opt_cfg, sched_cfg = opt_cfg or OptimizerConfig(), sched_cfg or ScheduleConfig()
    tc, run_dir = train_cfg or TrainConfig(), Path(run_dir)
    if not checked:
        check_run(task, splits, model_cfg, opt_cfg, sched_cfg, tc)
    device = resolve_device(tc.device, check=not checked)
    if not checked:
        check_precision(tc.precision, device.type, device_capability(device))
    threads_before = torch.get_num_threads()
    if tc.num_threads:
        torch.set_num_threads(int(tc.num_threads))
    flag = _StopFlag(stop)
    try:
        trainer = Trainer(task, splits, model_cfg, opt_cfg, sched_cfg, tc, device, run_dir,
                          checked=checked)
        source = _resume_path(run_dir, tc, resume_from)
        if source is not None:
            trainer.restore(source, from_best=tc.resume_from == "best")
            rd = trainer.rd
            if source == rd.checkpoint_file("last"):  # a kill may have cut its epoch's writes
                trainer.finish_epoch_writes(int(rd.record().get("epochs_run") or 0))
        run_dir.mkdir(parents=True, exist_ok=True)
        if source is not None and resume_from is not None:
            _copy_best(source, run_dir)
        # read before the Recorder rewrites the record: a resume on another device cannot
        # go on bit for bit, whatever the thread counts say
        device_before = trainer.rd.record().get("device") if source else None
        params = sum(p.numel() for p in trainer.model.parameters())
        record = _describe(trainer, opt_cfg, sched_cfg, params, meta)
        moved = isinstance(device_before, str) and device_before != device.type
        if moved:
            record.continuation = "inexact"
        rec = Recorder(run_dir, record, log or logger.info)
        rec.start(trainer.st)
        rec.line(first_line(trainer, model_cfg, params, source))
        if moved:
            rec.line(f"inexact continuation: trained on {device_before} before, "
                     f"{device.type} now; the results may differ in their last bits from an "
                     "uninterrupted run's")
        if handle_signals:
            flag.install()
        with matmul_precision(tc.precision):
            return _loop(trainer, rec, flag, on_epoch_end)
    finally:
        flag.restore()
        torch.set_num_threads(threads_before)


def _loop(trainer: Trainer, rec: Recorder, flag: _StopFlag, on_epoch_end) -> dict:
    """The epochs, then the final evaluation; every ending is recorded."""
    tc, st = trainer.tc, trainer.st
    show_bar = show_progress(tc.progress)
    status, reason = "completed", None
    try:
        for epoch in range(st.epoch + 1, 0 if trainer.done else tc.epochs + 1):
            rec.rd.check_own()  # run.lock replaced, or a link appeared: stop before it
            lr = trainer.lr
            bar = ProgressBar(epoch, trainer.n_batches, st.batch) if show_bar else None
            stats = trainer.train_epoch(epoch, flag, bar)
            if bar is not None:
                bar.close()
            if not stats.complete:  # interrupted mid-epoch: keep it all for an exact resume
                st.acc = stats.to_state()
                rec.rd.check_own()
                trainer.save_last(rec.wall_seconds(st))
                break
            row = stats.row(epoch, lr, bool(trainer.supervised))
            val = None if _diverged(row, None) else trainer.evaluate("valid")
            reason = _diverged(row, val)
            if reason:
                status, st.history = "diverged", [*st.history, row]
                rec.record.diverged_epoch = epoch
                rec.rd.check_own()
                rec.rd.write_history(st.history)
                rec.line(f"diverged: {reason}; " + kept_after_divergence(trainer))
                break
            row.update(val_loss=val["loss"], val_token_acc=val["token_acc"],
                       val_seq_acc=val["seq_acc"])
            if trainer.supervised:
                row["val_attn_loss"] = val["attn_loss"]
            row.update({f"attn_match_{k}": v for k, v in val["attention_match"].items()})
            note = trainer.keep_best_or_reset(epoch, val["loss"])
            trainer.end_epoch(epoch, row, val["perfect"])
            # last.pt, then the history, then best.pt, then the record: a write that fails
            # leaves the record describing files that are all there
            rec.rd.check_own()  # the epoch took minutes: ask again right before its writes
            trainer.save_last(rec.wall_seconds(st))
            rec.rd.write_history(st.history)
            trainer.save_best()
            rec.epoch(st, row, val, tc.epochs, note)
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
            if trainer.done:
                rec.line(f"stop: validation accuracy 1.0 for {st.perfect_streak} epochs "
                         "in a row")
                break
            if flag:
                break
        if flag and status == "completed":
            # the one who set the stop Event may say why (e.g. Optuna's pruner)
            status = "interrupted"
            reason = flag.signal or getattr(flag.event, "reason", None) or "stop requested"
            rec.line(f"interrupted ({reason}) in epoch {st.epoch + 1}: evaluating the best "
                     "checkpoint")
        if status == "diverged" and not trainer.has_model:
            return rec.finish(st, status, reason + NO_MODEL, {}, {}, {}, best_epoch=None)
        final, match, uniform = trainer.final_evaluation()
        return rec.finish(st, status, reason, final, match, uniform)
    except BaseException as err:
        rec.fail(st, err)
        raise
