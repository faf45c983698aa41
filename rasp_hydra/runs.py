"""Everything that reads or writes a run directory (docs/design.md, "The run directory").

A run directory holds:

    .hydra/                 the first invocation's composition (written by Hydra, read here)
    invocations/NNN/        the composition of every later invocation (a resume), beside it
    invocations.jsonl       one line per invocation start and end: who, when, overrides, outcome
    run.lock                the lock of the one process that may write the directory
    train.log               one line per epoch, then the final accuracies
    history.csv             one row per epoch, all metrics
    metrics.json            the run's record (RunRecord); status running|completed|interrupted|
                            diverged|failed|skipped
    checkpoints/best.pt     best validation loss;  checkpoints/last.pt: everything to resume
    plots/curves.png        loss and accuracy curves
    maps/SEQUENCE/          the drawer's heatmaps of one sequence

Every file that a reader may see half-written (metrics.json, history.csv, checkpoints) is
written to a temporary file and moved into place with ``os.replace``. Checkpoints hold only
tensors and primitives, so ``torch.load(path, weights_only=True)`` reads them; one that
cannot be read raises ``CheckpointError``, a paragraph that names the file and the way out.
One process at a time writes a run directory: ``RunLock`` is an ``fcntl`` lock on
``run.lock``, which the OS releases when the process dies (``kill -9`` leaves no stale lock).
Nothing here knows about Hydra beyond reading ``.hydra/*.yaml`` with OmegaConf.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

METRICS = "metrics.json"
HISTORY = "history.csv"
LOG = "train.log"
HYDRA = Path(".hydra")
CONFIG = HYDRA / "config.yaml"
OVERRIDES = HYDRA / "overrides.yaml"
INVOCATION_DIRS = Path("invocations")
INVOCATIONS = "invocations.jsonl"
LOCK = "run.lock"
BEST = Path("checkpoints") / "best.pt"
LAST = Path("checkpoints") / "last.pt"
CURVES = Path("plots") / "curves.png"
MAPS = "maps"  # the drawer's figures, one folder per sequence

HISTORY_COLUMNS = [
    "epoch", "lr", "seconds", "train_loss", "train_token_acc", "train_attn_loss",
    "val_loss", "val_token_acc", "val_seq_acc",
]  # then val_attn_loss (supervised runs) and attn_match_L,H for every measured head


def head_key(head) -> str:
    """(layer, head) -> "layer,head", the key used in metrics.json and history.csv."""
    return f"{head[0]},{head[1]}"


def match_above_chance(match: float, uniform: float) -> float | None:
    """An attention match corrected for chance: (m - u) / (1 - u), where u is the match
    uniform attention over the real keys scores on the same rows (train.attention_terms).
    0 is chance, 1 all attention on selected keys; None when the select picks every key
    (u = 1, e.g. `select(indices, indices, TRUE)`): no attention can do better than chance.

    >>> match_above_chance(0.625, 0.25), match_above_chance(1.0, 1.0)
    (0.5, None)
    """
    if uniform >= 1.0 - 1e-9:
        return None
    return (match - uniform) / (1.0 - uniform)


class WriteError(Exception):
    """A file of the run directory could not be written (disk full, I/O error, read-only);
    the message names the file, says what was kept and the way on."""

    def __init__(self, errno: int | None, message: str):
        super().__init__(message)
        self.errno = errno


def _write_error(path: Path, err: OSError) -> WriteError:
    run_dir = path.parent.parent if path.parent.name in ("checkpoints", "plots") else path.parent
    return WriteError(
        err.errno, f"{path} could not be written ({err.strerror or err}): the write was "
        f"abandoned and its temporary file removed, so every file of {run_dir} holds what it "
        "held before (metrics.json the last complete record). Free some space (or fix the "
        f"file system), then continue with python -m rasp_hydra --resume {run_dir}")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then os.replace: a reader sees the old file
    or the new one, never a part. A failed write removes its temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, err) from None


TMP_PATTERN = re.compile(r"^\..+\.\d+\.tmp(\.png)?$")  # .NAME.PID.tmp of _atomic_write_bytes


def remove_stale_tmp(run_dir) -> list[Path]:
    """Remove the temporary files a killed writer left (only the lock holder calls this)."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / "checkpoints", Path(run_dir) / "plots"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if TMP_PATTERN.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None  # strict JSON has no NaN/inf
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


