"""The run's record and its history: ``metrics.json`` (the ``RunRecord`` schema),
``history.csv``, ``train.log`` and ``invocations.jsonl``, written and read back.

The report's readers here never raise: a directory may be half-written, cut short or
foreign, so they return what is there and say why a file cannot be read. This module
changes when what a run records changes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from rasp_hydra.runs.files import (
    HISTORY,
    INVOCATIONS,
    LAST,
    LOG,
    METRICS,
    TRACKER_IDS,
    _atomic_write_bytes,
    _json_safe,
    _now,
    _write_error,
    open_append,
)

# Statuses that end a run's history until it is resumed; the report counts only "completed"
FINAL_STATUSES = ("completed", "interrupted", "diverged", "failed", "skipped")
# What a reader calls a job that did not complete (see run_status); a sweep ends with exit 1
NOT_COMPLETED = ("failed", "crashed", "incomplete", "interrupted", "unknown", "unreadable")

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
    precision: str | None = None  # train.precision: fp32 | tf32 | bf16 (None: before it)
    resumes: int = 0
    # a resumed run: "exact" (bit for bit an uninterrupted run's), or "inexact" once a
    # resume changed the thread count (train.inexact_resume) or went on from best.pt
    continuation: str | None = None
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

def append_log(run_dir, line: str) -> None:
    """Append one line to train.log (the file a person tails)."""
    path = Path(run_dir) / LOG
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_append(path) as f:
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

def append_invocation(run_dir, **entry) -> None:
    """Append one line to invocations.jsonl: the run directory's append-only history."""
    line = json.dumps(_json_safe({"time": _now(), "pid": os.getpid(),
                                  "host": socket.gethostname(), **entry}))
    path = Path(run_dir) / INVOCATIONS
    try:
        with open_append(path) as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise _write_error(path, err) from None


def write_tracker_id(run_dir, tracker: str, run_id: str) -> None:
    """Record `tracker`'s run id (trackers.json) so a resume continues the same run."""
    ids = {**read_tracker_ids(run_dir), tracker: run_id}
    _atomic_write_bytes(Path(run_dir) / TRACKER_IDS, (json.dumps(ids, indent=1) + "\n").encode())


# ---------------------------------------------------------------------------- reading

def read_tracker_ids(run_dir) -> dict[str, str]:
    """trackers.json: {tracker name: its run id}; {} when missing or unreadable."""
    try:
        ids = json.loads((Path(run_dir) / TRACKER_IDS).read_text())
    except (OSError, ValueError):
        return {}
    return ids if isinstance(ids, dict) else {}

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

def has_started(run_dir) -> bool:
    """Whether training has begun: it has written its log or a history row."""
    run_dir = Path(run_dir)
    return (run_dir / HISTORY).is_file() or (run_dir / LOG).is_file()


# ---- readers for the report
# The report reads directories that may be half-written, cut short or foreign; these
# readers never raise: they return what is there, and say why when a file cannot be read.

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
