"""Checkpoints: saved atomically, read with ``weights_only=True``, and checked against
the run they lie in. A checkpoint that cannot be read, or is another run's, is a
``CheckpointError``: one paragraph that names the file and the way out. This module changes
when what a checkpoint holds changes.
"""

from __future__ import annotations

import io
from pathlib import Path

from rasp_hydra.errors import BrokenFile
from rasp_hydra.runs.files import BEST, LAST, _atomic_write_bytes


def save_checkpoint(path, obj: dict) -> None:
    """torch.save to a temporary file, then os.replace: readers never see half a file."""
    import torch

    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write_bytes(path, buf.getvalue())

class CheckpointError(BrokenFile):
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

def best_problem(run_dir, want: int, pending: bool, task: str | None,
                 shape: dict) -> str | None:
    """Why checkpoints/best.pt cannot be the model of best epoch `want` that a resume
    reloads (a reset) and evaluates at the end, as one paragraph; None if it can.

    It must hold epoch `want` and fit the run (`task`, `shape` as in ``check_fits``), except
    where the resume writes it itself (`pending`): a kill between last.pt and best.pt of the
    epoch `want` whose record does not name it yet; last.pt then holds the same weights, so
    an older best.pt, or none, is that epoch's write left undone.
    """
    if want <= 0:
        return None
    path = Path(run_dir) / BEST
    have = None
    if path.is_file():
        try:
            ckpt = check_fits(path, load_checkpoint(path), task, shape)
        except CheckpointError as err:
            return str(err)
        have = int(ckpt["epoch"])
    if have == want or (pending and (have is None or have < want)):
        return None
    what = "does not exist" if have is None else f"holds epoch {have}"
    return (f"{path} {what}, but the run's best epoch is {want} (its last.pt and record say "
            "so): a resume would reload or evaluate other weights as that epoch's and write "
            "the run's numbers from them, so nothing was written. Put the run's own best.pt "
            "back, or start a new run; the record keeps its numbers, and the drawer reads "
            "last.pt with --which last.")

def record_shape(record: dict) -> dict:
    """The model shape a run's record (metrics.json) describes."""
    return {k: record.get(k) for k in SHAPE_KEYS}

def config_shape(run_cfg: dict, task) -> dict:
    """The model shape (layers, heads, d_model, ff) the run's own config (its saved YAML as
    plain dicts: what it says, not the defaults) builds for `task`, its arch variant
    included; {} where the config does not say (none, or foreign)."""
    from rasp_hydra.config import ArchConfig, ModelConfig, resolve_model

    try:
        model = run_cfg.get("model") or {}
        given = {k: model.get(k) for k in SHAPE_KEYS if model.get(k) is not None}
        arch = run_cfg.get("arch")
        arch = ArchConfig(name=arch.get("name")) if arch else None
        shape = resolve_model(ModelConfig(**given), arch,
                              (task.predicted_layers, task.predicted_heads), 1)
    except Exception:  # a config of another shape says nothing we can compare
        return {}
    said = set(given) | ({"layers", "heads"} if arch else set()) \
        | ({"ff"} if "d_model" in given else set())  # ff: null is 2 * d_model
    return {k: getattr(shape, k) for k in SHAPE_KEYS if k in said}

def checkpoints(run_dir) -> dict[str, bool]:
    """Which checkpoints a run has: {"best": bool, "last": bool}."""
    return {"best": (Path(run_dir) / BEST).is_file(), "last": (Path(run_dir) / LAST).is_file()}

def checkpoint_threads(run_dir) -> int | None:
    """The torch thread count last.pt's state was trained on, without loading its tensors
    (None: unknown, e.g. a checkpoint written before it was recorded)."""
    import torch

    try:
        threads = torch.load(Path(run_dir) / LAST, map_location="cpu", weights_only=True,
                             mmap=True).get("num_threads")
    except Exception:  # a broken last.pt is resume_problem's to name
        return None
    return threads if isinstance(threads, int) and not isinstance(threads, bool) else None


def checkpoint_epoch(run_dir, which: str) -> int | None:
    """The epoch a checkpoint was taken after, without loading its tensors (None if unknown)."""
    import torch

    path = Path(run_dir) / (BEST if which == "best" else LAST)
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # only used for a message
        return None