# ---------------------------------------------------------------------------- the record

# Statuses that end a run's history until it is resumed; the report counts only "completed"
FINAL_STATUSES = ("completed", "interrupted", "diverged", "failed", "skipped")
# What a reader calls a job that did not complete (see run_status); a sweep ends with exit 1
NOT_COMPLETED = ("failed", "crashed", "incomplete", "interrupted", "unknown")


@dataclass
class RunRecord:
    """metrics.json: the one record the report, the drawer and the notebook API read."""

    status: str = "running"
    reason: str | None = None  # why a run ended other than completed
    error: str | None = None
    task: str | None = None
    family: str | None = None
    bos: bool | None = None
    with_attns: bool | None = None
    arch: str | None = None
    layers: int | None = None
    heads: int | None = None
    d_model: int | None = None
    ff: int | None = None
    dropout: float | None = None
    positions: str | None = None
    optimizer: str | None = None
    lr: float | None = None
    schedule: str | None = None
    gamma: float | None = None
    batch_size: int | None = None
    seed: int | None = None
    attn_loss_c: float | None = None
    predicted_layers: int | None = None
    predicted_heads: int | None = None
    params: int | None = None
    supervised_heads: list = field(default_factory=list)
    epochs_run: int = 0
    best_epoch: int = 0
    diverged_epoch: int | None = None
    wall_seconds: float = 0.0
    tokens_per_second: float | None = None
    num_threads: int | None = None
    device: str | None = None
    resumes: int = 0
    checkpoint: str = "best"  # the checkpoint `final` was evaluated from
    overlap_with_train: dict | None = None
    final: dict = field(default_factory=dict)  # split -> loss, token_acc, seq_acc[, attn_loss]
    attention_match: dict = field(default_factory=dict)  # "layer,head" -> match on test
    # "layer,head" -> the match uniform attention over the real keys scores on the same rows
    attention_uniform: dict = field(default_factory=dict)
    trial: int | None = None  # Optuna's trial number, for a trial of a search

    @classmethod
    def describe(cls, task, *, arch=None, layers, heads, d_model, ff, optimizer, schedule,
                 train, **fields) -> RunRecord:
        """The record of a run of `task` with these sizes and configs, before it trains."""
        from rasp_hydra.config import ArchName, OptimizerName, ScheduleName

        return cls(  # enums as their values
            task=task.name, family=task.family, bos=bool(task.bos),
            with_attns=bool(task.with_attns), arch=arch and ArchName(arch).value,
            layers=layers, heads=heads, d_model=d_model, ff=ff,
            optimizer=OptimizerName(optimizer.name).value, lr=float(optimizer.lr),
            schedule=ScheduleName(schedule.name).value,
            gamma=float(schedule.gamma) if schedule.name == "exponential" else 1.0,
            batch_size=train.batch_size, seed=train.seed, attn_loss_c=train.attn_loss_c,
            predicted_layers=task.predicted_layers, predicted_heads=task.predicted_heads,
            **fields)

    @classmethod
    def from_dict(cls, d: dict) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- writing

def write_metrics(run_dir, metrics: RunRecord | dict) -> None:
    """Write metrics.json atomically."""
    if isinstance(metrics, RunRecord):
        metrics = metrics.to_dict()
    text = json.dumps(_json_safe(metrics), indent=2, allow_nan=False)
    _atomic_write_bytes(Path(run_dir) / METRICS, (text + "\n").encode())


def write_killed(run_dir, how: str, pid: int) -> bool:
    """Record that a run's process died without a word (`how`: "killed by SIGKILL"), as
    its sweep's launcher saw it: a `running` record (or none) becomes `failed`. False if
    another process holds the directory now (it is left as it is)."""
    try:
        lock = RunLock(run_dir).acquire()
    except RunLocked:
        return False
    try:
        record = read_metrics(run_dir)
        error = f"the job's process {pid} was {how}"
        if record.get("status") in (None, "running", "unreadable"):
            write_metrics(run_dir, RunRecord.from_dict(
                {**record, "status": "failed", "reason": how, "error": error}))
        append_log(run_dir, f"failed: {error} (by the out-of-memory killer or by hand?)")
        append_invocation(run_dir, event="end", outcome="failed", error=error)
    finally:
        lock.release()
    return True


