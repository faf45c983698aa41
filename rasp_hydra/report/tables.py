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
    "skipped", "unknown", "unreadable", "missing",
)


def counted(df: pd.DataFrame, include_interrupted: bool = False) -> pd.Series:
    """Boolean mask of the runs whose accuracy counts (see the package docstring): a
    compiled model's (status and arch ``compiled``, rasp_hydra/compiled.py) counts in a
    cell of its own, arch ``compiled``, beside the trained cells of its task."""
    ok = ["completed", "compiled", "interrupted"] if include_interrupted \
        else ["completed", "compiled"]
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


SOLVED = 0.99  # a replicate "solves" its task at this test token accuracy or above
SPLITS = ("test", "test_long")  # the splits a Table 1 can be built on
# settings that never name what a replicate chose among: its seed, and what cannot change
# a run's result (the cell's own task and arch are the same within a replicate anyway)
NOT_CHOSEN = ("train.seed", "train.num_threads", "train.device", "train.progress",
              "train.resume", "train.eval_batch_size")
CONFIG_GROUPS = ("lang.", "model.", "optimizer.", "schedule.", "train.")

# two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30 (scipy.stats.t.ppf)
_T95 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
        2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
        2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


def t95(df: int) -> float:
    """The 97.5% quantile of Student's t with df degrees of freedom: the table above, and
    beyond it the Cornish-Fisher expansion around the normal's 1.96 (error < 1e-4).

    >>> t95(2), round(t95(120), 3)
    (4.3027, 1.98)
    """
    if df <= len(_T95):
        return _T95[df - 1]
    z = 1.959963984540054
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def spread(values: pd.Series, threshold: float = SOLVED) -> dict:
    """Mean, 95% Student-t half-width (NaN for fewer than two values), min, max, how many
    values reach the threshold, and n.

    >>> s = spread(pd.Series([0.9, 1.0, 1.0]))
    >>> round(float(s["ci95"]), 4), s["solved"], s["n"]
    (0.1434, 2, 3)
    """
    v = values.dropna()
    n = len(v)
    return {"n": n, "mean": v.mean() if n else math.nan,
            "ci95": t95(n - 1) * v.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan,
            "min": v.min() if n else math.nan, "max": v.max() if n else math.nan,
            "solved": int((v >= threshold).sum())}


def _split_counted(df: pd.DataFrame, include_interrupted: bool, split: str) -> pd.Series:
    return counted(df, include_interrupted) & df[f"{split}_acc"].notna()


def choose_on_validation(df: pd.DataFrame, include_interrupted: bool = False,
                         split: str = "test") -> pd.DataFrame:
    """The run of each replicate (task, arch, seed) whose figures a cell reports: among its
    counted runs (those with figures on `split`), the highest final validation token
    accuracy, ties broken by the lower validation loss (then by run order). Test figures
    never choose."""
    good = df[_split_counted(df, include_interrupted, split)]
    ranked = good.assign(_acc=good["valid_acc"].fillna(-math.inf),
                         _loss=good["valid_loss"].fillna(math.inf)) \
        .sort_values(["_acc", "_loss"], ascending=[False, True], kind="stable")
    return ranked.groupby(["task", "arch", "seed"], dropna=False, sort=False).head(1) \
        .drop(columns=["_acc", "_loss"]).sort_index()


def chosen_among(df: pd.DataFrame, include_interrupted: bool = False) -> list[str]:
    """The config keys that differ between the counted runs of one replicate: what the
    validation split chose among (e.g. optimizer.lr, schedule.gamma)."""
    good = df[counted(df, include_interrupted)]
    keys = [c for c in good.columns if c.startswith(CONFIG_GROUPS) and not c.startswith(NOT_CHOSEN)]
    if not keys or not len(good):
        return []
    varying = good.groupby(["task", "arch", "seed"], dropna=False)[keys] \
        .nunique(dropna=False).max()
    return [k for k in keys if varying[k] > 1]


def status_counts(runs: pd.DataFrame) -> dict[str, int]:
    """Runs per status: every status of STATUS_ORDER (0 if none), then any others."""
    counts = runs["status"].value_counts()
    extra = sorted(s for s in counts.index if s not in STATUS_ORDER)
    return {s: int(counts.get(s, 0)) for s in (*STATUS_ORDER, *extra)}


