"""Find run directories and read each into one row of the runs DataFrame.

Every file inside a run directory is read through ``rasp_hydra.runs``. This module knows
the files Hydra writes at a sweep's root (``multirun.yaml``: which sweeper ran, and with
which overrides; for the Optuna sweeper ``optimization_results.yaml``), through ``runs``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from rasp_hydra import runs
from rasp_hydra.config import ArchConfig, ArchName, ModelConfig, long_test_lengths, resolve_model
from rasp_hydra.errors import BrokenFile, UserError

EPOCH_FOR_VAL = 20
UNKNOWN_TASK = "(unknown)"
ARCH_ORDER = tuple(a.value for a in ArchName)


class ReportError(UserError):
    """A problem with the report's input, shown to the user as one paragraph (exit code 2)."""


# --------------------------------------------------------------------------- small helpers


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _first(*values):
    for v in values:
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            return v
    return None


def _val_acc_at(hist: pd.DataFrame | None, epoch: int = EPOCH_FOR_VAL) -> float:
    if hist is None or "val_token_acc" not in hist.columns:
        return math.nan
    rows = hist[hist["epoch"] == epoch]
    if len(rows):
        return float(rows["val_token_acc"].iloc[-1])
    if hist["epoch"].max() < epoch:  # ended before epoch 20: its last value
        return float(hist["val_token_acc"].iloc[-1])
    return math.nan


# --------------------------------------------------------------------------- one run


def _task_info(task: str | None, flat_cfg: dict) -> tuple[str | None, int | None, int | None]:
    """(task name, predicted layers, predicted heads) from the task registry, for runs whose
    metrics do not (yet) say: by name, else from the config's lang.family/size/bos/..."""
    lang = {k[5:]: v for k, v in flat_cfg.items() if k.startswith("lang.")}
    try:
        from rasp_hydra.tasks import get_task, task_of_lang

        t = get_task(task) if task else task_of_lang(lang)
        return t.name, t.predicted_layers, t.predicted_heads
    except Exception:  # registry unavailable or unknown task: name from the config's parts
        if task or not lang.get("family"):
            return task, None, None
        from rasp_hydra.tasks import task_name

        size = f"_{lang['size']}" if lang.get("size") is not None else ""
        name = task_name(f"{lang['family']}{size}", bool(lang.get("bos")),
                         bool(lang.get("with_attns")))
        return name, None, None


def derive_arch(layers, heads, predicted_layers, predicted_heads) -> str:
    """Arch variant name from a run's layers/heads and the task's RASP budget (L, H).

    >>> derive_arch(1, 2, 2, 1), derive_arch(3, 1, 2, 1)
    ('fewer_layers_wider', 'L3H1')
    """
    try:
        l, h, L, H = int(layers), int(heads), int(predicted_layers), int(predicted_heads)
    except (TypeError, ValueError):
        return f"L{layers}H{heads}" if layers is not None else "(unknown)"
    arch = ArchName.of(l, h, L, H)
    return arch.value if arch is not None else f"L{l}H{h}"


def _lengths(flat_cfg: dict) -> dict:
    """The training lengths and, for a run with a longer test split, its lengths (both
    without BOS), from the config."""
    lo, hi = flat_cfg.get("lang.min_len"), flat_cfg.get("lang.max_len")
    out = {"lengths": f"{lo}–{hi}" if lo is not None and hi is not None else None,
           "long_lengths": None}
    if hi is not None and (flat_cfg.get("lang.long_test_size") or 0) > 0:
        long_lo, long_hi = long_test_lengths(int(hi), flat_cfg.get("lang.long_min_len"),
                                             flat_cfg.get("lang.long_max_len"))
        out["long_lengths"] = f"{long_lo}–{long_hi}"
    return out


def _model_of(metrics: dict, flat_cfg: dict) -> dict:
    """Task, its RASP budget, arch variant and model shape, from the metrics when the run
    wrote them, else from the config and the task registry."""
    task = metrics.get("task")
    p_layers, p_heads = metrics.get("predicted_layers"), metrics.get("predicted_heads")
    if task is None or p_layers is None or p_heads is None:
        task, p_layers, p_heads = _task_info(task, flat_cfg)
    arch = _first(flat_cfg.get("arch.name"), metrics.get("arch"))
    layers = _first(metrics.get("layers"), flat_cfg.get("model.layers"))
    heads = _first(metrics.get("heads"), flat_cfg.get("model.heads"))
    d_model = _first(metrics.get("d_model"), flat_cfg.get("model.d_model"))
    if ("layers" not in metrics and arch in ARCH_ORDER and p_layers is not None
            and p_heads is not None):  # (0, 0: a program without aggregate)
        # not started yet: the config's model.* is the base the arch variant rewrites, by
        # the job's own rule (max_len is no column of the report: any longest will do)
        shape = resolve_model(ModelConfig(d_model=int(d_model or 1)), ArchConfig(ArchName(arch)),
                              (int(p_layers), int(p_heads)), longest=0)
        layers, heads = shape.layers, shape.heads
        d_model = None if d_model is None else shape.d_model
    if arch is None:
        arch = derive_arch(layers, heads, p_layers, p_heads)
    return {"task": task if task else UNKNOWN_TASK,
            "family": _first(metrics.get("family"), flat_cfg.get("lang.family")),
            "arch": str(arch), "layers": _num(layers), "heads": _num(heads),
            "d_model": _num(d_model), "predicted_layers": _num(p_layers),
            "predicted_heads": _num(p_heads)}


