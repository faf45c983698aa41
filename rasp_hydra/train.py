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
run's when the run has finished epochs (runs.resume_problem), and a diverged run.

Resume: checkpoints/last.pt holds the model, optimizer, scheduler, trainer counters,
history, and torch RNG state, written after every epoch (and after the last batch on an
interrupt), so a resumed run continues exactly where the checkpoint was taken: on CPU with
the same thread count the final metrics are bit-identical to an uninterrupted run.
`train.resume_from=best` continues from best.pt instead (the way out when last.pt is
broken): its epoch, weights and optimizer moments, the learning rate the schedule gives
after that epoch, and the history up to it; the batch order and dropout are reseeded, so
it is not bit-exact.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from rasp_hydra import runs
from rasp_hydra.checks import (
    check_device,
    check_max_len,
    check_optimizer,
    check_supervision,
    check_train,
)
from rasp_hydra.config import (
    Checkpoint,
    ConfigError,
    Device,
    ModelConfig,
    OptimizerConfig,
    Positions,
    ScheduleConfig,
    TrainConfig,
)
from rasp_hydra.model import Encoder
from rasp_hydra.tasks import IGNORE  # the target id of padding, which the loss skips

__all__ = ["OptimizerConfig", "ScheduleConfig", "TrainConfig", "evaluate", "train"]

logger = logging.getLogger("rasp_hydra.train")


@dataclass
class _State:
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

