"""The figures: one PNG per layer with a heatmap per head of the attention probabilities
or the pre-softmax scores, the head's selector drawn below it, axes labelled with the
tokens, on fixed margins (matplotlib is imported only when a figure is drawn). Its one
reason to change: how a figure looks.
"""

from __future__ import annotations

import math
from pathlib import Path

from rasp_hydra.draw.names import token_label, visible
from rasp_hydra.runs.files import tmp_path

MAX_TICKS = 40  # at most this many labelled ticks per axis; beyond, every k-th token


def _panel_inches(n: int) -> float:
    return min(12.0, max(3.0, 1.2 + 0.11 * n))


def _ticks(ax, labels: list[str]) -> None:
    n = len(labels)
    k = max(1, math.ceil(n / MAX_TICKS))
    pos = list(range(0, n, k))
    shown = [token_label(labels[i]) if k == 1 else f"{token_label(labels[i])} {i}"
             for i in pos]
    size = 9 if n <= 20 else 7
    ax.set_xticks(pos, shown, rotation=90 if k > 1 else 0, fontsize=size)
    ax.set_yticks(pos, shown, fontsize=size)
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
    ax.set_xlabel("key" + (f" (every {k}th token, with its position)" if k > 1 else ""),
                  fontsize=8)
    ax.set_ylabel("query", fontsize=8)


def _overlay(ax, values, numbers: int, inches: float, vmin: float, vmax: float) -> None:
    n = values.shape[0]
    cell_pt = inches * 72 / n
    size = max(1.5, min(9.0, cell_pt / (0.62 * (numbers + 2) + 0.4)))  # the text fits a cell
    mid = (vmin + vmax) / 2
    for i in range(n):
        for j in range(values.shape[1]):
            v = float(values[i, j])
            ax.text(j, i, f"{v:.{numbers}f}", ha="center", va="center", fontsize=size,
                    color="black" if v > mid else "white")


def _heatmap(fig, ax, cax, values, labels, title, cmap, vmin, vmax, numbers, inches):
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                   aspect="auto")
    fig.colorbar(im, cax=cax)
    cax.tick_params(labelsize=8)
    _ticks(ax, labels)
    ax.set_title(title, fontsize=10)
    if numbers is not None:
        _overlay(ax, values, numbers, inches, vmin, vmax)


def _dpi(n: int, numbers: int | None) -> int:
    if numbers is None or n <= 30:
        return 100
    return 200 if n <= 60 else 300


# Fixed margins in inches around each square panel (no layout engine: it would cost a
# full extra draw per figure): left for y tick labels, top for x tick labels and the
# title, then the colorbar to the right.
_LEFT, _BOTTOM, _PAD, _CBAR, _RIGHT, _SUPTITLE = 1.0, 0.4, 0.12, 0.18, 0.7, 1.0


def _grid(rows: int, cols: int, n: int, inches: float):
    """(figsize, [[(panel rect, colorbar rect)] per column] per row) in figure fractions."""
    top = 0.75 if n <= MAX_TICKS else 1.05  # rotated "token position" labels are taller
    cell_w = _LEFT + inches + _PAD + _CBAR + _RIGHT
    cell_h = top + inches + _BOTTOM
    W, Hh = cols * cell_w, _SUPTITLE + rows * cell_h
    grid = []
    for r in range(rows):
        row = []
        for c in range(cols):
            x = c * cell_w + _LEFT
            y = Hh - _SUPTITLE - (r + 1) * cell_h + _BOTTOM
            row.append(((x / W, y / Hh, inches / W, inches / Hh),
                        ((x + inches + _PAD) / W, y / Hh, _CBAR / W, inches / Hh)))
        grid.append(row)
    return (W, Hh), grid


def draw_layer(path: Path, kind: str, layer: int, values, labels: list[str], task,
               summary: str, sequence: str, selectors: dict, selector_names: dict,
               match: dict, numbers: int | None) -> Path:
    """One PNG: a heatmap per head of ``values`` [H, n, n] (kind "attention" or "scores");
    for "attention", heads with a selector get it drawn below them."""
    # The Agg canvas on a bare Figure: no pyplot, so a notebook's backend and figure
    # list stay as they are.
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    H, n = values.shape[0], values.shape[1]
    sel_heads = [h for h in range(H) if (layer, h) in selectors] if kind == "attention" else []
    rows = 2 if sel_heads else 1
    inches = _panel_inches(n)
    figsize, grid = _grid(rows, H, n, inches)
    with rc_context({"text.parse_math": False}):
        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        for h in range(H):
            v = values[h]
            if kind == "attention":
                title = f"head {h}: attention"
                if (layer, h) in match:
                    title += f" (match {match[(layer, h)]:.3f})"
                # 0 to the largest value: long sequences spread attention thin
                vmin, vmax, cmap = 0.0, max(float(v.max()), 1e-6), "viridis"
            else:
                title = f"head {h}: pre-softmax scores"
                vmin, vmax, cmap = float(v.min()), float(v.max()), "magma"
                if vmin == vmax:
                    vmax = vmin + 1e-6
            rect, crect = grid[0][h]
            _heatmap(fig, fig.add_axes(rect), fig.add_axes(crect), v, labels, title,
                     cmap, vmin, vmax, numbers, inches)
            if rows == 2:
                rect, crect = grid[1][h]
                if h in sel_heads:
                    ref = (layer, h) in getattr(task, "reference_heads", ())
                    name = selector_names.get((layer, h), "")
                    what = "reference" if ref else "target"
                    _heatmap(fig, fig.add_axes(rect), fig.add_axes(crect),
                             selectors[(layer, h)].astype(float), labels,
                             f"head {h}: {what} selector {name}".rstrip(), "Greys",
                             0.0, 1.0, None, inches)
                else:
                    fig.text(rect[0] + rect[2] / 2, rect[1] + rect[3] / 2,
                             f"head {h}: no selector", ha="center", va="center")
        what = "attention" if kind == "attention" else "pre-softmax scores"
        seq = sequence if task.spaced else visible(sequence)  # "10 2 33": spaces separate
        room = int(figsize[0] * 10)
        if len(seq) > room:
            seq = seq[: room - 3] + "..."
        fig.suptitle(f"{task.name}, layer {layer}: {what}\n{summary}\ninput {seq}",
                     fontsize=11, y=1 - 0.12 / figsize[1], va="top")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_path(path)  # .rasp_hydra-NAME.PID.tmp: two drawers never share one
        try:
            fig.savefig(tmp, dpi=_dpi(n, numbers), format="png")
            tmp.replace(path)
        finally:  # a failed write (a full disk) leaves no temporary figure behind
            tmp.unlink(missing_ok=True)
    return path