def write_skipped(run_dir, reason: str, **fields) -> dict:
    """Record a run that ends at once (e.g. an arch variant with zero layers or heads)."""
    record = RunRecord.from_dict({**fields, "status": "skipped", "reason": reason})
    write_metrics(run_dir, record)
    return record.to_dict()


def append_log(run_dir, line: str) -> None:
    """Append one line to train.log (the file a person tails)."""
    path = Path(run_dir) / LOG
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(line.rstrip("\n") + "\n")
    except OSError as err:
        raise _write_error(path, err) from None


def write_history(run_dir, rows: list[dict]) -> None:
    """Rewrite history.csv from all rows so far (atomic; survives resume)."""
    extra = []
    for row in rows:
        for k in row:
            if k not in HISTORY_COLUMNS and k not in extra:
                extra.append(k)
    extra.sort(key=lambda k: (k.startswith("attn_match_"), k))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS + extra, extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    _atomic_write_bytes(Path(run_dir) / HISTORY, buf.getvalue().encode())


def save_checkpoint(path, obj: dict) -> None:
    """torch.save to a temporary file, then os.replace: readers never see half a file."""
    import torch

    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write_bytes(path, buf.getvalue())


class CheckpointError(Exception):
    """A checkpoint that cannot be read; the message names the file and the way out."""


def load_checkpoint(path, map_location="cpu") -> dict:
    """A checkpoint's dict (tensors and primitives only), or CheckpointError."""
    import torch

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(ckpt, dict) or not {"model", "model_config", "epoch"} <= set(ckpt):
            raise ValueError("not a checkpoint of rasp_hydra (no model, model_config, epoch)")
        return ckpt
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated, empty, corrupt, or not a checkpoint of ours
        what = ("it is empty (0 bytes)" if path.is_file() and path.stat().st_size == 0 else
                f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}")
        raise CheckpointError(
            f"{path} cannot be read ({what}): "
            f"it is truncated or corrupt, e.g. a copy that was cut short or a disk that filled "
            f"up. Nothing was changed. To go on, {_way_out(path)}; to keep the broken file for "
            f"inspection, move it aside first.") from None


def _way_out(path: Path) -> str:
    """What to do instead of using the checkpoint at `path` (last.pt or best.pt)."""
    run_dir = path.parent.parent
    if path.name == "last.pt":
        return (f"resume from the best checkpoint instead (python -m rasp_hydra --resume "
                f"{run_dir} train.resume_from=best; not bit-exact: it continues from the best "
                "epoch) where best.pt is valid, or start a new run")
    return ("use the last checkpoint instead (--which last when drawing, which='last' in "
            "load_run; a resume uses last.pt anyway), or start a new run")


SHAPE_KEYS = ("layers", "heads", "d_model", "ff")


def checkpoint_mismatch(ckpt: dict, task: str | None, shape: dict) -> str | None:
    """How a checkpoint differs from the run it lies in: its task and model shape against
    the run's (`shape`: layers, heads, d_model, ff; unknown ones are not compared)."""
    cfg = ckpt.get("model_config") or {}
    diffs = [f"{k} {cfg.get(k)} where the run has {shape[k]}" for k in SHAPE_KEYS
             if shape.get(k) is not None and cfg.get(k) != shape[k]]
    if task and ckpt.get("task") not in (None, task):
        diffs.insert(0, f"task {ckpt['task']} where the run has {task}")
    return "; ".join(diffs) or None


def check_fits(path, ckpt: dict, task: str | None, shape: dict) -> dict:
    """`ckpt`, or CheckpointError if it belongs to another run (another task or shape)."""
    path = Path(path)
    diff = checkpoint_mismatch(ckpt, task, shape)
    if diff:
        raise CheckpointError(
            f"{path} is not a checkpoint of this run: it holds {diff} (a file copied from "
            f"another run?). Nothing was changed. To go on, {_way_out(path)}.")
    return ckpt


def record_shape(record: dict) -> dict:
    """The model shape a run's record (metrics.json) describes."""
    return {k: record.get(k) for k in SHAPE_KEYS}


def _num(x) -> float:
    """A metric for plotting: NaN where an epoch has none (e.g. the one that diverged)."""
    return float("nan") if x is None else float(x)


