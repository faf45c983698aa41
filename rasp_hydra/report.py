"""Table 1 from sweep directories: ``python -m rasp_hydra.report SWEEP_DIR [SWEEP_DIR ...]``.

Reads every run directory below the given directories (a directory holding
``.hydra/config.yaml`` or ``metrics.json``, see the run-directory contract in DESIGN.md) and
writes, under ``multirun_reports/<sweep name>/`` (or ``--out``):

- ``runs.csv``: one row per run: canonical columns (task, arch, layers, heads, lr, gamma,
  status, test_acc, ...), then the flattened config (``model.layers``, ``optimizer.lr``, ...)
  and every metric (``final.test.token_acc``, ``attention_match.0,0``, ...);
- ``table1.md`` / ``table1.csv`` / ``table1.tex``: the paper's Table 1, one row per task;
- ``summary.csv``: the original's per-(task, layers, heads) summary;
- ``table1.png``: test accuracy per task and arch variant (grouped bars);
- ``index.html``: one self-contained page with the tables, the figure and per-run links.

The Markdown Table 1 is also printed to the terminal.

Choices, written down:

- **Which runs count.** Only runs with status ``completed`` and a final test accuracy count
  towards accuracies (best, mean, std, n) by default. ``interrupted`` runs were cut short
  (Ctrl-C, a preempted cluster job): their accuracy is that of a partly trained model, so
  they are counted and shown but left out, unless ``include_interrupted=True``
  (``--include-interrupted``). ``running``, ``failed``, ``skipped``, ``unknown`` and
  ``missing`` runs never count as accuracy 0: they only appear in the status counts.
- **Status of a directory without metrics.json**: ``running`` if training has started
  (``history.csv`` or ``train.log`` exists), else ``unknown``; an unreadable metrics.json is
  ``unknown`` with the reason. A metrics.json that says ``running`` stays ``running`` (the
  report cannot tell a live run from a killed one).
- **Deleted job directories** (``missing``): for a Hydra sweep root (it holds
  ``multirun.yaml``) run by the basic sweeper with numbered job directories, the expected
  jobs are rebuilt from the sweep's overrides the way the basic sweeper enumerates them;
  each absent number becomes a ``missing`` row carrying its overrides.
- **Arch variant** of a run: config ``arch.name`` (or metrics ``arch``) when present, else
  derived from its layers/heads against the task's RASP-predicted budget (L, H): (L, H)
  ``predicted``, (L, H-1) ``fewer_heads``, (L-1, H) ``fewer_layers``, (L-1, 2H)
  ``fewer_layers_wider``; anything else is labelled ``L{layers}H{heads}``.
- **Best run** of a variant: highest test token accuracy; ties broken by lower test loss.
  Its whole-sequence accuracy is the one reported; the attention match is that of the best
  ``predicted`` run (per head ``"layer,head"`` on the test split, and the minimum).
- **Validation accuracy at epoch 20**: ``val_token_acc`` of the ``history.csv`` row whose
  ``epoch`` is 20; a run that ended earlier (it stopped once perfect) reports its last
  epoch's value.
- Accuracies are fractions in the CSV files and percentages in the Markdown, LaTeX and HTML.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from rasp_hydra.config import ArchName
from rasp_hydra.runs import find_runs

ARCH_ORDER = tuple(a.value for a in ArchName)
FAMILY_ORDER = ("reverse", "hist", "hist2", "sort", "sort_by_freq", "dyck1_ptf", "dyck2_ptf")
STATUS_ORDER = (
    "completed", "interrupted", "running", "failed", "skipped", "unknown", "missing",
)
EPOCH_FOR_VAL = 20
UNKNOWN_TASK = "(unknown)"


class ReportError(Exception):
    """A problem with the report's input, shown to the user as one paragraph (exit code 2)."""


# --------------------------------------------------------------------------- reading runs


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}, "c": 2}`` -> ``{"a.b": 1, "c": 2}``; an empty dict leaves no key."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def _read_config(run_dir: Path) -> dict:
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # a half-written or foreign file must not stop the report
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _read_metrics(run_dir: Path) -> tuple[dict, str | None]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}, None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {}, f"unreadable metrics.json: {e}"
    if not isinstance(metrics, dict):
        return {}, "metrics.json is not a JSON object"
    return metrics, None


