"""The `Trainer`: the model, its optimizer and schedule, and the counters of the procedure
(`TrainState`), with the steps `train()` calls in order (one training epoch, validation, keep
the best or reset to it, end the epoch) and the checkpoints that make a resume exact
(last.pt: model, optimizer, schedule, counters, RNG state; best.pt). Its one reason to
change: what one step of the procedure does, or what a checkpoint holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rasp_hydra import runs
from rasp_hydra.checks import check_device
from rasp_hydra.config import (
    ConfigError,
    Device,
    ModelConfig,
    OptimizerConfig,
    Precision,
    ScheduleConfig,
    TrainConfig,
)
from rasp_hydra.model import Encoder
from rasp_hydra.train.losses import attention_terms, evaluate, present_heads, sequence_loss


@dataclass
class TrainState:
    """Trainer counters, saved in last.pt (primitives only)."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done of epoch `epoch + 1` (non-zero only after an interrupt)
    best_val: float = math.inf
    best_epoch: int = 0
    since_best: int = 0
    perfect_streak: int = 0
    resets: int = 0
    train_seconds: float = 0.0  # time in training steps (for tokens_per_second)
    train_tokens: int = 0
    wall_seconds: float = 0.0  # all previous sessions of this run
    resumes: int = 0
    # partial-epoch accumulators (interrupt mid-epoch)
    acc: dict = field(default_factory=dict)
    history: list = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float | None:
        return self.train_tokens / self.train_seconds if self.train_seconds else None


# ------------------------------------------------------------------------------ pieces

def resolve_device(name: Device | str, check: bool = True) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if check:
        check_device(name, torch.cuda.is_available())
    return torch.device(Device(name).value)


def device_capability(device: torch.device) -> tuple[int, int] | None:
    """A GPU's compute capability (what train.precision needs); None for the CPU."""
    return tuple(torch.cuda.get_device_capability(device)) if device.type == "cuda" else None


