"""Table 1 and the per-(task, layers, heads) summary as text: percentages, each cell's
spread over replicates, what did not count, the attention match above chance, as the
strings that the Markdown, LaTeX and HTML tables show; and the report folder's name. Its
one reason to change: how a figure of the report reads as text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from rasp_hydra.report.collect import EPOCH_FOR_VAL
from rasp_hydra.report.tables import STATUS_ORDER, arch_order


def pct(x, digits: int = 1) -> str:
    return "–" if pd.isna(x) else f"{100 * x:.{digits}f}"


def int_text(x) -> str:
    return "?" if pd.isna(x) else str(int(x))


def _status_note(row: pd.Series | dict) -> str:
    """``"1 running, 2 skipped"``: the counts of every status but completed."""
    return ", ".join(f"{int(row.get(s, 0))} {s}" for s in STATUS_ORDER[1:] if row.get(s, 0))


def _spread(r: pd.Series, metric: str, solved_col: str) -> str:
    """``99.6 ± 0.3 (3/3; 99.2–99.9)``: mean ± 95% half-width (k/n solved; min–max); for
    one replicate ``99.6 (1/1)``."""
    n = int(r["seeds"])
    if not n:
        return "–"
    if n == 1:
        return f"{pct(r[f'{metric}_mean'])} ({r[solved_col]})"
    return (f"{pct(r[f'{metric}_mean'])} ± {pct(r[f'{metric}_ci95'])} ({r[solved_col]}; "
            f"{pct(r[f'{metric}_min'])}–{pct(r[f'{metric}_max'])})")


def _arch_cell(r: pd.Series, split: str, include_interrupted: bool) -> str:
    lh = f"{int_text(r['layers'])}L{int_text(r['heads'])}H"
    cell = f"{lh}: –"
    if r["seeds"]:
        cell = (f"{lh}: {_spread(r, f'{split}_acc', 'solved')}, "
                f"seq {_spread(r, f'{split}_seq_acc', 'seq_solved')}")
    not_counted = {s: int(r[s]) for s in STATUS_ORDER[1:] if r.get(s, 0)}
    if include_interrupted and "interrupted" in not_counted:
        not_counted["interrupted (counted)"] = not_counted.pop("interrupted")
    if not_counted:
        cell += " [" + ", ".join(f"{n} {s}" for s, n in not_counted.items()) + "]"
    return cell


def _attention_text(r: pd.Series) -> str:
    """Per head of the predicted cell: match above chance (raw match), "–" above chance
    where the select picks every key, and only the raw match where the runs did not record
    uniform attention's match."""
    parts = []
    heads = [c[len("attn."):] for c in r.index if c.startswith("attn.") and pd.notna(r[c])]
    for h in sorted(heads, key=lambda h: [int(x) if x.isdigit() else x for x in h.split(",")]):
        c = f"attn.{h}"
        u = r.get(f"attn_uniform.{h}")
        if u is None or pd.isna(u):
            parts.append(f"{h}: raw {pct(r[c])}")
        else:
            parts.append(f"{h}: {pct(r.get(f'attn_above.{h}'))} ({pct(r[c])})")
    return "; ".join(parts) or "–"


def display_table1(t1: pd.DataFrame, include_interrupted: bool = False,
                   split: str = "test") -> pd.DataFrame:
    """Table 1 as strings for Markdown/LaTeX/HTML: one row per task, one cell per arch
    variant (percentages): ``2L1H: 99.6 ± 0.3 (3/3; 99.2–99.9), seq ...`` plus what did not
    count (e.g. ``[1 failed]``); on test, the predicted cell's attention match above chance."""
    if not len(t1):
        return pd.DataFrame()
    rows = []
    for task in dict.fromkeys(t1["task"]):
        cells = t1[t1["task"] == task]
        first = cells.iloc[0]
        out = {"task": task, "RASP L/H": f"{int_text(first['predicted_layers'])}/"
               f"{int_text(first['predicted_heads'])}"}
        if split == "test_long":
            out["lengths (train → long)"] = f"{first['lengths']} → {first['long_lengths']}"
        for _, r in cells.iterrows():
            out[r["arch"]] = _arch_cell(r, split, include_interrupted)
        if split == "test":
            pred = cells[cells["arch"] == "predicted"]
            out["attn match above chance (predicted)"] = \
                _attention_text(pred.iloc[0]) if len(pred) else "–"
        counts = cells[[c for c in STATUS_ORDER if c in cells]].sum()
        note = _status_note(counts)
        out["runs"] = f"{int(cells['runs'].sum())}" + (f" ({note})" if note else "")
        rows.append(out)
    frame = pd.DataFrame(rows)
    # arch columns in the table's own order, whichever task came first
    archs = arch_order(t1["arch"])
    fixed = [c for c in frame.columns if c not in archs]
    return frame[fixed[:3 if split == "test_long" else 2] + archs
                 + fixed[3 if split == "test_long" else 2:]].fillna("")


def display_summary(s: pd.DataFrame) -> pd.DataFrame:
    """The per-(task, layers, heads) summary as strings (percentages)."""
    if not len(s):
        return pd.DataFrame()
    return pd.DataFrame({
        "task": s["task"], "arch": s["arch"],
        "L": s["layers"].map(int_text), "H": s["heads"].map(int_text),
        "d_model": s["d_model"].map(int_text),
        "n": s["n"],
        "test loss best/avg/worst": [
            f"{a:.4f} / {b:.4f} / {c:.4f}" for a, b, c in
            zip(s["test_loss_best"], s["test_loss_avg"], s["test_loss_worst"], strict=True)],
        "test acc best/avg/worst": [
            f"{pct(a)} / {pct(b)} / {pct(c)}" for a, b, c in
            zip(s["test_acc_best"], s["test_acc_avg"], s["test_acc_worst"], strict=True)],
        f"val acc @{EPOCH_FOR_VAL} avg/best": [
            f"{pct(a)} / {pct(b)}" for a, b in
            zip(s["val_acc_epoch20_avg"], s["val_acc_epoch20_best"], strict=True)],
        "epochs avg (min–max)": [
            f"{a:.1f} ({int_text(b)}–{int_text(c)})" for a, b, c in
            zip(s["epochs_run_avg"], s["epochs_run_min"], s["epochs_run_max"], strict=True)],
    })


def to_markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False) if len(frame) else "(none)"


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
