"""Everything that reads or writes a run directory (see DESIGN.md, "Run directory contract").

A run directory holds:

    .hydra/config.yaml      the resolved config (written by Hydra, read here)
    train.log               one line per epoch, then the final accuracies
    history.csv             one row per epoch, all metrics
    metrics.json            the run's record; status running|completed|interrupted|failed|skipped
    checkpoints/best.pt     best validation loss;  checkpoints/last.pt: everything to resume
    plots/curves.png        loss and accuracy curves

Every file that a reader may see half-written (metrics.json, history.csv, checkpoints) is
written to a temporary file and moved into place with ``os.replace``. Checkpoints hold only
tensors and primitives, so ``torch.load(path, weights_only=True)`` reads them.
Nothing here knows about Hydra beyond reading ``.hydra/config.yaml`` with OmegaConf.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from pathlib import Path

METRICS = "metrics.json"
HISTORY = "history.csv"
LOG = "train.log"
CONFIG = Path(".hydra") / "config.yaml"
BEST = Path("checkpoints") / "best.pt"
LAST = Path("checkpoints") / "last.pt"
CURVES = Path("plots") / "curves.png"

HISTORY_COLUMNS = [
    "epoch", "lr", "seconds", "train_loss", "train_token_acc", "train_attn_loss",
    "val_loss", "val_token_acc", "val_seq_acc",
]  # then val_attn_loss (supervised runs) and attn_match_L,H for every measured head


def head_key(head) -> str:
    """(layer, head) -> "layer,head", the key used in metrics.json and history.csv."""
    return f"{head[0]},{head[1]}"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None  # strict JSON has no NaN/inf
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


# ---------------------------------------------------------------------------- writing

def write_metrics(run_dir, metrics: dict) -> None:
    """Write metrics.json atomically."""
    text = json.dumps(_json_safe(metrics), indent=2, allow_nan=False)
    _atomic_write_bytes(Path(run_dir) / METRICS, (text + "\n").encode())


def write_skipped(run_dir, reason: str, **fields) -> dict:
    """Record a run that ends at once (e.g. an arch variant with zero layers or heads)."""
    metrics = {"status": "skipped", "reason": reason, "error": None, **fields,
               "final": {}, "attention_match": {}}
    write_metrics(run_dir, metrics)
    return metrics


def append_log(run_dir, line: str) -> None:
    """Append one line to train.log (the file a person tails)."""
    path = Path(run_dir) / LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(line.rstrip("\n") + "\n")


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


def load_checkpoint(path, map_location="cpu") -> dict:
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    ep = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    try:
        for key, label in (("train_loss", "train"), ("val_loss", "valid")):
            ys = [max(float(r[key]), 1e-12) for r in rows]
            ax1.plot(ep, ys, label=label)
        ax1.set_yscale("log")
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("loss")
        ax1.legend()
        for key, label in (("train_token_acc", "train token"), ("val_token_acc", "valid token"),
                           ("val_seq_acc", "valid sequence")):
            ax2.plot(ep, [r[key] for r in rows], label=label)
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
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path


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


def _task_from(run_cfg, ckpt: dict):
    from rasp_hydra.tasks import get_task, make_task

    lang = run_cfg.get("lang") if run_cfg is not None else None
    if lang is not None and lang.get("family") is not None:
        return make_task(lang.family, lang.size, bool(lang.bos), bool(lang.with_attns))
    spec = ckpt.get("task_spec")
    if spec:
        return make_task(spec["family"], spec["size"], spec["bos"], spec["with_attns"])
    return get_task(ckpt["task"])


def load_model(run_dir, which: str = "auto", map_location="cpu"):
    """(model in eval mode, task, run_config or None, which_used) from a run directory.

    which: "best", "last", or "auto" (best if the run completed, else last if it exists,
    else best).
    """
    from rasp_hydra.model import Encoder, ModelConfig

    run_dir = Path(run_dir)
    if which == "auto":
        status = read_metrics(run_dir).get("status")
        if status == "completed" or not (run_dir / LAST).is_file():
            which = "best"
        else:
            which = "last"
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best', 'last' or 'auto', got {which!r}")
    path = run_dir / (BEST if which == "best" else LAST)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run has no {which} checkpoint yet")
    ckpt = load_checkpoint(path, map_location)
    model = Encoder(ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    run_cfg = read_config(run_dir)
    return model, _task_from(run_cfg, ckpt), run_cfg, which


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