def plot_curves(run_dir, rows: list[dict]) -> Path | None:
    """Loss (log scale) and accuracy per epoch -> plots/curves.png. Never raises."""
    if not rows:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except Exception:  # plotting is a convenience, not part of training
        return None
    path = Path(run_dir) / CURVES
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    ep = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    try:
        for key, label in (("train_loss", "train"), ("val_loss", "valid")):
            ys = [max(_num(r.get(key)), 1e-12) for r in rows]
            ax1.plot(ep, ys, label=label)
        ax1.set_yscale("log")
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("loss")
        ax1.legend()
        for key, label in (("train_token_acc", "train token"), ("val_token_acc", "valid token"),
                           ("val_seq_acc", "valid sequence")):
            ax2.plot(ep, [_num(r.get(key)) for r in rows], label=label)
        for key in rows[-1]:
            if key.startswith("attn_match_"):
                ax2.plot(ep, [r.get(key, float("nan")) for r in rows], ls="--",
                         label=f"attn match {key[len('attn_match_'):]}")
        ax2.set_ylim(0, 1.02)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("accuracy")
        ax2.legend(fontsize=7)
        fig.tight_layout()
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
        try:
            fig.savefig(tmp, dpi=100)
            os.replace(tmp, path)
        except OSError:  # a full disk: the record matters, the picture can wait
            tmp.unlink(missing_ok=True)
            return None
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------------------- one writer

class RunLocked(Exception):
    """Another live process holds the run directory; the message names it."""


class RunLock:
    """An exclusive, advisory lock on RUN/run.lock, held for a whole invocation.

    ``fcntl.flock`` belongs to the open file: the OS drops it when the process exits or is
    killed, so a lock never outlives its holder. The file names the holder (pid, host,
    start time) for the error that a second process gets.
    """

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self._file = None

    def acquire(self) -> RunLock:
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.run_dir / LOCK, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            raise RunLocked(self._locked_message(holder)) from None
        self._file = f
        return self

    def announce(self) -> RunLock:
        """Name this process in the lock file, for the error a second process gets. Kept
        apart from `acquire`, so that an invocation that is refused changes no byte."""
        f = self._file
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": _now()}) + "\n")
        f.flush()
        return self

    def _locked_message(self, holder: str) -> str:
        try:
            h = json.loads(holder)
            who = f"process {h['pid']} on {h['host']}, started {h['started']}"
        except (ValueError, KeyError, TypeError):
            who = "another process"
        return (f"{self.run_dir} is in use by {who}: one process at a time may write a run "
                "directory, and this one has left it untouched. Wait for that process to end "
                "(or stop it), then run again; to train beside it, start a new run directory.")

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock; the file stays as a record
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire().announce()

    def __exit__(self, *exc) -> None:
        self.release()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def append_invocation(run_dir, **entry) -> None:
    """Append one line to invocations.jsonl: the run directory's append-only history."""
    line = json.dumps(_json_safe({"time": _now(), "pid": os.getpid(),
                                  "host": socket.gethostname(), **entry}))
    path = Path(run_dir) / INVOCATIONS
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise _write_error(path, err) from None


def read_invocations(run_dir) -> list[dict]:
    path = Path(run_dir) / INVOCATIONS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut short by a crash
            continue
    return out


def has_run(run_dir) -> bool:
    """Whether a run already trained (or tried to) in this directory."""
    run_dir = Path(run_dir)
    return (run_dir / METRICS).is_file() or (run_dir / LAST).is_file()


def has_history(run_dir) -> bool:
    """Whether the run has finished an epoch (its record or history says so)."""
    if int(read_metrics(run_dir).get("epochs_run") or 0) > 0:
        return True
    frame = read_history_frame(run_dir)
    return frame is not None and len(frame) > 0


def resume_problem(run_dir, resume_from: str = "last") -> str | None:
    """Why this run directory cannot be resumed from its `resume_from` checkpoint ("last" or
    "best"), as one paragraph; None if it can (or holds nothing to resume: a new run).

    A diverged run is not resumed (the same steps would diverge again); a run that finished
    an epoch is never trained again from nothing because its checkpoint is missing, empty,
    unreadable or another run's.
    """
    run_dir = Path(run_dir)
    record = read_metrics(run_dir)
    if record.get("status") == "diverged":
        return (f"{run_dir} diverged ({record.get('reason') or 'a non-finite loss'}), and a "
                "resume would take the same steps into the same divergence, so nothing was "
                "written. Start a new run with a smaller optimizer.lr (e.g. a tenth of "
                f"{record.get('lr') or 'its lr'}); the diverged one stays as its record.")
    path = run_dir / (BEST if resume_from == "best" else LAST)
    if not path.is_file():
        if not has_history(run_dir):
            return None  # cut short before its first epoch ended: it starts over
        if resume_from == "best":
            return (f"train.resume_from=best, but {path} does not exist, so nothing was "
                    "written. Resume from last.pt (leave out train.resume_from), or start a "
                    "new run.")
        return (f"{path} does not exist, but {run_dir} has finished epochs: resuming would "
                "train it again from nothing, so nothing was written. To go on, "
                f"{_way_out(path)}.")
    try:
        ckpt = load_checkpoint(path)
        check_fits(path, ckpt, record.get("task"), record_shape(record))
    except CheckpointError as err:
        return str(err)
    return None