def _read_history(run_dir: Path) -> pd.DataFrame | None:
    path = run_dir / "history.csv"
    if not path.is_file():
        return None
    try:
        hist = pd.read_csv(path)
    except Exception:  # empty or being written
        return None
    return hist if "epoch" in hist.columns and len(hist) else None


def _val_acc_at(hist: pd.DataFrame | None, epoch: int = EPOCH_FOR_VAL) -> float:
    if hist is None or "val_token_acc" not in hist.columns:
        return math.nan
    rows = hist[hist["epoch"] == epoch]
    if len(rows):
        return float(rows["val_token_acc"].iloc[-1])
    if hist["epoch"].max() < epoch:  # ended before epoch 20: its last value
        return float(hist["val_token_acc"].iloc[-1])
    return math.nan


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


def _task_info(task: str | None, flat_cfg: dict) -> tuple[str | None, int | None, int | None]:
    """(task name, predicted layers, predicted heads) from the task registry, for runs whose
    metrics.json does not (yet) say: by name, else from the config's lang.family/size/..."""
    lang = {k[5:]: v for k, v in flat_cfg.items() if k.startswith("lang.")}
    try:
        from rasp_hydra.tasks import get_task, make_task

        t = get_task(task) if task else make_task(
            family=lang["family"], size=lang.get("size"), bos=bool(lang.get("bos")),
            with_attns=bool(lang.get("with_attns")))
        return t.name, t.predicted_layers, t.predicted_heads
    except Exception:  # registry unavailable or unknown task: name from the config's parts
        if task or not lang.get("family"):
            return task, None, None
        size = f"_{lang['size']}" if lang.get("size") is not None else ""
        name = (f"{lang['family']}{size}{'_bos' if lang.get('bos') else ''}"
                f"{'_with_attns' if lang.get('with_attns') else ''}")
        return name, None, None


def derive_arch(layers, heads, predicted_layers, predicted_heads) -> str:
    """Arch variant name from a run's layers/heads and the task's RASP budget (L, H)."""
    try:
        l, h, L, H = int(layers), int(heads), int(predicted_layers), int(predicted_heads)
    except (TypeError, ValueError):
        return f"L{layers}H{heads}" if layers is not None else "(unknown)"
    arch = ArchName.of(l, h, L, H)
    return arch.value if arch is not None else f"L{l}H{h}"


