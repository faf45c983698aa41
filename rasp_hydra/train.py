"""The training loop of the original experiments, as one plain function.

    from rasp_hydra.tasks import get_task
    from rasp_hydra.data import build_splits
    from rasp_hydra.model import ModelConfig
    from rasp_hydra.train import TrainConfig, train

    task = get_task("hist_10_bos")
    splits = build_splits(task, sizes={"train": 2000, "valid": 200, "test": 200}, max_len=10)
    cfg = ModelConfig(task.vocab_size, task.n_out, task.pad_id, layers=1, heads=1,
                      d_model=64, ff=128, max_len=11)
    metrics = train(task, splits, cfg, train_cfg=TrainConfig(epochs=20), run_dir="out/run")

The procedure (TASKS.md, "Training defaults"), once per epoch:
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

Resume: checkpoints/last.pt holds the model, optimizer, scheduler, trainer counters,
history, and torch RNG state, written after every epoch (and after the last batch on an
interrupt), so a resumed run continues exactly where the checkpoint was taken: on CPU with
the same thread count the final metrics are bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
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
from rasp_hydra.model import Encoder, ModelConfig

IGNORE = -100
logger = logging.getLogger("rasp_hydra.train")


@dataclass
class OptimizerConfig:
    name: str = "adam"  # adam | sgd
    lr: float = 3e-4
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0


@dataclass
class ScheduleConfig:
    name: str = "exponential"  # exponential | constant
    gamma: float = 0.98  # per-epoch decay (exponential only)


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 50
    attn_loss_c: float = 100.0
    reset_patience: int = 10
    perfect_acc_epochs: int = 3
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | auto
    num_threads: int | None = None  # torch threads while training (restored after); None: as is
    resume: str | bool | None = None  # True: run_dir's last.pt; a path: that run dir/file
    eval_batch_size: int = 250


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


# ------------------------------------------------------------------------------ pieces

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; allowed: auto, cpu, cuda")
    return torch.device(name)


def make_optimizer(params, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.name == "adam":
        # fused: one kernel for all parameters (much less per-step overhead on CPU)
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r}; allowed: adam, sgd")


def make_scheduler(opt, cfg: ScheduleConfig):
    if cfg.name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    if cfg.name == "constant":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=1.0)
    raise ValueError(f"unknown schedule {cfg.name!r}; allowed: exponential, constant")


def check_heads(task, model_cfg: ModelConfig) -> None:
    """Supervision needs every supervised (layer, head) to exist in the model."""
    missing = [h for h in task.supervised_heads
               if h[0] >= model_cfg.layers or h[1] >= model_cfg.heads]
    if missing:
        names = ", ".join(f"layer {layer} head {head}" for layer, head in missing)
        raise ValueError(
            f"{task.name} supervises {names}, which a model with {model_cfg.layers} layers "
            f"and {model_cfg.heads} heads lacks (layers and heads count from 0). Train "
            "without _with_attns or with more layers/heads.")


def present_heads(heads, model_cfg: ModelConfig) -> tuple:
    return tuple(h for h in heads if h[0] < model_cfg.layers and h[1] < model_cfg.heads)


def selector_targets(sel: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Row-normalized target of a boolean selector (B, n, n): S / row sum, with 1e-8 added
    to every real key before dividing, so an empty row becomes uniform over real keys
    (TASKS.md) and a non-empty row is S / (count + n * 1e-8)."""
    s = sel.to(torch.float32) + 1e-8 * key_mask[:, None, :]
    return s / s.sum(-1, keepdim=True)


def _valid(lengths: torch.Tensor, n: int) -> torch.Tensor:
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]  # (B, n)


