"""What the probes write and print: probes.csv, the probes.png heatmap (trained minus
control per s-op and layer, the compiled layer outlined) and one summary line per s-op. Its
one reason to change: how the probes' results are shown.
"""

from __future__ import annotations

from pathlib import Path

from rasp_hydra.runs.files import tmp_path

CSV, PNG = "probes.csv", "probes.png"
OUTPUT_FILES = (CSV, PNG)  # what write_outputs writes in its folder


def write_outputs(df, out_dir: Path, title: str) -> dict:
    """probes.csv and probes.png under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / CSV
    tmp = tmp_path(csv)
    try:
        df.to_csv(tmp, index=False, float_format="%.4f")
        tmp.replace(csv)
    finally:  # a failed write leaves no temporary file behind
        tmp.unlink(missing_ok=True)
    png = draw_matrix(df, out_dir / PNG, title)
    return {"csv": csv, "png": png}


def draw_matrix(df, path: Path, title: str) -> Path:
    """Heatmap: rows s-ops, columns layers, colour trained minus control, each cell
    labelled "trained / control", the compiled layer outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    sops = list(dict.fromkeys(df["sop"]))
    layers = sorted(df["layer"].unique())
    diff = df.pivot(index="sop", columns="layer", values="difference").loc[sops, layers]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(layers), 1.2 + 0.45 * len(sops)))
    im = ax.imshow(diff.to_numpy(dtype=float), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    for r in df.itertuples():
        y, x = sops.index(r.sop), layers.index(r.layer)
        text = "-" if r.kind == "constant" else f"{r.trained:.2f}\n{r.control:.2f}"
        ax.text(x, y, text, ha="center", va="center", fontsize=7,
                fontweight="bold" if r.decodable else "normal")
        if r.layer == r.compiled_layer:
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, lw=2, ec="black"))
    metric = {name: m for name, m in zip(df["sop"], df["metric"], strict=True)}
    ax.set_yticks(range(len(sops)), [f"{s} ({'R²' if metric[s] == 'r2' else 'acc'})"
                                     for s in sops], fontsize=8)
    ax.set_xticks(range(len(layers)), [f"{x}" + (" (emb)" if x == 0 else "") for x in layers])
    ax.set_xlabel("residual stream after layer")
    ax.set_title(title + "\ncells: trained / control (bold: decodable); box: compiled layer",
                 fontsize=8)
    fig.colorbar(im, ax=ax, label="trained - control")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary_lines(df, layers: int) -> list[str]:
    """A header naming the columns (the residual stream after layer 0, the embedding, to
    layer L), then one line per s-op: kind, compiled layer, trained and control per layer,
    and where it first becomes decodable."""
    width = max(len(s) for s in df["sop"])
    metrics = {name: "R2" if r.metric == "r2" else f"acc (baseline {r.baseline:.2f})"
               for name, r in df.groupby("sop", sort=False).first().iterrows()}
    mw = max(len(m) for m in metrics.values()) + 1  # with its colon
    probed = sorted(df["layer"].unique())
    cols = "".join(f"{int(x):>6}" for x in probed)
    lines = [f"{'s-op':<{width}}  {'':<11} {'':<{mw}} {'layer':>7}{cols} | {'layer':>7}{cols}"
             "  (layer 0: the embedding)"]
    for name, g in df.groupby("sop", sort=False):
        g = g.sort_values("layer")
        r = g.iloc[0]
        head = f"{name:<{width}}  compiled {r.compiled_layer:<2}"
        if r.kind == "constant":
            lines.append(f"{head} one value on the train sequences: not probed")
            continue
        scores = "".join(f"{v:>6.2f}" for v in g["trained"])
        controls = "".join(f"{v:>6.2f}" for v in g["control"])
        lines.append(f"{head} {metrics[name] + ':':<{mw}} trained{scores} | "
                     f"control{controls}  {_where(g, r, layers)}")
    return lines


def _where(g, r, layers: int) -> str:
    first = g[g["decodable"]]
    if len(first):
        f = first.iloc[0]
        return (f"decodable from layer {int(f.layer)}"
                + ("" if f.over_control else ", as in the untrained model"))
    if r.compiled_layer > layers:
        return f"not decodable (compiled beyond this model's {layers} layers)"
    return "not decodable"
