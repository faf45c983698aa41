"""One strict reader per file of a run directory: each returns the file's content, checked
to be what it should be (types and shape), or raises ``BrokenFile`` naming the file and
what is wrong with it. A file that is absent is not broken (each says what it returns
then). The report shows a broken file as status ``unreadable`` with that reason; load_run,
the drawer, the probes and --resume stop with its paragraph (exit code 2). This module
changes when what a valid file of a run directory is changes.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from rasp_hydra.errors import BrokenFile
from rasp_hydra.runs.files import CONFIG, HISTORY, METRICS, OVERRIDES
from rasp_hydra.runs.record import FINAL_STATUSES

# "compiled": a model built from a RASP program by rasp/weights.py, never trained
STATUSES = ("running", *FINAL_STATUSES, "compiled")
_INTS = ("epochs_run", "best_epoch", "diverged_epoch", "resumes", "trial", "layers", "heads",
         "d_model", "ff", "batch_size", "seed", "predicted_layers", "predicted_heads",
         "params", "num_threads")
_NUMBERS = ("wall_seconds", "tokens_per_second", "lr", "gamma", "dropout", "attn_loss_c")
_TEXTS = ("reason", "error", "task", "family", "arch", "positions", "optimizer", "schedule",
          "device", "checkpoint", "continuation")
_GROUPS = ("lang", "model", "arch", "optimizer", "schedule", "train", "logger")


def broken(run_dir, name, what: str, way: str | None = None) -> BrokenFile:
    """The error for `name` (relative to `run_dir`) that cannot be read because `what`."""
    path = Path(run_dir) / name
    way = way or ("Restore it from a copy, or move it aside (the run's other files are "
                  "still read)")
    return BrokenFile(f"{path} cannot be read: {what}. Nothing was changed. {way}.",
                      str(name), what)


def _text(run_dir, name) -> str | None:
    """The file's text (None if absent); BrokenFile if it is not UTF-8 text."""
    path = Path(run_dir) / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise broken(run_dir, name, f"{err.strerror or err}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise broken(run_dir, name, f"it is not text (binary bytes at byte {err.start})") \
            from None


# ---------------------------------------------------------------------------- metrics.json

def read_record(run_dir) -> dict:
    """metrics.json as a dict of checked types; {} if there is none; BrokenFile if it is
    cut short, not a JSON object, or holds a value of the wrong type."""
    text = _text(run_dir, METRICS)
    if text is None:
        return {}
    try:
        record = json.loads(text)
    except ValueError as err:
        what = ("it is empty" if not text.strip() else
                f"it is not valid JSON, e.g. cut short ({err})")
        raise broken(run_dir, METRICS, what) from None
    if not isinstance(record, dict):
        raise broken(run_dir, METRICS, f"it is not a JSON object but a {_kind(record)}")
    problem = _record_problem(record)
    if problem:
        raise broken(run_dir, METRICS, problem)
    return record

def _kind(x) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(x), type(x).__name__)

def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)

def _record_problem(r: dict) -> str | None:
    if r.get("status") not in STATUSES:
        return f"status is {json.dumps(r.get('status'))}, not one of {', '.join(STATUSES)}"
    for key in _INTS:
        v = r.get(key)
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool)):
            return f"{key} is {json.dumps(v)}, not a whole number"
    for key in _NUMBERS:
        v = r.get(key)
        if v is not None and not _is_number(v):
            return f"{key} is {json.dumps(v)}, not a number"
    for key in _TEXTS:
        v = r.get(key)
        if v is not None and not isinstance(v, str):
            return f"{key} is {json.dumps(v)}, not text"
    final = r.get("final", {})
    if not isinstance(final, dict):
        return f"final is a {_kind(final)}, not an object of splits"
    for split, values in final.items():
        if not isinstance(values, dict) or not all(
                v is None or _is_number(v) for v in values.values()):
            return f"final.{split} is {json.dumps(values)[:80]}, not an object of numbers"
    for key in ("attention_match", "attention_uniform", "overlap_with_train"):
        v = r.get(key)
        if v is not None and not isinstance(v, dict):
            return f"{key} is a {_kind(v)}, not an object"
    if key := next((k for k in ("attention_match", "attention_uniform")
                    if not all(x is None or _is_number(x) for x in (r.get(k) or {}).values())),
                   None):
        return f"{key} holds a value that is not a number"
    return None


