"""The loss and accuracy curves of a run, ``plots/curves.png`` (matplotlib, imported on
first use). Plotting is a convenience, never part of training: it never raises. This module
changes when the picture changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from rasp_hydra.runs.files import CURVES, tmp_path


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
        tmp = tmp_path(path)
        try:
            fig.savefig(tmp, dpi=100, format="png")
            os.replace(tmp, path)
        except OSError:  # a full disk: the record matters, the picture can wait
            tmp.unlink(missing_ok=True)
            return None
    finally:
        plt.close(fig)
    return path

def curves_path(run_dir) -> Path | None:
    """plots/curves.png of the run, if it has been drawn."""
    path = Path(run_dir) / CURVES
    return path if path.is_file() else None