def read_run(run_dir: Path) -> dict:
    """One row of the runs table: canonical columns, flattened config, flattened metrics."""
    run_dir = Path(run_dir)
    cfg = _read_config(run_dir)
    metrics, problem = _read_metrics(run_dir)
    hist = _read_history(run_dir)

    flat_cfg = flatten(cfg)
    flat_metrics = flatten(metrics)
    row: dict = {}
    for k, v in flat_cfg.items():
        row[k if k not in flat_metrics else f"cfg.{k}"] = v
    row.update(flat_metrics)

    if metrics:
        status = str(metrics.get("status") or "unknown")
    elif problem:
        status = "unknown"
    else:
        started = hist is not None or (run_dir / "train.log").is_file()
        status = "running" if started else "unknown"

    task = _first(metrics.get("task"), flat_cfg.get("lang.name"))
    p_layers, p_heads = metrics.get("predicted_layers"), metrics.get("predicted_heads")
    if task is None or p_layers is None or p_heads is None:
        task, p_layers, p_heads = _task_info(task, flat_cfg)
    arch = _first(flat_cfg.get("arch.name"), metrics.get("arch"))
    layers = _first(metrics.get("layers"), flat_cfg.get("model.layers"))
    heads = _first(metrics.get("heads"), flat_cfg.get("model.heads"))
    d_model = _first(metrics.get("d_model"), flat_cfg.get("model.d_model"))
    if "layers" not in metrics and arch in ARCH_ORDER and p_layers and p_heads:
        # not started yet: the config's model.* is the base the arch variant rewrites
        layers, heads, width = ArchName(arch).budget(int(p_layers), int(p_heads))
        if d_model is not None:
            d_model = width * d_model
    if arch is None:
        arch = derive_arch(layers, heads, p_layers, p_heads)
    epochs_run = _first(metrics.get("epochs_run"), None if hist is None else len(hist))

    canonical = {
        "run_dir": str(run_dir.resolve()),
        "status": status,
        "reason": _first(metrics.get("reason"), problem),
        "error": metrics.get("error"),
        "task": task if task else UNKNOWN_TASK,
        "family": _first(metrics.get("family"), flat_cfg.get("lang.family")),
        "arch": str(arch),
        "layers": _num(layers),
        "heads": _num(heads),
        "d_model": _num(d_model),
        "lr": _num(_first(metrics.get("lr"), flat_cfg.get("optimizer.lr"))),
        "gamma": _num(_first(metrics.get("gamma"), flat_cfg.get("schedule.gamma"))),
        "predicted_layers": _num(p_layers),
        "predicted_heads": _num(p_heads),
        "test_acc": _num(flat_metrics.get("final.test.token_acc")),
        "test_seq_acc": _num(flat_metrics.get("final.test.seq_acc")),
        "test_loss": _num(flat_metrics.get("final.test.loss")),
        "val_acc_epoch20": _val_acc_at(hist),
        "epochs_run": _num(epochs_run),
    }
    # canonical names win; a metric of the same name stays under "metrics.<name>"
    for k in canonical:
        if k in row and k in flat_metrics:
            row[f"metrics.{k}"] = row.pop(k)
        row.pop(k, None)
    return {**canonical, **row}


def _missing_jobs(sweep_root: Path, present: Iterable[Path]) -> list[dict]:
    """Rows for the numbered job directories a basic-sweeper Hydra sweep should have.

    The expected jobs are the cartesian product of the sweep's overrides, enumerated as
    Hydra's BasicSweeper does (sweeper params first, then command-line overrides).
    """
    try:
        from omegaconf import OmegaConf

        conf = OmegaConf.load(sweep_root / "multirun.yaml")
        hydra_cfg = OmegaConf.to_container(conf.get("hydra", {}), resolve=False)
        sweeper = hydra_cfg.get("sweeper") or {}
        if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
            return []
        subdir = str((hydra_cfg.get("sweep") or {}).get("subdir", "${hydra.job.num}"))
        if subdir.replace(" ", "") != "${hydra.job.num}":
            return []
        args = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        args += list((hydra_cfg.get("overrides") or {}).get("task") or [])
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        overrides = OverridesParser.create().parse_overrides(args)
        jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    except Exception:  # not a sweep we can rebuild: no missing rows, never a crash
        return []
    have = {p.name for p in present if p.parent == sweep_root}
    rows = []
    for num, job in enumerate(jobs):
        if str(num) in have:
            continue
        values = dict(o.split("=", 1) for o in job)
        lang = _first(values.get("lang.name"), values.get("lang"), values.get("+lang"))
        rows.append({
            "run_dir": str((sweep_root / str(num)).resolve()),
            "status": "missing",
            "reason": "job directory absent; overrides: " + " ".join(job),
            "task": lang,
            "arch": _first(values.get("arch"), values.get("+arch")),
            "lr": _num(values.get("optimizer.lr")),
            "gamma": _num(values.get("schedule.gamma")),
        })
    return rows


