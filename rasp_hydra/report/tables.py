"""Tables from the runs DataFrame: pure functions, DataFrame in, DataFrame out.

Accuracies stay fractions here; turning them into percentages and text is ``render``'s job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from rasp_hydra.report.collect import ARCH_ORDER, UNKNOWN_TASK

STATUS_ORDER = (
    "completed", "interrupted", "running", "crashed", "incomplete", "diverged", "failed",
    "skipped", "unknown", "missing",
)


def counted(df: pd.DataFrame, include_interrupted: bool = False) -> pd.Series:
    """Boolean mask of the runs whose accuracy counts (see the package docstring)."""
    ok = ["completed", "interrupted"] if include_interrupted else ["completed"]
    return df["status"].isin(ok) & df["test_acc"].notna()


def family_order() -> list[str]:
    """Task families in the order the task registry registers them (the paper's order)."""
    from rasp_hydra.tasks.registry import FAMILIES

    return list(FAMILIES)


def task_order(df: pd.DataFrame) -> list[str]:
    """The tasks of ``df`` by family in registry order (unregistered families after them),
    then by name; the unknown task last."""
    order = {f: i for i, f in enumerate(family_order())}
    families = df.dropna(subset=["family"]).groupby("task")["family"].first() \
        if "family" in df else pd.Series(dtype=object)

    def key(task):
        rank = order.get(families.get(task), len(order))
        return (task == UNKNOWN_TASK, rank, str(task))

    return sorted(df["task"].unique(), key=key)


def arch_order(archs: Iterable[str]) -> list[str]:
    """The ArchName variants present, in their declared order, then any other labels."""
    archs = [a for a in set(archs) if isinstance(a, str)]
    return [a for a in ARCH_ORDER if a in archs] + sorted(a for a in archs if a not in ARCH_ORDER)


def best_run(runs: pd.DataFrame) -> pd.Series | None:
    """Highest test token accuracy; ties broken by lower test loss. None if no runs."""
    if not len(runs):
        return None
    order = runs.assign(_loss=runs["test_loss"].fillna(math.inf))
    return order.sort_values(["test_acc", "_loss"], ascending=[False, True]).iloc[0]


def status_counts(runs: pd.DataFrame) -> dict[str, int]:
    """Runs per status: every status of STATUS_ORDER (0 if none), then any others."""
    counts = runs["status"].value_counts()
    extra = sorted(s for s in counts.index if s not in STATUS_ORDER)
    return {s: int(counts.get(s, 0)) for s in (*STATUS_ORDER, *extra)}


def _arch_cells(a: pd.DataFrame, good: pd.DataFrame, arch: str) -> dict:
    best = best_run(good)
    acc = good["test_acc"]
    return {
        f"{arch}.layers": a["layers"].max(),
        f"{arch}.heads": a["heads"].max(),
        f"{arch}.best": acc.max() if len(acc) else math.nan,
        f"{arch}.mean": acc.mean() if len(acc) else math.nan,
        f"{arch}.std": acc.std(ddof=1) if len(acc) > 1 else math.nan,
        f"{arch}.n": len(acc),
        f"{arch}.seq_acc": math.nan if best is None else best["test_seq_acc"],
        f"{arch}.runs": len(a),
    }


def _attention_cells(best_pred: pd.Series | None, attn_cols: list[str]) -> dict:
    heads = {}
    if best_pred is not None:
        heads = {c.split(".", 1)[1]: best_pred[c] for c in attn_cols if pd.notna(best_pred[c])}
    row = {f"attn.{c.split('.', 1)[1]}": heads.get(c.split(".", 1)[1], math.nan)
           for c in attn_cols}
    row["attn.min"] = min(heads.values()) if heads else math.nan
    return row


def table1(df: pd.DataFrame, include_interrupted: bool = False) -> pd.DataFrame:
    """The paper's Table 1: one row per task, numeric (accuracies as fractions).

    Columns: task, predicted_layers, predicted_heads; per arch variant ``<arch>.layers``,
    ``.heads``, ``.best``, ``.mean``, ``.std``, ``.n`` (runs counted), ``.seq_acc`` (of the
    best run), ``.runs`` (all runs); ``attn.<layer,head>`` and ``attn.min`` of the best
    predicted run; then ``runs`` and one count column per status.
    """
    ok = counted(df, include_interrupted)
    archs = arch_order(df["arch"].dropna())
    attn_cols = sorted(
        (c for c in df.columns if c.startswith("attention_match.")),
        key=lambda c: [int(x) if x.isdigit() else x for x in c.split(".", 1)[1].split(",")],
    )
    rows = []
    for task in task_order(df):
        t = df[df["task"] == task]
        row = {"task": task, "predicted_layers": t["predicted_layers"].max(),
               "predicted_heads": t["predicted_heads"].max()}
        for arch in archs:
            a = t[t["arch"] == arch]
            row.update(_arch_cells(a, a[ok.loc[a.index]], arch))
        best_pred = best_run(t[ok.loc[t.index] & (t["arch"] == "predicted")])
        row.update(_attention_cells(best_pred, attn_cols))
        row["runs"] = len(t)
        row.update(status_counts(t))
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
    tasks = {t: i for i, t in enumerate(task_order(good))}
    archs = {a: i for i, a in enumerate(arch_order(good["arch"]))}
    out["_t"] = out["task"].map(tasks)
    out["_a"] = out["arch"].map(archs)
    return out.sort_values(["_t", "_a", "layers", "heads"]).drop(columns=["_t", "_a"]) \
        .reset_index(drop=True)


def not_counted_runs(df: pd.DataFrame, include_interrupted: bool = False) -> pd.DataFrame:
    """Runs that do not count towards accuracy, with why."""
    rest = df[~counted(df, include_interrupted)]
    cols = ["task", "arch", "lr", "gamma", "status", "reason", "error", "run_dir"]
    return rest[[c for c in cols if c in rest.columns]].reset_index(drop=True)