def next_invocation_dir(run_dir) -> Path:
    """Where a later invocation's composition goes: invocations/NNN (relative to run_dir)."""
    base = Path(run_dir) / INVOCATION_DIRS
    taken = [int(p.name) for p in base.glob("[0-9]*") if p.name.isdigit()] if base.is_dir() \
        else []
    return INVOCATION_DIRS / f"{max(taken, default=1) + 1:03d}"


def config_differences(original: dict, current: dict, safe=()) -> list[str]:
    """Dotted keys whose values differ between two plain config dicts, except `safe` keys
    (a key or any key below it). Keys the original lacks (added by a newer version of the
    code, with their defaults) are not differences.

    >>> config_differences({"model": {"layers": 2}, "train": {"epochs": 5}},
    ...                    {"model": {"layers": 3}, "train": {"epochs": 9}}, ["train.epochs"])
    ['model.layers']
    """
    flat_o, flat_c = flatten(original), flatten(current)
    def is_safe(k):
        return any(k == s or k.startswith(s + ".") for s in safe)
    return [k for k, v in flat_o.items() if not is_safe(k) and flat_c.get(k, v) != v]


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}, "c": 2}`` -> ``{"a.b": 1, "c": 2}``, the one flat form of a config
    or a record (report columns, tracker params, config comparison); lists become JSON
    text and an empty dict leaves no key.

    >>> flatten({"a": {"b": 1, "c": {}}, "d": [1, 2]})
    {'a.b': 1, 'd': '[1, 2]'}
    """
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


# ---------------------------------------------------------------------------- sweep roots

MULTIRUN = "multirun.yaml"  # Hydra writes it at a sweep's root before the jobs start
OPTUNA_RESULTS = "optimization_results.yaml"


def read_sweep_config(sweep_root) -> dict | None:
    """The ``hydra`` section of a sweep root's multirun.yaml, or None if it has none."""
    path = Path(sweep_root) / MULTIRUN
    if not path.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        hydra_cfg = OmegaConf.to_container(OmegaConf.load(path).get("hydra", {}),
                                           resolve=False)
    except Exception:  # a foreign or half-written file: a sweep we know nothing about
        return {}
    return hydra_cfg if isinstance(hydra_cfg, dict) else {}


def sweeper_kind(sweep_root) -> str | None:
    """``"basic"``, ``"optuna"``, ``"other"`` for a Hydra sweep root, None if it is none.

    An Optuna sweeper (the project's, or hydra-optuna-sweeper's) names itself in
    multirun.yaml while it runs and leaves ``optimization_results.yaml`` when it ends.
    """
    sweep_root = Path(sweep_root)
    hydra_cfg = read_sweep_config(sweep_root)
    target = str(((hydra_cfg or {}).get("sweeper") or {}).get("_target_", ""))
    if "optuna" in target.lower() or (sweep_root / OPTUNA_RESULTS).is_file():
        return "optuna"
    if hydra_cfg is None:
        return None
    return "basic" if target.endswith("BasicSweeper") else "other"


def sweep_jobs(sweep_root) -> list[list[str]] | None:
    """Every job's overrides of a basic-sweeper sweep, enumerated as Hydra's BasicSweeper
    does (sweeper params first, then command-line overrides); None if the job directories
    are not numbered or the sweep is not one of those."""
    hydra_cfg = read_sweep_config(sweep_root) or {}
    sweeper = hydra_cfg.get("sweeper") or {}
    subdir = str((hydra_cfg.get("sweep") or {}).get("subdir", "${hydra.job.num}"))
    if subdir.replace(" ", "") != "${hydra.job.num}" or sweeper_kind(sweep_root) == "optuna":
        return None
    args = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    args += list((hydra_cfg.get("overrides") or {}).get("task") or [])
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(args)
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None)
            for job in batch]