# ---------------------------------------------------------------------------- history.csv

def read_history_rows(run_dir) -> list[dict]:
    """history.csv as rows of floats (epoch an int); [] if there is none or it has no row
    yet; BrokenFile for binary bytes, a row that is not numbers, or no epoch column."""
    text = _text(run_dir, HISTORY)
    if text is None:
        return []
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise broken(run_dir, HISTORY, f"it is not CSV ({err})") from None
    if len(rows) < 2:
        return []  # empty, or a header caught mid-write: no epoch yet
    header, out = rows[0], []
    if "epoch" not in header:
        raise broken(run_dir, HISTORY, f"its header has no epoch column ({','.join(header)})")
    for n, values in enumerate(rows[1:], start=2):
        if len(values) != len(header):
            raise broken(run_dir, HISTORY, f"line {n} has {len(values)} fields where the "
                         f"header has {len(header)}")
        try:
            row = {k: (float(v) if v != "" else None) for k, v in zip(header, values,
                                                                      strict=True)}
        except ValueError:
            bad = next(v for v in values if v != "" and not _parses(v))
            raise broken(run_dir, HISTORY, f"line {n} holds {bad[:40]!r}, not a number") \
                from None
        epoch = row["epoch"]
        if epoch is None or not math.isfinite(epoch) or epoch != int(epoch) or epoch < 1:
            raise broken(run_dir, HISTORY, f"line {n} has epoch {values[header.index('epoch')]!r}, "
                         "not a whole number from 1")
        row["epoch"] = int(epoch)
        out.append(row)
    return out

def _parses(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------- .hydra/

def read_run_config(run_dir):
    """.hydra/config.yaml as the typed ``config.Config`` (read as plain YAML, every
    interpolation resolved, a key it lacks at its default); None if there is none;
    BrokenFile if it does not parse, is not a mapping of config groups, holds an
    interpolation that does not resolve or a value its type does not allow."""
    text = _text(run_dir, CONFIG)
    if text is None:
        return None
    import yaml

    from rasp_hydra.config import Config, from_dict
    from rasp_hydra.runs.configs import parse_yaml, resolve_interpolations

    try:
        cfg = parse_yaml(text) if text.strip() else None
    except yaml.YAMLError as err:  # a file that does not parse
        raise broken(run_dir, CONFIG, f"it is not valid YAML ({_first_line(err)})") from None
    if not isinstance(cfg, dict):
        raise broken(run_dir, CONFIG, "it is " + (
            "empty" if cfg is None else "a list, not a mapping of config groups"
            if isinstance(cfg, list) else "not a mapping of config groups"))
    for group in _GROUPS:
        if group in cfg and not isinstance(cfg.get(group), (dict, type(None))):
            raise broken(run_dir, CONFIG, f"{group} is {cfg.get(group)!r}, not a mapping")
    try:
        cfg = resolve_interpolations(cfg)
    except ValueError as err:
        raise broken(run_dir, CONFIG, f"an interpolation cannot be resolved "
                     f"({_first_line(err)})") from None
    try:
        return from_dict(Config, cfg)
    except (ValueError, TypeError) as err:
        raise broken(run_dir, CONFIG, _first_line(err)) from None

def read_overrides(run_dir) -> list[str] | None:
    """.hydra/overrides.yaml as a list of override strings; None if there is none;
    BrokenFile if it is not a YAML list of strings."""
    text = _text(run_dir, OVERRIDES)
    if text is None:
        return None
    import yaml

    try:
        overrides = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise broken(run_dir, OVERRIDES, f"it is not valid YAML ({_first_line(err)})") \
            from None
    overrides = [] if overrides is None else overrides
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise broken(run_dir, OVERRIDES, "it is not a list of overrides (key=value lines)")
    return overrides

def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