def _read(reader, instead, problems: list):
    """What `reader` returns, or `instead` with the broken file's reason noted."""
    try:
        return reader()
    except BrokenFile as err:
        problems.append(err.reason)
        return instead


def read_run(run_dir: str | os.PathLike) -> dict:
    """One row of the runs table: canonical columns, flattened config, flattened metrics."""
    rd = runs.RunDir(run_dir)
    problems = []  # a broken file makes the run `unreadable`; the others are still read
    metrics = _read(rd.read_record, {}, problems)
    hist = _read(rd.history_frame, None, problems)
    flat_cfg = runs.flatten(_read(rd.config_dict, {}, problems))
    problem = "; ".join(problems) or None
    flat_metrics = runs.flatten(metrics)
    row = {k if k not in flat_metrics else f"cfg.{k}": v for k, v in flat_cfg.items()}
    row.update(flat_metrics)
    if row.get("trial") is None:  # only a trial of an Optuna search has a number
        row.pop("trial", None)

    model = _model_of(metrics, flat_cfg)
    status, reason = rd.status(metrics, problem)
    canonical = {
        "run_dir": str(rd.path.resolve()),
        "status": status,
        "reason": reason,
        "error": metrics.get("error"),
        **{k: model[k] for k in ("task", "family", "arch", "layers", "heads", "d_model")},
        "lr": _num(_first(metrics.get("lr"), flat_cfg.get("optimizer.lr"))),
        "gamma": _num(_first(metrics.get("gamma"), flat_cfg.get("schedule.gamma"))),
        "predicted_layers": model["predicted_layers"],
        "predicted_heads": model["predicted_heads"],
        "test_acc": _num(flat_metrics.get("final.test.token_acc")),
        "test_seq_acc": _num(flat_metrics.get("final.test.seq_acc")),
        "test_loss": _num(flat_metrics.get("final.test.loss")),
        # the replicate a run belongs to, and what chooses among a replicate's runs
        "seed": _num(_first(metrics.get("seed"), flat_cfg.get("train.seed"))),
        "valid_acc": _num(flat_metrics.get("final.valid.token_acc")),
        "valid_loss": _num(flat_metrics.get("final.valid.loss")),
        # length generalization: the "test_long" split, when the run has one
        "test_long_acc": _num(flat_metrics.get("final.test_long.token_acc")),
        "test_long_seq_acc": _num(flat_metrics.get("final.test_long.seq_acc")),
        **_lengths(flat_cfg),
        "val_acc_epoch20": _val_acc_at(hist),
        "epochs_run": _num(_first(metrics.get("epochs_run"),
                                  None if hist is None else len(hist))),
    }
    # canonical names win; a metric of the same name stays under "metrics.<name>"
    for k in canonical:
        if k in row and k in flat_metrics:
            row[f"metrics.{k}"] = row.pop(k)
        row.pop(k, None)
    return {**canonical, **row}


# --------------------------------------------------------------------------- sweep roots


def _missing_jobs(sweep_root: Path, present: Iterable[Path]) -> list[dict]:
    """Rows for the numbered job directories a basic-sweeper sweep should have but lacks."""
    try:
        jobs = runs.sweep_jobs(sweep_root)
    except Exception:  # not a sweep we can rebuild: no missing rows, never a crash
        return []
    have = {p.name for p in present if p.parent == sweep_root}
    rows = []
    for num, job in enumerate(jobs or []):
        if str(num) in have:
            continue
        values = dict(o.split("=", 1) for o in job)
        rows.append({
            "run_dir": str((sweep_root / str(num)).resolve()),
            "status": "missing",
            "reason": "job directory absent; overrides: " + " ".join(job),
            # a lang option may sit in a folder of the group (lang=quick/dyck1_ptf)
            "task": str(_first(values.get("lang"), values.get("+lang"), "")).rsplit("/", 1)[-1]
            or None,
            "arch": _first(values.get("arch"), values.get("+arch")),
            "lr": _num(values.get("optimizer.lr")),
            "gamma": _num(values.get("schedule.gamma")),
        })
    return rows


def _with_trial(row: dict, run_dir: Path) -> dict:
    """An Optuna trial's row gains ``trial``: Optuna's trial number, from metrics.json (a
    continued study numbers on from before); a run that recorded none (written by
    hydra-optuna-sweeper) has its job number, which is that for a study the sweep began."""
    trial = row.pop("trial", None)
    if trial is None or (isinstance(trial, float) and math.isnan(trial)):
        trial = int(run_dir.name) if run_dir.name.isdigit() else math.nan
    return {"run_dir": row["run_dir"], "status": row["status"], "trial": trial, **row}