def sweep_size(sweep_root) -> int | None:
    """How many jobs a sweep runs: its basic-sweeper jobs or its Optuna trials (None if
    unknown)."""
    try:
        kind = sweeper_kind(sweep_root)
        if kind == "optuna":
            n = ((read_sweep_config(sweep_root) or {}).get("sweeper") or {}).get("n_trials")
            return int(n) if n is not None else None
        if kind != "basic":  # another sweeper's jobs are its own: "[k]"
            return None
        jobs = sweep_jobs(sweep_root)
        return len(jobs) if jobs is not None else None
    except Exception:  # a count for a progress line, never a reason to fail
        return None


# ---------------------------------------------------------------------------- reading

def is_run_dir(path) -> bool:
    path = Path(path)
    return (path / CONFIG).is_file() or (path / METRICS).is_file()


def find_runs(root) -> list[Path]:
    """Run directories at or below root: those holding .hydra/config.yaml or metrics.json,
    in natural order (2 before 10). A run directory is not searched further."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        if is_run_dir(dirpath):
            found.append(Path(dirpath))
            dirnames[:] = []
        else:
            dirnames[:] = [n for n in dirnames if not n.startswith(".")]
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def read_metrics(run_dir) -> dict:
    """metrics.json as a dict; {} if missing, {"status": "unreadable"} if half-written."""
    path = Path(run_dir) / METRICS
    for attempt in range(3):
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, OSError):
            time.sleep(0.05 * (attempt + 1))
    return {"status": "unreadable"}


def read_history(run_dir) -> list[dict]:
    """history.csv as a list of dicts of floats (epoch as int)."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row = {}
            for k, v in r.items():
                row[k] = float(v) if v not in ("", None) else None
            row["epoch"] = int(row["epoch"])
            rows.append(row)
    return rows


def read_config(run_dir):
    """The run's resolved config (OmegaConf DictConfig), or None if it has none."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    return OmegaConf.load(path)


def original_cwd(run_dir) -> Path | None:
    """The working directory of the run's first invocation (relative paths in its config,
    e.g. lang.program, are relative to it)."""
    path = Path(run_dir) / HYDRA / "hydra.yaml"
    try:
        from omegaconf import OmegaConf

        return Path(OmegaConf.load(path).hydra.runtime.cwd)
    except Exception:  # no hydra.yaml (a library run): the current directory
        return None


def _task_from(run_dir, run_cfg, ckpt: dict):
    from rasp_hydra.tasks import get_task, make_task, task_of_lang

    lang = run_cfg.get("lang") if run_cfg is not None else None
    if lang is not None and lang.get("family") is not None:
        return task_of_lang(lang, original_cwd(run_dir))
    spec = ckpt.get("task_spec")
    if spec:
        return make_task(spec["family"], spec["size"], spec["bos"], spec["with_attns"])
    return get_task(ckpt["task"])


def checkpoints(run_dir) -> dict[str, bool]:
    """Which checkpoints a run has: {"best": bool, "last": bool}."""
    return {"best": (Path(run_dir) / BEST).is_file(), "last": (Path(run_dir) / LAST).is_file()}


def checkpoint_epoch(run_dir, which: str) -> int | None:
    """The epoch a checkpoint was taken after, without loading its tensors (None if unknown)."""
    import torch

    path = Path(run_dir) / (BEST if which == "best" else LAST)
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # only used for a message
        return None


def read_original_config(run_dir) -> dict:
    """The first invocation's composition as a plain dict ({} if none)."""
    cfg = read_config(run_dir)
    if cfg is None:
        return {}
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False)


class NoModelError(Exception):
    """A run directory that gives no model to read back; the message is one paragraph."""


