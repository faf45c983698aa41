"""The report's figure: test (or test_long) accuracy per task and arch variant, the mean
over replicates as a bar, its 95% interval as a line and each replicate as a dot
(matplotlib is imported only when it is drawn). Its one reason to change: how the figure
looks.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rasp_hydra.report.tables import arch_order, choose_on_validation


def plot_table1(t1: pd.DataFrame, df: pd.DataFrame, path: Path,
                include_interrupted: bool = False, split: str = "test") -> None:
    """Grouped bars per task (groups) and arch variant (bars): the bar is the mean over
    replicates, the black line its 95% interval, the dots the replicates (each the run
    chosen on validation); a cell with no counted run says why in text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = arch_order(t1["arch"])
    tasks = list(dict.fromkeys(t1["task"]))
    cells = t1.set_index(["task", "arch"])
    chosen = choose_on_validation(df, include_interrupted, split)
    metric = f"{split}_acc"
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(tasks) + 2), 4.2))
    width = 0.8 / max(1, len(archs))
    labelled = set()
    for j, arch in enumerate(archs):
        for i, task in enumerate(tasks):
            if (task, arch) not in cells.index:
                continue
            x = i + (j - (len(archs) - 1) / 2) * width
            r = cells.loc[(task, arch)]
            if not r["seeds"]:  # say why there is no bar: "skipped", "running", ...
                a = df[(df["task"] == task) & (df["arch"] == arch)]
                label = "/".join(a["status"].value_counts().index)
                ax.text(x, 2, label, rotation=90, ha="center", va="bottom", fontsize=7)
                continue
            ax.bar(x, 100 * r[f"{metric}_mean"], width, color=f"C{j}", alpha=0.6,
                   label=None if arch in labelled else arch)
            labelled.add(arch)
            if pd.notna(r[f"{metric}_ci95"]):  # drawn within 0..100, the CSV has it all
                mean, half = 100 * r[f"{metric}_mean"], 100 * r[f"{metric}_ci95"]
                ax.errorbar(x, mean, yerr=[[min(half, mean)], [min(half, 100 - mean)]],
                            fmt="none", ecolor="k", capsize=3, lw=1)
            c = chosen[(chosen["task"] == task) & (chosen["arch"] == arch)]
            ax.plot([x] * len(c), 100 * c[metric], "k.", ms=5)
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    ax.set_ylabel(f"{split} token accuracy (%)")
    ax.set_ylim(0, 119)
    ax.set_yticks(range(0, 101, 20))
    what = "Test accuracy" if split == "test" else "Accuracy on longer inputs (test_long)"
    ax.set_title(f"{what} per task and architecture\n(bar: mean over seeds; line: 95% "
                 "interval; dots: seeds)", fontsize=10)
    if labelled:
        ax.legend(fontsize=8, ncols=min(4, max(1, len(archs))), loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