# --------------------------------------------------------------------------- all runs


def _check_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    roots = [Path(p) for p in paths]
    absent = [str(p) for p in roots if not p.exists()]
    if absent:
        raise ReportError(
            f"{', '.join(absent)}: no such directory. Give one or more sweep directories "
            "(for example outputs/multirun/2024-05-01/12-00-00) or run directories; every "
            f"directory holding {runs.RUN_MARKS} below them is read."
        )
    not_dirs = [str(p) for p in roots if not p.is_dir()]
    if not_dirs:
        raise ReportError(f"{', '.join(not_dirs)}: not a directory. Give sweep directories.")
    return roots


def _read_or_name(run_dir: Path) -> dict:
    """read_run, or an `unreadable` row: the report never stops at one foreign directory
    (a value the readers accept that a column cannot take, e.g. a text where a size goes)."""
    try:
        return read_run(run_dir)
    except Exception as err:
        return {"run_dir": str(run_dir.resolve()), "status": "unreadable",
                "reason": f"unreadable run: {type(err).__name__}: {err}",
                "task": UNKNOWN_TASK, "arch": "(unknown)"}


def _rows_below(root: Path, seen: set[Path]) -> list[dict]:
    """The rows of the runs below root not seen yet, and of its basic sweeps' missing jobs."""
    run_dirs = [d for d in runs.find_runs(root) if d.resolve() not in seen]
    seen.update(d.resolve() for d in run_dirs)
    kinds = {sr: runs.sweeper_kind(sr) for sr in sorted({root} | {d.parent for d in run_dirs})}
    rows = [_with_trial(_read_or_name(d), d) if kinds.get(d.parent) == "optuna"
            else _read_or_name(d) for d in run_dirs]
    for sr, kind in kinds.items():
        # only the basic sweeper's jobs can be rebuilt; an Optuna study's trials are
        # whatever the sampler asked for, so nothing is ever "missing" there
        if kind == "basic" and sr.resolve() not in seen:
            seen.add(sr.resolve())
            rows += _missing_jobs(sr, run_dirs)
    return rows


def _fill_missing_tasks(df: pd.DataFrame) -> pd.DataFrame:
    """A missing job's task is its lang override when a present run has that task (else
    unknown); its family comes from the present runs."""
    missing = df["status"] == "missing"
    if not missing.any():
        return df
    present = df[~missing]
    known = set(present["task"])
    df.loc[missing & ~df["task"].isin(known), "task"] = UNKNOWN_TASK
    family = present.dropna(subset=["family"]).groupby("task")["family"].first()
    df.loc[missing, "family"] = df.loc[missing, "task"].map(family)
    # and its shape from the arch variant and the task's budget, as a present run has it
    for col in ("predicted_layers", "predicted_heads"):
        df.loc[missing, col] = df.loc[missing, "task"].map(present.groupby("task")[col].max())
    for i in df.index[missing]:
        r = df.loc[i]
        if r["arch"] in ARCH_ORDER and pd.notna(r["predicted_layers"]):
            layers, heads, _ = ArchName(r["arch"]).budget(int(r["predicted_layers"]),
                                                          int(r["predicted_heads"]))
            df.loc[i, ["layers", "heads"]] = [layers, heads]
    return df


def collect_runs(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per run directory found below ``paths`` (plus ``missing`` rows of a basic
    sweep, see the package docstring).

    Raises ReportError for a path that does not exist or when no run directory is found.
    """
    roots = _check_paths(paths)
    rows: list[dict] = []
    seen: set[Path] = set()
    for root in roots:
        rows += _rows_below(root, seen)
    if not any(r["status"] != "missing" for r in rows):
        raise ReportError(
            f"no run directories found below {', '.join(str(p) for p in roots)}: a run "
            f"directory holds {runs.RUN_MARKS}. Is this the sweep directory "
            "Hydra printed (outputs/multirun/DATE/TIME), and has the sweep started?"
        )
    return _fill_missing_tasks(pd.DataFrame(rows))


def load_sweep(path: str | os.PathLike | Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The report's per-run DataFrame of a sweep (or of several): one row per run, the
    columns of the report's ``runs.csv``.

    Canonical columns first (``run_dir``, ``status``, ``task``, ``arch``, ``layers``,
    ``heads``, ``lr``, ``gamma``, ``test_acc``, ``val_acc_epoch20``, ...; ``trial`` for an
    Optuna sweep), then the flattened config (``model.d_model``, ``optimizer.lr``, ...) and
    every metric (``final.valid.token_acc``, ``attention_match.0,0``, ...)::

        >>> from rasp_hydra.report import load_sweep
        >>> df = load_sweep("outputs/multirun/2026-11-28/10-00-00-123456")  # doctest: +SKIP
        >>> df[df.status == "completed"].groupby(["task", "arch"]).test_acc.max()  # doctest: +SKIP

    Raises ReportError when the path does not exist or holds no run directory.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return collect_runs(paths)