def open_model(run_dir, which: str, verb: str, all_hint: str):
    """``load_model`` for a command that reads one run back (``verb``: "draw", "probe"),
    every refusal a NoModelError with one paragraph: not a directory, no run in it (with
    ``all_hint``, e.g. "add --all to draw every one", when runs lie below), no checkpoint
    (a diverged run that kept none says so), a checkpoint that cannot be read or is
    another run's."""
    run_dir = Path(run_dir)
    if which not in ("auto", "best", "last"):
        raise NoModelError(f"--which must be auto, best or last, not {which!r}.")
    if not run_dir.is_dir():
        raise NoModelError(f"{run_dir} is not a directory. Give the directory of a run "
                           "(the one holding .hydra/, metrics.json and checkpoints/).")
    if not is_run_dir(run_dir):
        below = [p for p in find_runs(run_dir) if p != run_dir]
        hint = (f" It holds {len(below)} runs below it (e.g. {below[0]}): give one of them, "
                f"or {all_hint}." if below else
                " Give the directory of a run: the one holding .hydra/, metrics.json and "
                "checkpoints/ (e.g. outputs/runs/DATE/TIME or outputs/multirun/DATE/TIME/N).")
        raise NoModelError(f"{run_dir} holds no run (no .hydra/config.yaml or metrics.json)."
                           + hint)
    if not any(checkpoints(run_dir).values()):
        m = read_metrics(run_dir)
        status, reason = run_status(run_dir, m)
        if status == "diverged" and m.get("best_epoch") is None:
            raise NoModelError(f"{run_dir} has no model to {verb}: it diverged before any "
                               f"epoch ended with a finite loss ({reason}), so it kept no "
                               "checkpoint.")
        why = f": {reason}" if reason else (f": {m['error']}" if m.get("error") else "")
        raise NoModelError(f"{run_dir} holds no model to {verb}: no checkpoint (status "
                           f"{status}{why}); a run saves checkpoints/last.pt and best.pt after "
                           "its first epoch.")
    try:
        return load_model(run_dir, which)
    except (CheckpointError, FileNotFoundError) as e:  # names the file and the way out
        raise NoModelError(str(e)) from None
    except Exception as e:  # a checkpoint that does not load is the user's to know about
        raise NoModelError(f"cannot load the model of {run_dir}: {type(e).__name__}: "
                           f"{e}") from None