def head_order(df: pd.DataFrame) -> list[str]:
    """The "layer,head" keys of every head any run measured, in (layer, head) order."""
    heads = {c.split(".", 1)[1] for c in df.columns if c.startswith("attention_match.")}
    return sorted(heads, key=lambda h: [int(x) if x.isdigit() else x for x in h.split(",")])


def _attention_cells(chosen: pd.DataFrame, heads: list[str]) -> dict:
    """Per head, over the chosen runs: the mean raw match, the mean match of uniform
    attention (NaN when a run did not record it) and the mean match above chance (NaN where
    uniform attention already scores 1: the select picks every key)."""
    from rasp_hydra.runs import match_above_chance

    row = {}
    for h in heads:
        m = chosen.get(f"attention_match.{h}", pd.Series(dtype=float)).astype(float)
        u = chosen.get(f"attention_uniform.{h}", pd.Series(math.nan, index=m.index)) \
            .astype(float)
        if not m.notna().any():
            continue
        row[f"attn.{h}"] = m.mean()
        row[f"attn_uniform.{h}"] = u.mean() if u.notna().all() else math.nan
        above = [match_above_chance(a, b) for a, b in zip(m, u, strict=True)
                 if pd.notna(a) and pd.notna(b)]
        row[f"attn_above.{h}"] = (math.nan if not above or None in above
                                  else sum(above) / len(above))
    return row


def table1(df: pd.DataFrame, include_interrupted: bool = False, solved: float = SOLVED,
           split: str = "test") -> pd.DataFrame:
    """The paper's Table 1 as one row per cell (task, arch), numeric (fractions).

    The cell's replicates are its seeds; each replicate's figures are those of its run
    chosen on validation (``choose_on_validation``). Columns: task, arch, layers, heads,
    predicted_layers, predicted_heads, lengths (and long_lengths on test_long), seeds (the
    replicates counted), then for ``<split>_acc`` and ``<split>_seq_acc``: ``_mean``,
    ``_ci95`` (half-width of the 95% Student-t interval), ``_min``, ``_max``; ``solved``
    and ``seq_solved`` as ``k/n`` (replicates at or above ``solved``); per head
    ``attn.<l,h>`` (raw match on test), ``attn_uniform.<l,h>`` and ``attn_above.<l,h>``
    means over the chosen runs; ``runs`` (all runs of the cell) and one count per status.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; one of {SPLITS}")
    if split == "test_long":  # the tasks whose runs have a longer test split
        df = df[df["task"].isin(df.loc[df["long_lengths"].notna() | df["test_long_acc"].notna(),
                                       "task"])]
    chosen = choose_on_validation(df, include_interrupted, split)
    heads = head_order(df)
    rows = []
    for task in task_order(df):
        t = df[df["task"] == task]
        for arch in arch_order(t["arch"].dropna()):
            a = t[t["arch"] == arch]
            c = chosen[(chosen["task"] == task) & (chosen["arch"] == arch)]
            row = {"task": task, "arch": arch, "layers": a["layers"].max(),
                   "heads": a["heads"].max(), "predicted_layers": t["predicted_layers"].max(),
                   "predicted_heads": t["predicted_heads"].max(),
                   "lengths": a["lengths"].dropna().iloc[0] if a["lengths"].notna().any()
                   else None}
            if split == "test_long":
                row["long_lengths"] = (a["long_lengths"].dropna().iloc[0]
                                       if a["long_lengths"].notna().any() else None)
            row["seeds"] = len(c)
            for metric, solved_col in ((f"{split}_acc", "solved"),
                                       (f"{split}_seq_acc", "seq_solved")):
                s = spread(c[metric], solved)
                row.update({f"{metric}_{k}": s[k] for k in ("mean", "ci95", "min", "max")})
                row[solved_col] = f"{s['solved']}/{s['n']}"
            if split == "test":  # the match is measured on test
                row.update(_attention_cells(c, heads))
            row["runs"] = len(a)
            row.update(status_counts(a))
            rows.append(row)
    return pd.DataFrame(rows)


def has_long_split(df: pd.DataFrame) -> bool:
    """Whether any run has figures on the longer "test_long" split."""
    return "test_long_acc" in df and bool(df["test_long_acc"].notna().any())


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
    cols = ["task", "arch", "seed", "lr", "gamma", "status", "reason", "error", "run_dir"]
    return rest[[c for c in cols if c in rest.columns]].reset_index(drop=True)