@contextlib.contextmanager
def matmul_precision(precision: Precision | str):
    """For the run, float32 matmuls as train.precision asks (tf32: TF32, "high"; otherwise
    full float32, "highest", whatever the process had), restored afterwards."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == Precision.tf32 else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def make_optimizer(params, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.name == "adam":  # an OptimizerName, or its value: a str enum equals it
        # fused: one kernel for all parameters (much less per-step overhead on CPU)
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    raise ConfigError(f"optimizer.name={cfg.name!r} is unknown; allowed: adam, sgd")


def make_scheduler(opt, cfg: ScheduleConfig):
    if cfg.name not in ("exponential", "constant"):
        raise ConfigError(f"schedule.name={cfg.name!r} is unknown; allowed: "
                          "exponential, constant")
    gamma = cfg.gamma if cfg.name == "exponential" else 1.0
    return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)


def _checkpoint(model, task, epoch, **extra) -> dict:
    return {"model": model.state_dict(), "model_config": model.config_dict(),
            "task": task.name,
            "task_spec": {"family": task.family, "size": int(task.size), "bos": bool(task.bos),
                          "with_attns": bool(task.with_attns)},
            "epoch": int(epoch), **extra}


def _on_device(split, device: torch.device):
    """On a GPU, a split's tokens and targets move there once (a batch is then a slice on
    the device, not a copy from pageable host memory every step); lengths stay on the CPU,
    where batching and token counts read them without a device sync."""
    if device.type == "cpu":
        return split
    return dataclasses.replace(split, tokens=split.tokens.to(device),
                               targets=split.targets.to(device))


@dataclass
class EpochStats:
    """What one (possibly partial) training epoch accumulated; tensors stay on the device."""

    loss_sum: torch.Tensor
    attn_sum: torch.Tensor
    correct: torch.Tensor
    seqs: int = 0
    toks: int = 0
    seconds: float = 0.0
    complete: bool = True

    def to_state(self) -> dict:  # primitives, for last.pt
        return {"loss_sum": float(self.loss_sum), "attn_sum": float(self.attn_sum),
                "correct": int(self.correct), "seqs": self.seqs, "toks": self.toks,
                "seconds": self.seconds}

    def row(self, epoch: int, lr: float, supervised: bool) -> dict:
        return {"epoch": epoch, "lr": lr, "seconds": self.seconds,
                "train_loss": float(self.loss_sum) / max(self.seqs, 1),
                "train_token_acc": int(self.correct) / max(self.toks, 1),
                "train_attn_loss": float(self.attn_sum) / max(self.seqs, 1) if supervised
                else None}


class Trainer:
    """The model, its optimizer and schedule, and the counters of the procedure."""

    def __init__(self, task, splits, model_cfg: ModelConfig, opt_cfg: OptimizerConfig,
                 sched_cfg: ScheduleConfig, tc: TrainConfig, device: torch.device, run_dir,
                 checked: bool = False):
        self.task, self.model_cfg, self.tc = task, model_cfg, tc
        self.precision = Precision(tc.precision)
        self.splits = {k: _on_device(s, device) for k, s in splits.items()}
        self.device, self.rd = device, runs.RunDir(run_dir)
        self.rd.refuse_symlinks()  # no write of the run goes through a link (a library run)
        self.run_dir = self.rd.path
        self.supervised = tuple(task.supervised_heads) if tc.attn_loss_c > 0 else ()
        self.measured = present_heads(task.selector_heads, model_cfg)
        self.sup_layers = sorted({h[0] for h in self.supervised})
        torch.manual_seed(tc.seed)
        self.model = Encoder(model_cfg, task.vocab_size, task.n_out, task.pad_id,
                             checked=checked).to(device)
        self.opt = make_optimizer(self.model.parameters(), opt_cfg)
        self.sched = make_scheduler(self.opt, sched_cfg)
        self.sched_cfg = sched_cfg
        self.st = TrainState()
        self.better = None  # this epoch's best.pt, written once last.pt and history hold it
        self.n_batches = math.ceil(len(splits["train"]) / tc.batch_size)

    # --- restore -------------------------------------------------------------------
    def restore(self, path: Path, from_best: bool = False) -> None:
        """Continue from last.pt at `path` (exact), or from the best.pt beside it."""
        ck = runs.load_checkpoint(path, map_location=self.device)
        runs.check_fits(path, ck, self.task.name, self.model.config_dict())
        self._check_precision(path, ck)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        if from_best:
            self._restore_schedule_after(int(ck["epoch"]), path.parent.parent)
            return
        self.sched.load_state_dict(ck["scheduler"])
        self.st = TrainState(**ck["trainer"])
        self.st.resumes += 1
        torch.set_rng_state(ck["rng"]["torch"].cpu())
        if self.device.type == "cuda" and "cuda" in ck["rng"]:
            torch.cuda.set_rng_state(ck["rng"]["cuda"].cpu())

    def finish_epoch_writes(self, record_epochs: int) -> None:
        """After a restore from this run's own last.pt: the writes of its epoch that a kill
        left undone (history.csv, then best.pt when that epoch was the best: its weights and
        optimizer are last.pt's), so the files agree with last.pt before anything goes on.
        A best.pt that cannot be the run's best model is refused (RunDir.best_problem),
        checked against the model this run's config builds. `record_epochs`: the epochs
        metrics.json names (an epoch it names had all its files written)."""
        st = self.st
        pending = st.best_epoch == st.epoch and not st.batch and record_epochs < st.epoch
        problem = self.rd.best_problem(st.best_epoch, pending, self.task.name,
                                       self.model.config_dict())
        if problem:
            raise runs.CheckpointError(problem)
        if [r["epoch"] for r in self.rd.history()] != [r["epoch"] for r in st.history]:
            self.rd.write_history(st.history)
        if pending and self.rd.checkpoint_epoch("best") != st.best_epoch:
            opt = self.opt.state_dict()
            for g in opt["param_groups"]:  # as keep_best_or_reset took it: the epoch's lr
                g["lr"] = st.history[-1]["lr"]
            self.rd.save_checkpoint("best", self._checkpoint(
                st.epoch, optimizer=opt, val_loss=st.best_val))

    def _check_precision(self, path: Path, ck: dict) -> None:
        saved = ck.get("precision", Precision.fp32.value)  # older checkpoints: float32
        if saved != self.precision.value:
            raise ConfigError(
                f"{path} was trained with train.precision={saved}, but this run asks for "
                f"{self.precision.value}: a run keeps one precision for its whole history, "
                "or its figures would mix two, so nothing was written. Continue it with "
                f"train.precision={saved}, or start a new run.")

    def _restore_schedule_after(self, epoch: int, source_dir: Path) -> None:
        source = runs.RunDir(source_dir)
        history = [r for r in source.history() if r["epoch"] <= epoch]
        best = min(history, key=lambda r: r["val_loss"], default=None)
        previous = source.record()
        self.st = TrainState(epoch=epoch, best_val=best["val_loss"] if best else math.inf,
                         best_epoch=epoch, history=history,
                         resumes=int(previous.get("resumes") or 0) + 1,
                         wall_seconds=float(previous.get("wall_seconds") or 0.0))
        self.sched.last_epoch = epoch
        for g, base in zip(self.opt.param_groups, self.sched.base_lrs, strict=True):
            g["lr"] = base * self.sched.gamma ** epoch
        torch.manual_seed(self.tc.seed + 7919 * epoch)  # a fresh, reproducible stream

    # --- one epoch -----------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def _stats(self) -> EpochStats:
        acc, dev = self.st.acc or {}, self.device
        return EpochStats(
            torch.tensor(acc.get("loss_sum", 0.0), dtype=torch.float64, device=dev),
            torch.tensor(acc.get("attn_sum", 0.0), dtype=torch.float64, device=dev),
            torch.tensor(acc.get("correct", 0), dtype=torch.int64, device=dev),
            acc.get("seqs", 0), acc.get("toks", 0), acc.get("seconds", 0.0))

    def train_epoch(self, epoch: int, stop, bar=None) -> EpochStats:
        """Train until the epoch ends or `stop` is set (then `complete` is False)."""
        from rasp_hydra.data import batches

        self.model.train()
        stats, skip, t0 = self._stats(), self.st.batch, time.perf_counter()
        it = batches(self.splits["train"], self.tc.batch_size, shuffle=True, seed=self.tc.seed,
                     epoch=epoch)
        for i, (tokens, lengths, targets) in enumerate(it):
            if i < skip:
                continue
            n_real = int(lengths.sum())  # lengths still on the CPU here: no device sync
            tokens, lengths, targets = (t.to(self.device, non_blocking=True)
                                        for t in (tokens, lengths, targets))
            with self.autocast():
                loss, logits, attn_mse = self._loss(tokens, lengths, targets)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            with torch.no_grad():  # accumulators stay on the device: no host sync per batch
                stats.loss_sum += loss.detach().double() * tokens.shape[0]
                if attn_mse is not None:
                    stats.attn_sum += attn_mse.detach().double() * tokens.shape[0]
                stats.correct += (logits.argmax(-1) == targets).sum()
            stats.seqs += tokens.shape[0]
            stats.toks += n_real
            self.st.batch = i + 1
            if bar is not None:
                bar.step(loss, stats.toks - (self.st.acc or {}).get("toks", 0), t0)
            if stop:
                break
        dt = time.perf_counter() - t0
        stats.seconds += dt
        self.st.train_seconds += dt
        self.st.train_tokens += stats.toks - (self.st.acc or {}).get("toks", 0)
        stats.complete = self.st.batch >= self.n_batches
        return stats

    def _loss(self, tokens, lengths, targets):
        logits, attn, _ = self.model(tokens, lengths, need_attention=self.sup_layers)
        loss = sequence_loss(logits, targets, lengths).mean()
        if not self.supervised:
            return loss, logits, None
        t = attention_terms(self.task, tokens, lengths, attn, self.supervised, True, False)
        attn_mse = t["sq_err"].mean() / t["n_elems"]
        return loss + self.tc.attn_loss_c * attn_mse, logits, attn_mse

    # --- validation and the decisions it drives ------------------------------------
    def autocast(self):
        """bf16: the forward pass and the loss under autocast (matmuls in bfloat16); the
        weights, their gradients and the optimizer's state stay float32."""
        if self.precision is Precision.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def evaluate(self, split: str, measured=None) -> dict:
        with self.autocast():
            return self._evaluate(split, measured)

    def _evaluate(self, split: str, measured=None) -> dict:
        return evaluate(self.model, self.task, self.splits[split], self.tc.eval_batch_size,
                        self.device, self.supervised,
                        self.measured if measured is None else measured, self.tc.attn_loss_c)

    def keep_best_or_reset(self, epoch: int, val_loss: float) -> str:
        """Save a better model as best.pt; after reset_patience epochs without one, reload
        it (weights and optimizer moments) at the current learning rate. Returns a note."""
        st = self.st
        if val_loss < st.best_val:
            st.best_val, st.best_epoch, st.since_best = val_loss, epoch, 0
            # save_best writes it (after last.pt) before the weights move on
            self.better = self._checkpoint(epoch, optimizer=self.opt.state_dict(),
                                           val_loss=val_loss)
            return " *"
        st.since_best += 1
        if st.since_best <= self.tc.reset_patience:
            return ""
        best = self.rd.load_checkpoint("best", map_location=self.device)
        self.model.load_state_dict(best["model"])
        lrs = [g["lr"] for g in self.opt.param_groups]
        self.opt.load_state_dict(best["optimizer"])
        for g, lr_now in zip(self.opt.param_groups, lrs, strict=True):
            g["lr"] = lr_now
        st.since_best = 0
        st.resets += 1
        return f" (reset to best of epoch {st.best_epoch})"

    def end_epoch(self, epoch: int, row: dict, perfect: bool) -> None:
        self.st.perfect_streak = self.st.perfect_streak + 1 if perfect else 0
        self.sched.step()
        self.st.history.append(row)
        self.st.epoch, self.st.batch, self.st.acc = epoch, 0, {}

    @property
    def has_model(self) -> bool:
        """Whether some epoch ended finite (and so best.pt holds a model)."""
        return self.st.best_epoch > 0 or self.rd.checkpoints()["best"]

    @property
    def done(self) -> bool:
        return self.st.perfect_streak >= self.tc.perfect_acc_epochs

    # --- checkpoints ---------------------------------------------------------------
    def _checkpoint(self, epoch: int, **extra) -> dict:
        return _checkpoint(self.model, self.task, epoch, precision=self.precision.value,
                           **extra)

    def save_best(self) -> None:
        """Promote this epoch's model to best.pt, after last.pt and history.csv hold the
        epoch: best.pt is never ahead of the files that describe it."""
        if self.better is not None:
            self.rd.save_checkpoint("best", self.better)
            self.better = None

    def save_last(self, wall_seconds: float) -> None:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        trainer = asdict(self.st)
        trainer["wall_seconds"] = wall_seconds  # earlier sessions plus this one so far
        ck = self._checkpoint(self.st.epoch, optimizer=self.opt.state_dict(),
                              scheduler=self.sched.state_dict(), trainer=trainer, rng=rng,
                              num_threads=torch.get_num_threads())  # what a resume compares
        self.rd.save_checkpoint("last", ck)

    def load_best(self) -> None:
        """The best checkpoint's weights; the current ones become it if there is none yet."""
        if self.rd.checkpoints()["best"]:
            ck = self.rd.load_checkpoint("best", self.device, task=self.task.name,
                                         shape=self.model.config_dict())
            self.model.load_state_dict(ck["model"])
        else:  # stopped before the first validation: the current weights are the best
            self.rd.save_checkpoint("best", self._checkpoint(self.st.epoch,
                                                        optimizer=self.opt.state_dict()))

    def final_evaluation(self) -> tuple[dict, dict, dict]:
        """Loss and accuracies of the best model on every split; attention match on test,
        with the match of uniform attention on the same rows (``final_evaluation``)."""
        self.load_best()
        return final_evaluation(self.model, self.task, self.splits, self.tc.eval_batch_size,
                                self.device, self.supervised, self.measured,
                                self.tc.attn_loss_c, self.autocast)


def final_evaluation(model, task, splits: dict, batch_size: int, device, supervised=(),
                     measured=(), attn_loss_c: float = 0.0,
                     autocast=contextlib.nullcontext) -> tuple[dict, dict, dict]:
    """A run's final figures: loss and accuracies of ``model`` on every split present;
    attention match of the ``measured`` heads on test, with the match of uniform attention
    on the same rows. A trained run's best model and a compiled model (rasp_hydra.compiled)
    are both scored by it."""
    final, match, uniform = {}, {}, {}
    for name in ("train", "valid", "test", "test_long"):
        if name not in splits or not len(splits[name]):
            continue
        with autocast():
            r = evaluate(model, task, splits[name], batch_size, device, supervised,
                         measured if name == "test" else (), attn_loss_c)
        final[name] = {k: r[k] for k in ("loss", "token_acc", "seq_acc", "attn_loss")
                       if k in r}
        if name == "test":
            match, uniform = r["attention_match"], r["attention_uniform"]
    return final, match, uniform