def collect_runs(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per run directory found below ``paths`` (plus ``missing`` rows, see above).

    Raises ReportError for a path that does not exist or when no run directory is found.
    """
    roots = [Path(p) for p in paths]
    absent = [str(p) for p in roots if not p.exists()]
    if absent:
        raise ReportError(
            f"{', '.join(absent)}: no such directory. Give one or more sweep directories "
            "(for example outputs/multirun/2024-05-01/12-00-00) or run directories; every "
            "directory holding .hydra/config.yaml or metrics.json below them is read."
        )
    not_dirs = [str(p) for p in roots if not p.is_dir()]
    if not_dirs:
        raise ReportError(f"{', '.join(not_dirs)}: not a directory. Give sweep directories.")

    rows, seen = [], set()
    for root in roots:
        run_dirs = [d for d in find_runs(root) if d.resolve() not in seen]
        seen.update(d.resolve() for d in run_dirs)
        rows += [read_run(d) for d in run_dirs]
        sweep_roots = {root} | {d.parent for d in run_dirs}
        for sr in sorted(sweep_roots):
            if (sr / "multirun.yaml").is_file() and sr.resolve() not in seen:
                seen.add(sr.resolve())
                rows += _missing_jobs(sr, run_dirs)
    if not any(r["status"] != "missing" for r in rows):
        raise ReportError(
            f"no run directories found below {', '.join(str(p) for p in roots)}: a run "
            "directory holds .hydra/config.yaml or metrics.json. Is this the sweep directory "
            "Hydra printed (outputs/multirun/DATE/TIME), and has the sweep started?"
        )
    df = pd.DataFrame(rows)
    known = set(df.loc[df["status"] != "missing", "task"])
    df.loc[(df["status"] == "missing") & ~df["task"].isin(known), "task"] = UNKNOWN_TASK
    return df


# --------------------------------------------------------------------------- tables


def counted(df: pd.DataFrame, include_interrupted: bool = False) -> pd.Series:
    """Boolean mask of the runs whose accuracy counts (see the module docstring)."""
    ok = ["completed", "interrupted"] if include_interrupted else ["completed"]
    return df["status"].isin(ok) & df["test_acc"].notna()


def _task_order(df: pd.DataFrame) -> list[str]:
    fam = df.groupby("task")["family"].first() if "family" in df else pd.Series(dtype=object)

    def key(task):
        f = fam.get(task)
        f = f if isinstance(f, str) else str(task).split("_")[0]
        rank = FAMILY_ORDER.index(f) if f in FAMILY_ORDER else len(FAMILY_ORDER)
        return (task == UNKNOWN_TASK, rank, str(task))

    return sorted(df["task"].unique(), key=key)


def _arch_order(archs: Iterable[str]) -> list[str]:
    archs = [a for a in set(archs) if isinstance(a, str)]
    return [a for a in ARCH_ORDER if a in archs] + sorted(a for a in archs if a not in ARCH_ORDER)


def _best(runs: pd.DataFrame) -> pd.Series | None:
    if not len(runs):
        return None
    order = runs.assign(_loss=runs["test_loss"].fillna(math.inf))
    return order.sort_values(["test_acc", "_loss"], ascending=[False, True]).iloc[0]


def _status_counts(runs: pd.DataFrame) -> dict:
    counts = runs["status"].value_counts()
    extra = sorted(s for s in counts.index if s not in STATUS_ORDER)
    return {s: int(counts.get(s, 0)) for s in (*STATUS_ORDER, *extra)}


def table1(df: pd.DataFrame, include_interrupted: bool = False) -> pd.DataFrame:
    """The paper's Table 1: one row per task, numeric (accuracies as fractions).

    Columns: task, predicted_layers, predicted_heads; per arch variant ``<arch>.layers``,
    ``.heads``, ``.best``, ``.mean``, ``.std``, ``.n`` (runs counted), ``.seq_acc`` (of the
    best run), ``.runs`` (all runs); ``attn.<layer,head>`` and ``attn.min`` of the best
    predicted run; then ``runs`` and one count column per status.
    """
    ok = counted(df, include_interrupted)
    archs = _arch_order(df["arch"].dropna())
    attn_cols = sorted(
        (c for c in df.columns if c.startswith("attention_match.")),
        key=lambda c: [int(x) if x.isdigit() else x for x in c.split(".", 1)[1].split(",")],
    )
    rows = []
    for task in _task_order(df):
        t = df[df["task"] == task]
        row = {
            "task": task,
            "predicted_layers": t["predicted_layers"].max(),
            "predicted_heads": t["predicted_heads"].max(),
        }
        for arch in archs:
            a = t[t["arch"] == arch]
            good = a[ok.loc[a.index]]
            best = _best(good)
            acc = good["test_acc"]
            row.update({
                f"{arch}.layers": a["layers"].max(),
                f"{arch}.heads": a["heads"].max(),
                f"{arch}.best": acc.max() if len(acc) else math.nan,
                f"{arch}.mean": acc.mean() if len(acc) else math.nan,
                f"{arch}.std": acc.std(ddof=1) if len(acc) > 1 else math.nan,
                f"{arch}.n": len(acc),
                f"{arch}.seq_acc": math.nan if best is None else best["test_seq_acc"],
                f"{arch}.runs": len(a),
            })
        best_pred = _best(t[ok.loc[t.index] & (t["arch"] == "predicted")])
        heads = {}
        if best_pred is not None:
            heads = {c.split(".", 1)[1]: best_pred[c] for c in attn_cols
                     if pd.notna(best_pred[c])}
        for c in attn_cols:
            row[f"attn.{c.split('.', 1)[1]}"] = heads.get(c.split(".", 1)[1], math.nan)
        row["attn.min"] = min(heads.values()) if heads else math.nan
        row["runs"] = len(t)
        row.update(_status_counts(t))
        rows.append(row)
    out = pd.DataFrame(rows)
    # drop attention columns no task has (e.g. heads of a task absent here)
    empty = [c for c in out.columns if c.startswith("attn.") and out[c].isna().all()
             and c != "attn.min"]
    return out.drop(columns=empty)


def summary(df: pd.DataFrame, include_interrupted: bool = False) -> pd.DataFrame:
    """The original's per-(task, layers, heads) summary over the counted runs.

    Grouped by task, arch, layers, heads, d_model: best/avg/worst test loss and token
    accuracy, validation accuracy at epoch 20 (mean and best), epochs run (mean, min, max).
    """
    good = df[counted(df, include_interrupted)]
    keys = ["task", "arch", "layers", "heads", "d_model"]
    if not len(good):
        return pd.DataFrame(columns=keys + ["n"])
    g = good.groupby(keys, dropna=False, sort=False)
    out = pd.DataFrame({
        "n": g.size(),
        "test_loss_best": g["test_loss"].min(),
        "test_loss_avg": g["test_loss"].mean(),
        "test_loss_worst": g["test_loss"].max(),
        "test_acc_best": g["test_acc"].max(),
        "test_acc_avg": g["test_acc"].mean(),
        "test_acc_worst": g["test_acc"].min(),
        "val_acc_epoch20_avg": g["val_acc_epoch20"].mean(),
        "val_acc_epoch20_best": g["val_acc_epoch20"].max(),
        "epochs_run_avg": g["epochs_run"].mean(),
        "epochs_run_min": g["epochs_run"].min(),
        "epochs_run_max": g["epochs_run"].max(),
    }).reset_index()
    tasks = {t: i for i, t in enumerate(_task_order(good))}
    archs = {a: i for i, a in enumerate(_arch_order(good["arch"]))}
    out["_t"] = out["task"].map(tasks)
    out["_a"] = out["arch"].map(archs)
    return out.sort_values(["_t", "_a", "layers", "heads"]).drop(columns=["_t", "_a"]) \
        .reset_index(drop=True)


# --------------------------------------------------------------------------- display


def _pct(x, digits: int = 1) -> str:
    return "–" if pd.isna(x) else f"{100 * x:.{digits}f}"


def _int(x) -> str:
    return "?" if pd.isna(x) else str(int(x))


def _status_note(row: pd.Series | dict, prefix: str = "") -> str:
    parts = []
    for s in STATUS_ORDER[1:]:
        n = row.get(f"{prefix}{s}", 0)
        if n:
            parts.append(f"{int(n)} {s}")
    return ", ".join(parts)


def display_table1(t1: pd.DataFrame, df: pd.DataFrame,
                   include_interrupted: bool = False) -> pd.DataFrame:
    """Table 1 as strings for Markdown/LaTeX/HTML: percentages, one cell per arch variant.

    A variant cell reads ``best (mean ± std, n=k) seq s`` with the variant's layers/heads,
    plus what did not count (e.g. ``1 failed``).
    """
    archs = [c[: -len(".best")] for c in t1.columns if c.endswith(".best")]
    attn_cols = [c for c in t1.columns if c.startswith("attn.") and c != "attn.min"]
    rows = []
    for _, r in t1.iterrows():
        out = {"task": r["task"], "RASP L/H": f"{_int(r['predicted_layers'])}/"
               f"{_int(r['predicted_heads'])}"}
        t = df[df["task"] == r["task"]]
        for arch in archs:
            a = t[t["arch"] == arch]
            if not r[f"{arch}.runs"]:
                out[arch] = ""
                continue
            counts = _status_counts(a)
            lh = f"{_int(r[f'{arch}.layers'])}L{_int(r[f'{arch}.heads'])}H"
            if r[f"{arch}.n"]:
                spread = (f"{_pct(r[f'{arch}.mean'])} ± {_pct(r[f'{arch}.std'])}"
                          if r[f"{arch}.n"] > 1 else _pct(r[f"{arch}.mean"]))
                cell = (f"{lh}: **{_pct(r[f'{arch}.best'])}** ({spread}, n={r[f'{arch}.n']}) "
                        f"seq {_pct(r[f'{arch}.seq_acc'])}")
            else:
                cell = f"{lh}: –"
            not_counted = {s: n for s, n in counts.items() if n and s != "completed"}
            if include_interrupted and "interrupted" in not_counted:
                not_counted["interrupted (counted)"] = not_counted.pop("interrupted")
            if not_counted:
                cell += " [" + ", ".join(f"{n} {s}" for s, n in not_counted.items()) + "]"
            out[arch] = cell
        heads = [f"{c[5:]}: {_pct(r[c])}" for c in attn_cols if pd.notna(r[c])]
        out["attn match (best predicted)"] = (
            f"min {_pct(r['attn.min'])} ({'; '.join(heads)})" if heads else "–")
        note = _status_note(r)
        out["runs"] = f"{int(r['runs'])}" + (f" ({note})" if note else "")
        rows.append(out)
    return pd.DataFrame(rows)


def display_summary(s: pd.DataFrame) -> pd.DataFrame:
    """The per-(task, layers, heads) summary as strings (percentages)."""
    if not len(s):
        return pd.DataFrame()
    out = pd.DataFrame({
        "task": s["task"], "arch": s["arch"],
        "L": s["layers"].map(_int), "H": s["heads"].map(_int), "d_model": s["d_model"].map(_int),
        "n": s["n"],
        "test loss best/avg/worst": [
            f"{a:.4f} / {b:.4f} / {c:.4f}" for a, b, c in
            zip(s["test_loss_best"], s["test_loss_avg"], s["test_loss_worst"], strict=True)],
        "test acc best/avg/worst": [
            f"{_pct(a)} / {_pct(b)} / {_pct(c)}" for a, b, c in
            zip(s["test_acc_best"], s["test_acc_avg"], s["test_acc_worst"], strict=True)],
        f"val acc @{EPOCH_FOR_VAL} avg/best": [
            f"{_pct(a)} / {_pct(b)}" for a, b in
            zip(s["val_acc_epoch20_avg"], s["val_acc_epoch20_best"], strict=True)],
        "epochs avg (min–max)": [
            f"{a:.1f} ({_int(b)}–{_int(c)})" for a, b, c in
            zip(s["epochs_run_avg"], s["epochs_run_min"], s["epochs_run_max"], strict=True)],
    })
    return out


def not_counted_runs(df: pd.DataFrame, include_interrupted: bool = False) -> pd.DataFrame:
    """Runs that do not count towards accuracy, with why."""
    rest = df[~counted(df, include_interrupted)]
    cols = ["task", "arch", "lr", "gamma", "status", "reason", "error", "run_dir"]
    return rest[[c for c in cols if c in rest.columns]].reset_index(drop=True)


def to_markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False) if len(frame) else "(none)"


# --------------------------------------------------------------------------- output


def sweep_name(paths: Sequence[str | os.PathLike]) -> str:
    """Report folder name from the sweep dirs: ``DATE_TIME`` for outputs/multirun/DATE/TIME."""
    names = []
    for p in paths:
        p = Path(p).resolve()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.parent.name):
            names.append(f"{p.parent.name}_{p.name}")
        else:
            names.append(p.name or "root")
    return "+".join(dict.fromkeys(names))


def plot_table1(t1: pd.DataFrame, df: pd.DataFrame, path: Path,
                include_interrupted: bool = False) -> None:
    """Grouped bars: best test token accuracy per task (groups) and arch variant (bars);
    dots are the individual counted runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = [c[: -len(".best")] for c in t1.columns if c.endswith(".best")]
    tasks = list(t1["task"])
    ok = counted(df, include_interrupted)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(tasks) + 2), 4.2))
    width = 0.8 / max(1, len(archs))
    for j, arch in enumerate(archs):
        xs = [i + (j - (len(archs) - 1) / 2) * width for i in range(len(tasks))]
        heights = [100 * v if pd.notna(v) else 0.0 for v in t1[f"{arch}.best"]]
        ax.bar(xs, heights, width, label=arch, color=f"C{j}")
        for x, task in zip(xs, tasks, strict=True):
            a = df[(df["task"] == task) & (df["arch"] == arch)]
            runs = a[ok.loc[a.index]]
            if len(runs):
                ax.plot([x] * len(runs), 100 * runs["test_acc"], "k.", ms=4)
            elif len(a):  # say why there is no bar: "skipped", "running", ...
                label = "/".join(a["status"].value_counts().index)
                ax.text(x, 2, label, rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    ax.set_ylabel("test token accuracy (%)")
    ax.set_ylim(0, 119)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title("Test accuracy per task and architecture (bar: best run; dots: runs)")
    ax.legend(fontsize=8, ncols=min(4, max(1, len(archs))), loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _latex_escape(text: str) -> str:
    specials = {"\\": r"\textbackslash{}", "%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#",
                "$": r"\$", "{": r"\{", "}": r"\}"}
    return re.sub(r"[\\%_&#${}]", lambda m: specials[m.group()], text)


def _html_table(frame: pd.DataFrame) -> str:
    if not len(frame):
        return "<p>(none)</p>"
    frame = frame.copy()
    for c in frame.columns:  # Markdown bold -> HTML after escaping
        frame[c] = frame[c].map(
            lambda v: re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(str(v))))
    return frame.to_html(index=False, escape=False, border=0, classes="t")


def _runs_html(df: pd.DataFrame, out_dir: Path) -> str:
    cols = ["task", "arch", "layers", "heads", "d_model", "lr", "gamma", "status",
            "test_acc", "test_seq_acc", "epochs_run"]
    head = "".join(f"<th>{c}</th>" for c in cols + ["run"])
    body = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r.get(c)
            if c in ("test_acc", "test_seq_acc"):
                v = _pct(v, 2)
            elif pd.isna(v) if not isinstance(v, str) else False:
                v = ""
            elif c in ("layers", "heads", "d_model", "epochs_run"):
                v = _int(v)
            cells.append(f"<td>{html.escape(str(v))}</td>")
        run = Path(r["run_dir"])
        rel = os.path.relpath(run, out_dir).replace(os.sep, "/")
        links = [f'<a href="{html.escape(rel)}/">{html.escape(run.name)}</a>']
        for f in ("metrics.json", "train.log", "history.csv", "plots/curves.png"):
            if (run / f).is_file():
                links.append(f'<a href="{html.escape(rel)}/{f}">{f.split("/")[-1]}</a>')
        if r["status"] not in ("completed",) and isinstance(r.get("reason"), str):
            links.append(html.escape(r["reason"]))
        cells.append(f"<td>{' '.join(links)}</td>")
        body.append(f'<tr class="{html.escape(str(r["status"]))}">{"".join(cells)}</tr>')
    return f'<table class="t"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def write_report(df: pd.DataFrame, out_dir: str | os.PathLike, sources: Sequence[str] = (),
                 include_interrupted: bool = False) -> dict[str, Path]:
    """Write every output file into ``out_dir`` (created) and return {kind: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t1 = table1(df, include_interrupted)
    s = summary(df, include_interrupted)
    disp, disp_s = display_table1(t1, df, include_interrupted), display_summary(s)
    rest = not_counted_runs(df, include_interrupted)
    counting = "completed and interrupted" if include_interrupted else "completed"
    note = (f"Test token accuracy (%), best over the lr/gamma runs of each arch variant "
            f"({counting} runs only), with mean ± std and n; seq = whole-sequence accuracy of "
            f"the best run; attention match of the best predicted-budget run.")

    files = {k: out / v for k, v in {
        "runs_csv": "runs.csv", "table1_csv": "table1.csv", "summary_csv": "summary.csv",
        "table1_md": "table1.md", "table1_tex": "table1.tex", "figure": "table1.png",
        "html": "index.html"}.items()}
    df.to_csv(files["runs_csv"], index=False)
    t1.to_csv(files["table1_csv"], index=False)
    s.to_csv(files["summary_csv"], index=False)

    rest_md = rest.drop(columns=["run_dir"]).assign(
        run=[os.path.relpath(p, out) for p in rest["run_dir"]]).astype(object).fillna("") \
        if len(rest) else rest
    md = [f"# Table 1: {', '.join(sources) or out.name}", "", note, "", to_markdown(disp), "",
          "## Per (task, layers, heads)", "", to_markdown(disp_s), "",
          "## Runs not counted", "", to_markdown(rest_md), ""]
    files["table1_md"].write_text("\n".join(md))

    tex = disp.map(lambda v: re.sub(r"\*\*(.+?)\*\*", r"\1", str(v)))
    files["table1_tex"].write_text(
        tex.to_latex(index=False, escape=True, caption=_latex_escape(note),
                     label="tab:table1").replace("±", "$\\pm$"))

    plot_table1(t1, df, files["figure"], include_interrupted)
    png = base64.b64encode(files["figure"].read_bytes()).decode()
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Table 1: {html.escape(out.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table.t{{border-collapse:collapse;font-size:90%}}
table.t td,table.t th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}
tr.failed,tr.missing{{background:#fdd}} tr.running,tr.unknown{{background:#ffd}}
tr.skipped,tr.interrupted{{background:#eee}}</style></head><body>
<h1>Table 1</h1><p>Sweeps: {html.escape(', '.join(sources))}</p>
<p>{html.escape(note)}</p>
{_html_table(disp)}
<p><img alt="test accuracy per task and arch" src="data:image/png;base64,{png}"></p>
<h2>Per (task, layers, heads)</h2>{_html_table(disp_s)}
<h2>Runs ({len(df)})</h2>{_runs_html(df, out)}
</body></html>
"""
    files["html"].write_text(page)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rasp_hydra.report",
        description="Build Table 1 (and a per-run table, figure and HTML page) from sweep "
                    "directories.")
    parser.add_argument("paths", nargs="+", metavar="SWEEP_DIR",
                        help="sweep or run directories, searched recursively")
    parser.add_argument("--out", help="report folder (default multirun_reports/<sweep name>)")
    parser.add_argument("--include-interrupted", action="store_true",
                        help="count interrupted runs (with a final test accuracy) too")
    args = parser.parse_args(argv)
    try:
        df = collect_runs(args.paths)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("multirun_reports") / sweep_name(args.paths)
    files = write_report(df, out, sources=[str(p) for p in args.paths],
                         include_interrupted=args.include_interrupted)
    t1 = table1(df, args.include_interrupted)
    print(to_markdown(display_table1(t1, df, args.include_interrupted)))
    counts = _status_counts(df)
    print("\nruns: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    print(f"report: {files['html']} (and table1.md/.csv/.tex, runs.csv, summary.csv, "
          f"table1.png in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