def attention_terms(task, tokens, lengths, attn, heads, need_mse: bool, need_match: bool):
    """Per-head attention MSE to the target (sum, count) and attention match (sum, rows).

    attn: list per layer of probs (B, H, n, n). Returns (sq_err (K,), n_elems, match (K,),
    n_rows) as tensors; K = len(heads).
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
    seq_loss = torch.zeros((), dtype=torch.float64)
    correct = total = seq_ok = n_seq = 0
    sq_err = torch.zeros(len(supervised), dtype=torch.float64)
    n_elems = 0.0
    match = torch.zeros(len(measured), dtype=torch.float64)
    rows = 0.0
    for tokens, lengths, targets in batches(split, batch_size, shuffle=False):
        tokens, lengths, targets = (t.to(device) for t in (tokens, lengths, targets))
        logits, attn, _ = model(tokens, lengths, need_attention=layers)
        seq_loss += sequence_loss(logits, targets, lengths).double().sum().cpu()
        pred = logits.argmax(-1)
        ok = (pred == targets) | (targets == IGNORE)
        correct += int((pred == targets).sum())
        total += int(lengths.sum())
        seq_ok += int(ok.all(1).sum())
        n_seq += tokens.shape[0]
        if supervised:
            t = attention_terms(task, tokens, lengths, attn, supervised, True, False)
            sq_err += t["sq_err"].double().cpu()
            n_elems += float(t["n_elems"])
        if measured:
            t = attention_terms(task, tokens, lengths, attn, measured, False, True)
            match += t["match"].double().cpu()
            rows += float(t["rows"])
    model.train(was_training)
    loss = float(seq_loss) / max(n_seq, 1)
    out = {"loss": loss, "token_acc": correct / max(total, 1),
           "seq_acc": seq_ok / max(n_seq, 1)}
    if supervised:
        attn_mse = float(sq_err.mean()) / max(n_elems, 1.0)
        out["loss"] = loss + attn_loss_c * attn_mse
        out["attn_loss"] = attn_mse
    out["attention_match"] = {runs.head_key(h): float(m) / max(rows, 1.0)
                              for h, m in zip(measured, match.tolist(), strict=True)}
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


def _checkpoint(model, model_cfg, task, epoch, **extra) -> dict:
    return {"model": model.state_dict(), "model_config": model_cfg.to_dict(),
            "task": task.name,
            "task_spec": {"family": task.family, "size": int(task.size), "bos": bool(task.bos),
                          "with_attns": bool(task.with_attns)},
            "epoch": int(epoch), **extra}


def _resume_path(resume, run_dir: Path) -> Path | None:
    if resume in (None, False, "", "false", "False"):
        return None
    if resume is True or resume in ("true", "True"):
        path = run_dir
    else:
        path = Path(resume)
    if path.is_dir():
        path = path / runs.LAST
    return path


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
    progress: bool | None = None,
) -> dict:
    """Train one model on `task`; write the run directory; return metrics.json's dict.

    splits: {"train", "valid", "test"[, "test_long"]} of data.Split.
    meta: extra metrics.json fields (e.g. {"arch": "predicted"}).
    log: called with each train.log line (default: logging, logger "rasp_hydra.train").
    stop: an Event; when set (or on SIGINT/SIGTERM if handle_signals, in the main thread)
        training stops after the current batch and the run ends "interrupted".
    on_epoch_end: called (epoch, history_row) after each epoch's files are written; an
        exception there ends the run "failed" (and is re-raised), like a crash.
    progress: tqdm bar per epoch; default only when stderr is a terminal.
    train_cfg.resume: True (this run_dir) or a run dir / last.pt path to continue from.
    """
    from rasp_hydra.data import batches

    opt_cfg = opt_cfg or OptimizerConfig()
    sched_cfg = sched_cfg or ScheduleConfig()
    tc = train_cfg or TrainConfig()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = log or logger.info
    threads_before = torch.get_num_threads()
    if tc.num_threads:
        torch.set_num_threads(int(tc.num_threads))
    device = resolve_device(tc.device)
    check_heads(task, model_cfg)
    longest = max(int(s.lengths.max()) for s in splits.values() if len(s))
    if longest > model_cfg.max_len:
        raise ValueError(f"the data has sequences of length {longest} (BOS included) but "
                         f"model max_len is {model_cfg.max_len}")
    supervised = tuple(task.supervised_heads) if tc.attn_loss_c > 0 else ()
    measured = present_heads(task.selector_heads, model_cfg)
    sup_layers = sorted({h[0] for h in supervised})

    torch.manual_seed(tc.seed)
    model = Encoder(model_cfg).to(device)
    opt = make_optimizer(model.parameters(), opt_cfg)
    sched = make_scheduler(opt, sched_cfg)
    st = _State()

    resume_from = _resume_path(tc.resume, run_dir)
    if resume_from is not None and resume_from.is_file():
        ck = runs.load_checkpoint(resume_from, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        st = _State(**ck["trainer"])
        st.resumes += 1
        torch.set_rng_state(ck["rng"]["torch"].cpu())
        if device.type == "cuda" and "cuda" in ck["rng"]:
            torch.cuda.set_rng_state(ck["rng"]["cuda"].cpu())
        if resume_from.parent.parent != run_dir:  # resuming into a new directory
            src_best = resume_from.parent / "best.pt"
            if src_best.is_file():
                runs.save_checkpoint(run_dir / runs.BEST, runs.load_checkpoint(src_best))
    elif resume_from is not None and resume_from != run_dir / runs.LAST:
        raise FileNotFoundError(f"cannot resume: {resume_from} does not exist")

    metrics = {
        "status": "running", "reason": None, "error": None,
        "task": task.name, "family": task.family, "bos": bool(task.bos),
        "with_attns": bool(task.with_attns), "arch": None,
        "layers": model_cfg.layers, "heads": model_cfg.heads, "d_model": model_cfg.d_model,
        "ff": model_cfg.ff, "dropout": model_cfg.dropout, "positions": model_cfg.positions,
        "optimizer": opt_cfg.name, "lr": opt_cfg.lr,
        "schedule": sched_cfg.name,
        "gamma": sched_cfg.gamma if sched_cfg.name == "exponential" else 1.0,
        "batch_size": tc.batch_size, "seed": tc.seed, "attn_loss_c": tc.attn_loss_c,
        "predicted_layers": task.predicted_layers, "predicted_heads": task.predicted_heads,
        "params": sum(p.numel() for p in model.parameters()),
        "supervised_heads": [runs.head_key(h) for h in supervised],
        "epochs_run": st.epoch, "best_epoch": st.best_epoch, "wall_seconds": st.wall_seconds,
        "tokens_per_second": None, "num_threads": torch.get_num_threads(),
        "device": device.type, "resumes": st.resumes, "checkpoint": "best",
        "final": {}, "attention_match": {},
        **(meta or {}),
    }
    runs.write_metrics(run_dir, metrics)
    if st.resumes:
        line = f"resumed from {resume_from} after epoch {st.epoch}" + (
            f" (+{st.batch} batches)" if st.batch else "")
    else:
        line = (f"start {task.name}: {model_cfg.layers} layers, {model_cfg.heads} heads, "
                f"d_model {model_cfg.d_model}, {metrics['params']} params, "
                f"{len(splits['train'])} train sequences, device {device.type}, "
                f"{torch.get_num_threads()} threads")
    runs.append_log(run_dir, line)
    log(line)

    flag = _StopFlag(stop)
    if handle_signals:
        flag.install()
    show_bar = sys.stderr.isatty() if progress is None else progress
    session_start = time.perf_counter()
    last_plot = 0.0

    def save_last():
        rng = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        trainer = asdict(st)  # wall_seconds: earlier sessions plus this one so far
        trainer["wall_seconds"] = st.wall_seconds + time.perf_counter() - session_start
        ck = _checkpoint(model, model_cfg, task, st.epoch, optimizer=opt.state_dict(),
                         scheduler=sched.state_dict(), trainer=trainer, rng=rng)
        runs.save_checkpoint(run_dir / runs.LAST, ck)

    def tokens_per_second():
        return st.train_tokens / st.train_seconds if st.train_seconds else None

    def status_update():
        metrics.update(epochs_run=st.epoch, best_epoch=st.best_epoch,
                       wall_seconds=st.wall_seconds + time.perf_counter() - session_start,
                       tokens_per_second=tokens_per_second())
        runs.write_metrics(run_dir, metrics)

    try:
        n_train = len(splits["train"])
        n_batches = math.ceil(n_train / tc.batch_size)
        done = st.perfect_streak >= tc.perfect_acc_epochs  # a finished run, resumed
        for epoch in range(st.epoch + 1, 0 if done else tc.epochs + 1):
            # 1. train ------------------------------------------------------------------
            lr = opt.param_groups[0]["lr"]
            model.train()
            acc = st.acc or {}
            # accumulators stay on the device: no host sync per batch
            loss_sum = torch.tensor(acc.get("loss_sum", 0.0), dtype=torch.float64, device=device)
            attn_sum = torch.tensor(acc.get("attn_sum", 0.0), dtype=torch.float64, device=device)
            correct = torch.tensor(acc.get("correct", 0), dtype=torch.int64, device=device)
            seqs, toks = acc.get("seqs", 0), acc.get("toks", 0)
            seconds = acc.get("seconds", 0.0)
            skip = st.batch
            bar = None
            if show_bar:
                from tqdm import tqdm

                bar = tqdm(total=n_batches, initial=skip, desc=f"epoch {epoch}",
                           leave=False, dynamic_ncols=True)
            t0 = time.perf_counter()
            stopped = False
            it = batches(splits["train"], tc.batch_size, shuffle=True, seed=tc.seed,
                         epoch=epoch)
            for i, (tokens, lengths, targets) in enumerate(it):
                if i < skip:
                    continue
                n_real = int(lengths.sum())  # lengths still on the CPU here
                tokens, lengths, targets = (t.to(device, non_blocking=True)
                                            for t in (tokens, lengths, targets))
                logits, attn, _ = model(tokens, lengths, need_attention=sup_layers)
                per_seq = sequence_loss(logits, targets, lengths)
                loss = per_seq.mean()
                if supervised:
                    t = attention_terms(task, tokens, lengths, attn, supervised, True, False)
                    attn_mse = t["sq_err"].mean() / t["n_elems"]
                    loss = loss + tc.attn_loss_c * attn_mse
                    attn_sum += attn_mse.detach().double() * tokens.shape[0]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    loss_sum += loss.detach().double() * tokens.shape[0]
                    correct += (logits.argmax(-1) == targets).sum()
                seqs += tokens.shape[0]
                toks += n_real
                st.batch = i + 1
                if bar is not None:
                    bar.update(1)
                    if i % 20 == 0:
                        bar.set_postfix(loss=f"{float(loss):.4f}")
                if flag:
                    stopped = True
                    break
            dt = time.perf_counter() - t0
            seconds += dt
            if bar is not None:
                bar.close()
            st.train_seconds += dt
            st.train_tokens += toks - acc.get("toks", 0)
            if stopped and st.batch < n_batches:
                # mid-epoch: keep what this epoch has done so far, for an exact resume
                st.acc = {"loss_sum": float(loss_sum), "attn_sum": float(attn_sum),
                          "correct": int(correct), "seqs": seqs, "toks": toks,
                          "seconds": seconds}
                save_last()
                break
            # 2. validate ---------------------------------------------------------------
            val = evaluate(model, task, splits["valid"], tc.eval_batch_size, device,
                           supervised, measured, tc.attn_loss_c)
            row = {"epoch": epoch, "lr": lr, "seconds": seconds,
                   "train_loss": float(loss_sum) / max(seqs, 1),
                   "train_token_acc": int(correct) / max(toks, 1),
                   "train_attn_loss": float(attn_sum) / max(seqs, 1) if supervised else None,
                   "val_loss": val["loss"], "val_token_acc": val["token_acc"],
                   "val_seq_acc": val["seq_acc"]}
            if supervised:
                row["val_attn_loss"] = val["attn_loss"]
            for k, v in val["attention_match"].items():
                row[f"attn_match_{k}"] = v
            # 3. best checkpoint and reset patience ------------------------------------
            note = ""
            if val["loss"] < st.best_val:
                st.best_val, st.best_epoch, st.since_best = val["loss"], epoch, 0
                runs.save_checkpoint(run_dir / runs.BEST, _checkpoint(
                    model, model_cfg, task, epoch, optimizer=opt.state_dict(),
                    val_loss=val["loss"]))
                note = " *"
            else:
                st.since_best += 1
                if st.since_best > tc.reset_patience:
                    best = runs.load_checkpoint(run_dir / runs.BEST, map_location=device)
                    model.load_state_dict(best["model"])
                    lrs = [g["lr"] for g in opt.param_groups]
                    opt.load_state_dict(best["optimizer"])
                    for g, lr_now in zip(opt.param_groups, lrs, strict=True):
                        g["lr"] = lr_now
                    st.since_best = 0
                    st.resets += 1
                    note = f" (reset to best of epoch {st.best_epoch})"
            st.perfect_streak = st.perfect_streak + 1 if val["perfect"] else 0
            # 4. decay lr, write everything -------------------------------------------
            sched.step()
            st.history.append(row)
            st.epoch, st.batch, st.acc = epoch, 0, {}
            save_last()
            runs.write_history(run_dir, st.history)
            line = (f"epoch {epoch:3d}/{tc.epochs} train_loss {row['train_loss']:.4f} "
                    f"train_acc {row['train_token_acc']:.4f} val_loss {val['loss']:.4f} "
                    f"val_acc {val['token_acc']:.4f} val_seq_acc {val['seq_acc']:.4f} "
                    f"lr {lr:.3g} {seconds:.1f}s")
            if supervised:
                line += f" attn_loss {row['train_attn_loss']:.5f}"
            if val["attention_match"]:
                line += " match " + " ".join(f"{k}:{v:.3f}"
                                             for k, v in val["attention_match"].items())
            runs.append_log(run_dir, line + note)
            log(line + note)
            status_update()
            now = time.perf_counter()
            if now - last_plot > 60:
                runs.plot_curves(run_dir, st.history)
                last_plot = time.perf_counter()
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
            # 5. early stop -----------------------------------------------------------
            if st.perfect_streak >= tc.perfect_acc_epochs:
                line = (f"stop: validation accuracy 1.0 for {st.perfect_streak} epochs "
                        "in a row")
                runs.append_log(run_dir, line)
                log(line)
                break
            if flag:
                break

        # final evaluation of the best checkpoint -----------------------------------------
        interrupted = bool(flag)
        if interrupted:
            why = flag.signal or "stop requested"
            line = f"interrupted ({why}) in epoch {st.epoch + 1}: evaluating the best checkpoint"
            runs.append_log(run_dir, line)
            log(line)
        if (run_dir / runs.BEST).is_file():
            best = runs.load_checkpoint(run_dir / runs.BEST, map_location=device)
            model.load_state_dict(best["model"])
        else:  # stopped before the first validation: the current weights are the best
            runs.save_checkpoint(run_dir / runs.BEST, _checkpoint(
                model, model_cfg, task, st.epoch, optimizer=opt.state_dict()))
        final, match = {}, {}
        for name in ("train", "valid", "test", "test_long"):
            if name not in splits or not len(splits[name]):
                continue
            r = evaluate(model, task, splits[name], tc.eval_batch_size, device,
                         supervised, measured if name == "test" else (), tc.attn_loss_c)
            final[name] = {k: r[k] for k in ("loss", "token_acc", "seq_acc", "attn_loss")
                           if k in r}
            if name == "test":
                match = r["attention_match"]
        metrics.update(status="interrupted" if interrupted else "completed",
                       reason=(flag.signal or "stop requested") if interrupted else None,
                       final=final, attention_match=match)
        status_update()
        runs.plot_curves(run_dir, st.history)
        line = "final " + " ".join(
            f"{k} acc {v['token_acc']:.4f} (seq {v['seq_acc']:.4f})" for k, v in final.items())
        if match:
            line += " attention match " + " ".join(f"{k}:{v:.3f}" for k, v in match.items())
        line += f" [{metrics['status']}, best epoch {st.best_epoch}]"
        runs.append_log(run_dir, line)
        log(line)
        return metrics
    except BaseException as err:
        metrics.update(status="failed", error=f"{type(err).__name__}: {err}")
        if isinstance(err, KeyboardInterrupt):
            metrics.update(status="interrupted", reason="forced (second SIGINT)", error=None)
        try:
            status_update()
            runs.append_log(run_dir, f"{metrics['status']}: {type(err).__name__}: {err}")
        except Exception:  # pragma: no cover - the original error matters more
            pass
        raise
    finally:
        flag.restore()
        torch.set_num_threads(threads_before)