def load_model(run_dir, which: str = "auto", map_location="cpu"):
    """(model in eval mode, task, run_config or None, which_used) from a run directory.

    which: "best", "last", or "auto" (best if the run completed, else last if it exists,
    else best). A checkpoint that cannot be read raises CheckpointError naming it.
    """
    from rasp_hydra.model import Encoder

    run_dir = Path(run_dir)
    record = read_metrics(run_dir)
    if which == "auto":
        status = record.get("status")
        if status == "completed" or not (run_dir / LAST).is_file():
            which = "best"
        else:
            which = "last"
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best', 'last' or 'auto', got {which!r}")
    path = run_dir / (BEST if which == "best" else LAST)
    if not path.is_file():
        raise FileNotFoundError(_no_checkpoint(run_dir, which, record))
    ckpt = load_checkpoint(path, map_location)
    run_cfg = read_config(run_dir)
    task = _task_from(run_dir, run_cfg, ckpt)
    check_fits(path, ckpt, task.name, record_shape(record))
    model = Encoder.from_config_dict(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, task, run_cfg, which


def _no_checkpoint(run_dir: Path, which: str, record: dict) -> str:
    """Why a run has no `which` checkpoint, and what to use instead."""
    path = run_dir / (BEST if which == "best" else LAST)
    if record.get("status") == "diverged" and record.get("best_epoch") is None:
        return (f"{run_dir} has no model: it diverged before any epoch ended with a finite "
                f"loss ({record.get('reason')}), so it kept no checkpoint. Start a new run "
                "with a smaller optimizer.lr.")
    other = "last" if which == "best" else "best"
    if (run_dir / (LAST if other == "last" else BEST)).is_file():
        return (f"{run_dir} has no {which} checkpoint ({path} does not exist), but it has "
                f"the {other} one: use it (--which {other} when drawing, which='{other}' in "
                "load_run).")
    return (f"{path} does not exist: the run has no checkpoint (status "
            f"{record.get('status', 'unknown')}); a run saves checkpoints/last.pt and "
            "best.pt after its first epoch.")


# ---- readers for the report
# The report reads directories that may be half-written, cut short or foreign; these
# readers never raise: they return what is there, and say why when a file cannot be read.

def read_metrics_or_problem(run_dir) -> tuple[dict, str | None]:
    """(metrics, None), ({}, None) if there is no metrics.json yet, or ({}, why) if it
    cannot be read (cut mid-write by a foreign writer, or not a JSON object)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return {}, None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {}, f"unreadable {METRICS}: {e}"
    if not isinstance(metrics, dict):
        return {}, f"{METRICS} is not a JSON object"
    return metrics, None


def read_config_dict(run_dir) -> dict:
    """The run's config as plain nested dicts (interpolations unresolved); {} if it has
    none or it cannot be read."""
    try:
        from omegaconf import OmegaConf

        cfg = read_config(run_dir)
        cfg = OmegaConf.to_container(cfg, resolve=False) if cfg is not None else {}
    except Exception:  # a half-written or foreign file is "no config", not a crash
        return {}
    return cfg if isinstance(cfg, dict) else {}


def read_history_frame(run_dir):
    """history.csv as a pandas DataFrame, or None if there is none, it is empty, or it is
    being written (no ``epoch`` column yet)."""
    import pandas as pd

    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return None
    try:
        hist = pd.read_csv(path)
    except Exception:  # empty or cut short
        return None
    return hist if "epoch" in hist.columns and len(hist) else None


def lock_state(run_dir) -> str:
    """"held" if a live process holds RUN/run.lock, "free" if none does, "unknown" if this
    machine cannot tell (no lock file: a library run; a holder on another host).

    Read without taking the lock (a reader that took it could turn a starting job away):
    Linux lists every flock in /proc/locks by device and inode; elsewhere the holder's pid
    is asked whether it still lives.
    """
    path = Path(run_dir) / LOCK
    try:
        st = path.stat()
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "unknown"
    holder = holder if isinstance(holder, dict) else {}
    if holder.get("host") not in (None, socket.gethostname()):
        return "unknown"
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            return "held" if any(key in line.split() for line in f) else "free"
    except OSError:
        pass
    try:
        os.kill(int(holder["pid"]), 0)
    except (KeyError, TypeError, ValueError):
        return "unknown"
    except ProcessLookupError:
        return "free"
    except PermissionError:
        return "held"
    return "held"


def run_status(run_dir, metrics: dict | None = None,
               problem: str | None = None) -> tuple[str, str | None]:
    """(status, reason) of a run directory as a reader should count it; the one place the
    report, load_sweep, load_run and the drawer decide it.

    The record's own status, except: a `running` record that no live process holds is
    `crashed` (killed: kill -9, out of memory, a lost node), or `incomplete` when its
    last.pt is gone too; a directory whose record is gone (or was never written) and that
    no process holds is `incomplete`; an unreadable record is `unknown`. Where the lock
    cannot be read (another host, a library run without one), a `running` record stays
    `running`. A finished record stays what it says: its numbers hold without checkpoints.
    """
    run_dir = Path(run_dir)
    if metrics is None and problem is None:
        metrics, problem = read_metrics_or_problem(run_dir)
    if problem:
        return "unknown", problem
    status = str(metrics.get("status") or "") if metrics else ""
    lock = lock_state(run_dir) if status in ("", "running") else None
    if lock == "held":
        return "running", None
    if status == "running":
        if lock != "free":
            return "running", None
        if int(metrics.get("epochs_run") or 0) > 0 and not (run_dir / LAST).is_file():
            return "incomplete", (f"its record says running, but no process holds run.lock "
                                  f"and {LAST} is gone: it cannot be resumed")
        return "crashed", ("its record says running, but no process holds run.lock: the "
                           "process was killed (kill -9, out of memory, a lost node) or the "
                           "machine restarted; --resume continues it from last.pt")
    if not status:
        if lock == "free":
            return "incomplete", (f"no {METRICS}: its record is gone, or the job died before "
                                  "writing one")
        return ("running" if has_started(run_dir) else "unknown"), None
    return status, metrics.get("reason")


def has_started(run_dir) -> bool:
    """Whether training has begun: it has written its log or a history row."""
    run_dir = Path(run_dir)
    return (run_dir / HISTORY).is_file() or (run_dir / LOG).is_file()


def curves_path(run_dir) -> Path | None:
    """plots/curves.png of the run, if it has been drawn."""
    path = Path(run_dir) / CURVES
    return path if path.is_file() else None


def run_files(run_dir) -> list[Path]:
    """The files of a run a person opens (record, log, history, curves) that exist."""
    run_dir = Path(run_dir)
    return [run_dir / f for f in (METRICS, LOG, HISTORY, CURVES) if (run_dir / f).is_file()]