def resolve_device(name: Device | str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(name, torch.cuda.is_available())
    return torch.device(Device(name).value)


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


def check_run(task, splits: dict, model_cfg: ModelConfig, opt_cfg: OptimizerConfig,
              sched_cfg: ScheduleConfig, tc: TrainConfig) -> None:
    """The config checks that need the built data; the rest ran when the config was made."""
    check_supervision(task, model_cfg.layers, model_cfg.heads)
    check_optimizer(opt_cfg, sched_cfg)
    check_train(tc)
    check_max_len(model_cfg.max_len,
                  max(int(s.lengths.max()) for s in splits.values() if len(s)))


def present_heads(heads, model_cfg: ModelConfig) -> tuple:
    return tuple(h for h in heads if h[0] < model_cfg.layers and h[1] < model_cfg.heads)


def selector_targets(sel: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Row-normalized target of a boolean selector (B, n, n): S / row sum, with 1e-8 added
    to every real key before dividing, so an empty row becomes uniform over real keys
    (docs/tasks.md) and a non-empty row is S / (count + n * 1e-8)."""
    s = sel.to(torch.float32) + 1e-8 * key_mask[:, None, :]
    return s / s.sum(-1, keepdim=True)


def _valid(lengths: torch.Tensor, n: int) -> torch.Tensor:
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]  # (B, n)


def attention_terms(task, tokens, lengths, attn, heads, need_mse: bool, need_match: bool):
    """Per-head attention MSE to the target (sum, count) and attention match (sum, rows).

    attn: list per layer of probs (B, H, n, n). Returns (sq_err (K,), n_elems, match (K,),
    uniform (K,), n_rows) as tensors; K = len(heads). `uniform` is the match that uniform
    attention over the real keys would score on the same rows: the chance level of the match.
    """
    B, n = tokens.shape
    valid = _valid(lengths, n)  # (B, n)
    sels = task.selectors(tokens, lengths, heads=heads)
    S = torch.stack([sels[h] for h in heads]).to(attn[heads[0][0]].device)  # (K, B, n, n)
    P = torch.stack([attn[layer][:, head] for layer, head in heads])  # (K, B, n, n)
    rows = valid.sum()
    out = {}
    if need_mse:
        T = selector_targets(S.flatten(0, 1), valid.repeat(len(heads), 1)).view_as(P)
        # P and T are exactly 0 on padded keys, so only padded query rows need masking
        sq = ((P - T) ** 2).sum(-1)  # (K, B, n)
        out["sq_err"] = (sq * valid).sum((1, 2))  # (K,)
        out["n_elems"] = (lengths.to(P.dtype) ** 2).sum()  # real (query, key) pairs
    if need_match:
        mass = (P * S).sum(-1)  # (K, B, n): attention mass on selected keys per query
        out["match"] = (mass * valid).sum((1, 2))  # (K,)
        picked = (S & valid[None, :, None, :]).sum(-1) / lengths[None, :, None]  # (K, B, n)
        out["uniform"] = (picked * valid).sum((1, 2))  # (K,)
        out["rows"] = rows
    return out


def sequence_loss(logits, targets, lengths):
    """Mean over the batch of each sequence's mean token cross-entropy (sum form too)."""
    B, n, C = logits.shape
    ce = F.cross_entropy(logits.reshape(B * n, C), targets.reshape(B * n),
                         ignore_index=IGNORE, reduction="none").view(B, n)
    per_seq = ce.sum(1) / lengths.to(ce.dtype)  # (B,)
    return per_seq


@torch.no_grad()
def evaluate(model, task, split, batch_size: int, device, supervised=(), measured=(),
             attn_loss_c: float = 0.0) -> dict:
    """Loss (objective), token and sequence accuracy, and per-head attention match."""
    from rasp_hydra.data import batches

    was_training = model.training
    model.eval()
    heads = tuple(dict.fromkeys((*supervised, *measured)))
    layers = sorted({h[0] for h in heads})
    # sums stay on the device and are read once at the end: no host sync per batch
    zeros = lambda *shape, dtype=torch.float64: torch.zeros(shape, dtype=dtype,  # noqa: E731
                                                            device=device)
    seq_loss, n_elems, rows = zeros(), zeros(), zeros()
    correct, seq_ok = zeros(dtype=torch.int64), zeros(dtype=torch.int64)
    sq_err, match, uniform = zeros(len(supervised)), zeros(len(measured)), zeros(len(measured))
    total = n_seq = 0
    for tokens, lengths, targets in batches(split, batch_size, shuffle=False):
        total += int(lengths.sum())  # still on the CPU
        n_seq += tokens.shape[0]
        tokens, lengths, targets = (t.to(device) for t in (tokens, lengths, targets))
        logits, attn, _ = model(tokens, lengths, need_attention=layers)
        seq_loss += sequence_loss(logits, targets, lengths).double().sum()
        pred = logits.argmax(-1)
        ok = (pred == targets) | (targets == IGNORE)
        correct += (pred == targets).sum()
        seq_ok += ok.all(1).sum()
        if supervised:
            t = attention_terms(task, tokens, lengths, attn, supervised, True, False)
            sq_err += t["sq_err"].double()
            n_elems += t["n_elems"].double()
        if measured:
            t = attention_terms(task, tokens, lengths, attn, measured, False, True)
            match += t["match"].double()
            uniform += t["uniform"].double()
            rows += t["rows"].double()
    model.train(was_training)
    correct, seq_ok, rows = int(correct), int(seq_ok), float(rows)
    loss = float(seq_loss) / max(n_seq, 1)
    out = {"loss": loss, "token_acc": correct / max(total, 1),
           "seq_acc": seq_ok / max(n_seq, 1)}
    if supervised:
        attn_mse = float(sq_err.mean()) / max(float(n_elems), 1.0)
        out["loss"] = loss + attn_loss_c * attn_mse
        out["attn_loss"] = attn_mse
    out["attention_match"] = {runs.head_key(h): float(m) / max(rows, 1.0)
                              for h, m in zip(measured, match.tolist(), strict=True)}
    out["attention_uniform"] = {runs.head_key(h): float(u) / max(rows, 1.0)
                                for h, u in zip(measured, uniform.tolist(), strict=True)}
    out["perfect"] = correct == total
    return out


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
                 sched_cfg: ScheduleConfig, tc: TrainConfig, device: torch.device, run_dir):
        self.task, self.model_cfg, self.tc = task, model_cfg, tc
        self.splits = {k: _on_device(s, device) for k, s in splits.items()}
        self.device, self.run_dir = device, Path(run_dir)
        self.supervised = tuple(task.supervised_heads) if tc.attn_loss_c > 0 else ()
        self.measured = present_heads(task.selector_heads, model_cfg)
        self.sup_layers = sorted({h[0] for h in self.supervised})
        torch.manual_seed(tc.seed)
        self.model = Encoder(model_cfg, task.vocab_size, task.n_out, task.pad_id).to(device)
        self.opt = make_optimizer(self.model.parameters(), opt_cfg)
        self.sched = make_scheduler(self.opt, sched_cfg)
        self.sched_cfg = sched_cfg
        self.st = _State()
        self.better = None  # this epoch's best.pt, written once last.pt and history hold it
        self.n_batches = math.ceil(len(splits["train"]) / tc.batch_size)

    # --- restore -------------------------------------------------------------------
    def restore(self, path: Path, from_best: bool = False) -> None:
        """Continue from last.pt at `path` (exact), or from the best.pt beside it."""
        ck = runs.load_checkpoint(path, map_location=self.device)
        runs.check_fits(path, ck, self.task.name, self.model.config_dict())
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        if from_best:
            self._restore_schedule_after(int(ck["epoch"]), path.parent.parent)
            return
        self.sched.load_state_dict(ck["scheduler"])
        self.st = _State(**ck["trainer"])
        self.st.resumes += 1
        torch.set_rng_state(ck["rng"]["torch"].cpu())
        if self.device.type == "cuda" and "cuda" in ck["rng"]:
            torch.cuda.set_rng_state(ck["rng"]["cuda"].cpu())

    def _restore_schedule_after(self, epoch: int, source_dir: Path) -> None:
        history = [r for r in runs.read_history(source_dir) if r["epoch"] <= epoch]
        best = min(history, key=lambda r: r["val_loss"], default=None)
        previous = runs.read_metrics(source_dir)
        self.st = _State(epoch=epoch, best_val=best["val_loss"] if best else math.inf,
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
    def evaluate(self, split: str, measured=None) -> dict:
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
            self.better = (_checkpoint(
                self.model, self.task, epoch, optimizer=self.opt.state_dict(),
                val_loss=val_loss))
            return " *"
        st.since_best += 1
        if st.since_best <= self.tc.reset_patience:
            return ""
        best = runs.load_checkpoint(self.run_dir / runs.BEST, map_location=self.device)
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
        return self.st.best_epoch > 0 or (self.run_dir / runs.BEST).is_file()

    @property
    def done(self) -> bool:
        return self.st.perfect_streak >= self.tc.perfect_acc_epochs

    # --- checkpoints ---------------------------------------------------------------
    def save_best(self) -> None:
        """Promote this epoch's model to best.pt, after last.pt and history.csv hold the
        epoch: best.pt is never ahead of the files that describe it."""
        if self.better is not None:
            runs.save_checkpoint(self.run_dir / runs.BEST, self.better)
            self.better = None

    def save_last(self, wall_seconds: float) -> None:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        trainer = asdict(self.st)
        trainer["wall_seconds"] = wall_seconds  # earlier sessions plus this one so far
        ck = _checkpoint(self.model, self.task, self.st.epoch,
                         optimizer=self.opt.state_dict(), scheduler=self.sched.state_dict(),
                         trainer=trainer, rng=rng)
        runs.save_checkpoint(self.run_dir / runs.LAST, ck)

    def load_best(self) -> None:
        """The best checkpoint's weights; the current ones become it if there is none yet."""
        path = self.run_dir / runs.BEST
        if path.is_file():
            ck = runs.load_checkpoint(path, self.device)
            runs.check_fits(path, ck, self.task.name, self.model.config_dict())
            self.model.load_state_dict(ck["model"])
        else:  # stopped before the first validation: the current weights are the best
            runs.save_checkpoint(path, _checkpoint(self.model, self.task,
                                                   self.st.epoch,
                                                   optimizer=self.opt.state_dict()))

    def final_evaluation(self) -> tuple[dict, dict, dict]:
        """Loss and accuracies of the best model on every split; attention match on test,
        with the match of uniform attention on the same rows."""
        self.load_best()
        final, match, uniform = {}, {}, {}
        for name in ("train", "valid", "test", "test_long"):
            if name not in self.splits or not len(self.splits[name]):
                continue
            r = self.evaluate(name, self.measured if name == "test" else ())
            final[name] = {k: r[k] for k in ("loss", "token_acc", "seq_acc", "attn_loss")
                           if k in r}
            if name == "test":
                match, uniform = r["attention_match"], r["attention_uniform"]
        return final, match, uniform


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


class _Bar:
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
        self.run_dir, self.record, self.log = Path(run_dir), record, log
        previous = runs.read_metrics(self.run_dir)
        self.previous = previous if previous.get("status") in runs.FINAL_STATUSES else None
        self.session_start = time.perf_counter()
        self.epochs_this_session = 0
        self._last_plot = 0.0
        self.wrote = False  # whether this session has replaced the record

    def start(self, st: _State) -> None:
        """A new run says `running` at once; a resumed one keeps its record for now."""
        if self.previous is None:
            self.update(st)

    def line(self, text: str) -> None:
        runs.append_log(self.run_dir, text)
        self.log(text)

    def wall_seconds(self, st: _State) -> float:
        return st.wall_seconds + time.perf_counter() - self.session_start

    def update(self, st: _State, **fields) -> None:
        self.record.epochs_run, self.record.best_epoch = st.epoch, st.best_epoch
        self.record.wall_seconds = self.wall_seconds(st)
        self.record.tokens_per_second = st.tokens_per_second
        self.record.resumes = st.resumes
        for k, v in fields.items():
            setattr(self.record, k, v)
        runs.write_metrics(self.run_dir, self.record)
        self.wrote = True

    def epoch(self, st: _State, row: dict, val: dict, total_epochs: int, note: str) -> None:
        """The epoch's log line and record (its last.pt, history and best.pt are written)."""
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
            runs.plot_curves(self.run_dir, st.history)
            self._last_plot = time.perf_counter()

    def finish(self, st: _State, status: str, reason: str | None, final: dict,
               match: dict, uniform: dict, **fields) -> dict:
        self.update(st, status=status, reason=reason, final=final, attention_match=match,
                    attention_uniform=uniform, **fields)
        runs.plot_curves(self.run_dir, st.history)
        line = "final " + (" ".join(
            f"{k} acc {v['token_acc']:.4f} (seq {v['seq_acc']:.4f})" for k, v in final.items())
            or "accuracy: none, the run has no model")
        if match:
            line += " attention match " + " ".join(f"{k}:{v:.3f}" for k, v in match.items())
        best = self.record.best_epoch
        self.line(line + f" [{status}, " + (f"best epoch {best}]" if best is not None else
                                            "no model]"))
        return self.record.to_dict()

    def fail(self, st: _State, err: BaseException) -> None:
        """Record an exception that ends the run (re-raised by the caller)."""
        what = f"{type(err).__name__}: {err}"
        if isinstance(err, KeyboardInterrupt):
            status, reason, error = "interrupted", "forced (second SIGINT)", None
        else:
            status, reason, error = "failed", type(err).__name__, what
        try:
            if self.previous is not None and not self.wrote:
                # finished work stays as it was
                runs.append_log(self.run_dir, f"resume failed before training: {what}")
            else:
                # a write that failed mid-epoch may have left best.pt behind st: say its epoch
                best = runs.checkpoint_epoch(self.run_dir, "best")
                self.update(st, status=status, reason=reason, error=error,
                            **({"best_epoch": best} if best is not None else {}))
                runs.append_log(self.run_dir, f"{status}: {what}")
        except Exception:  # pragma: no cover - the original error matters more
            pass


def _resume_path(run_dir: Path, tc: TrainConfig, resume_from) -> Path | None:
    """The checkpoint to continue from: `resume_from` (a run directory or a .pt file), else
    this run directory's last.pt (or best.pt) when train.resume is on and it exists."""
    name = runs.BEST if tc.resume_from == "best" else runs.LAST
    if resume_from is None and tc.resume:
        problem = runs.resume_problem(run_dir, Checkpoint(tc.resume_from).value)
        if problem:
            raise runs.CheckpointError(problem)
    if resume_from is not None:
        path = Path(resume_from)
        path = path / name if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"cannot resume from {resume_from}: {path} does not exist.")
        return path
    path = run_dir / name
    if tc.resume and path.is_file():
        return path
    if tc.resume and tc.resume_from == "best" and runs.has_run(run_dir):
        raise ConfigError(f"train.resume_from=best, but {run_dir} has no {runs.BEST}: the run "
                          "never finished an epoch. Start it over in a new directory.")
    return None


def _copy_best(source: Path, run_dir: Path) -> None:
    """Resuming into a new directory: bring the best checkpoint along."""
    src_best = source.parent / "best.pt"
    if src_best.is_file() and source.parent.parent != run_dir:
        runs.save_checkpoint(run_dir / runs.BEST, runs.load_checkpoint(src_best))


def _first_line(trainer: Trainer, model_cfg: ModelConfig, params: int, source) -> str:
    st = trainer.st
    if st.resumes:
        return f"resumed from {source} after epoch {st.epoch}" + (
            f" (+{st.batch} batches)" if st.batch else "")
    return (f"start {trainer.task.name}: {model_cfg.layers} layers, {model_cfg.heads} heads, "
            f"d_model {model_cfg.d_model}, {params} params, "
            f"{len(trainer.splits['train'])} train sequences, device {trainer.device.type}, "
            f"{torch.get_num_threads()} threads")


_NO_MODEL = "; no epoch ended with a finite loss, so the run has no model (no best.pt)"


def _kept_after_divergence(trainer: Trainer) -> str:
    """What a diverged run keeps, as train.log says it."""
    st = trainer.st
    if not trainer.has_model:
        return "no epoch ended finite: no model is kept (no best.pt, no last.pt)"
    return (f"keeping the best checkpoint (epoch {st.best_epoch}) and the last.pt of epoch "
            f"{st.epoch}")


def _diverged(row: dict, val: dict | None) -> str | None:
    values = [row["train_loss"]] + ([val["loss"]] if val is not None else [])
    bad = [v for v in values if not math.isfinite(v)]
    return None if not bad else f"the loss became {bad[0]} in epoch {row['epoch']}"


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
    Bad values raise ConfigError before anything is written; so does a checkpoint that
    cannot be read (runs.CheckpointError).
    """
    opt_cfg, sched_cfg = opt_cfg or OptimizerConfig(), sched_cfg or ScheduleConfig()
    tc, run_dir = train_cfg or TrainConfig(), Path(run_dir)
    check_run(task, splits, model_cfg, opt_cfg, sched_cfg, tc)
    device = resolve_device(tc.device)
    threads_before = torch.get_num_threads()
    if tc.num_threads:
        torch.set_num_threads(int(tc.num_threads))
    flag = _StopFlag(stop)
    try:
        trainer = Trainer(task, splits, model_cfg, opt_cfg, sched_cfg, tc, device, run_dir)
        source = _resume_path(run_dir, tc, resume_from)
        if source is not None:
            trainer.restore(source, from_best=tc.resume_from == "best")
        run_dir.mkdir(parents=True, exist_ok=True)
        if source is not None and resume_from is not None:
            _copy_best(source, run_dir)
        params = sum(p.numel() for p in trainer.model.parameters())
        record = runs.RunRecord.describe(
            task, layers=model_cfg.layers, heads=model_cfg.heads, d_model=model_cfg.d_model,
            ff=model_cfg.ff, optimizer=opt_cfg, schedule=sched_cfg, train=tc,
            dropout=model_cfg.dropout, positions=Positions(model_cfg.positions).value,
            params=params, supervised_heads=[runs.head_key(h) for h in trainer.supervised],
            num_threads=torch.get_num_threads(), device=device.type)
        for k, v in (meta or {}).items():
            setattr(record, k, v)
        rec = Recorder(run_dir, record, log or logger.info)
        rec.start(trainer.st)
        rec.line(_first_line(trainer, model_cfg, params, source))
        if handle_signals:
            flag.install()
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
            lr = trainer.lr
            bar = _Bar(epoch, trainer.n_batches, st.batch) if show_bar else None
            stats = trainer.train_epoch(epoch, flag, bar)
            if bar is not None:
                bar.close()
            if not stats.complete:  # interrupted mid-epoch: keep it all for an exact resume
                st.acc = stats.to_state()
                trainer.save_last(rec.wall_seconds(st))
                break
            row = stats.row(epoch, lr, bool(trainer.supervised))
            val = None if _diverged(row, None) else trainer.evaluate("valid")
            reason = _diverged(row, val)
            if reason:
                status, st.history = "diverged", [*st.history, row]
                rec.record.diverged_epoch = epoch
                runs.write_history(rec.run_dir, st.history)
                rec.line(f"diverged: {reason}; " + _kept_after_divergence(trainer))
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
            trainer.save_last(rec.wall_seconds(st))
            runs.write_history(rec.run_dir, st.history)
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
            return rec.finish(st, status, reason + _NO_MODEL, {}, {}, {}, best_epoch=None)
        final, match, uniform = trainer.final_evaluation()
        return rec.finish(st, status, reason, final, match, uniform)
    except BaseException as err:
        rec.fail(st, err)
        raise
