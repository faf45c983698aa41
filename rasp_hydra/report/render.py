"""Writers: Table 1 and the runs as Markdown, CSV, LaTeX, a PNG figure and one HTML page.

Accuracies are fractions in the CSV files and percentages everywhere a person reads them.
The HTML page's links are relative to the report folder (computed when it is written), so
the report and the sweeps it reads can be moved together; with ``self_contained`` the page
links nothing outside itself: each run's curves are embedded and its row links to an
anchor in the page, so the one file can be mailed or attached.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from rasp_hydra import runs
from rasp_hydra.report.collect import EPOCH_FOR_VAL
from rasp_hydra.report.tables import (
    SOLVED,
    STATUS_ORDER,
    arch_order,
    choose_on_validation,
    chosen_among,
    has_long_split,
    head_order,
    not_counted_runs,
    summary,
    table1,
)

# --------------------------------------------------------------------------- as text


def _pct(x, digits: int = 1) -> str:
    return "–" if pd.isna(x) else f"{100 * x:.{digits}f}"


def _int(x) -> str:
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
        return f"{_pct(r[f'{metric}_mean'])} ({r[solved_col]})"
    return (f"{_pct(r[f'{metric}_mean'])} ± {_pct(r[f'{metric}_ci95'])} ({r[solved_col]}; "
            f"{_pct(r[f'{metric}_min'])}–{_pct(r[f'{metric}_max'])})")


def _arch_cell(r: pd.Series, split: str, include_interrupted: bool) -> str:
    lh = f"{_int(r['layers'])}L{_int(r['heads'])}H"
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
            parts.append(f"{h}: raw {_pct(r[c])}")
        else:
            parts.append(f"{h}: {_pct(r.get(f'attn_above.{h}'))} ({_pct(r[c])})")
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
        out = {"task": task, "RASP L/H": f"{_int(first['predicted_layers'])}/"
               f"{_int(first['predicted_heads'])}"}
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


# --------------------------------------------------------------------------- figure


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


# --------------------------------------------------------------------------- HTML


def _html_table(frame: pd.DataFrame) -> str:
    if not len(frame):
        return "<p>(none)</p>"
    frame = frame.copy()
    for c in frame.columns:  # Markdown bold -> HTML after escaping
        frame[c] = frame[c].map(
            lambda v: re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(str(v))))
    return frame.to_html(index=False, escape=False, border=0, classes="t")


def _href(target: Path, out: Path) -> str:
    """A link from the report folder ``out`` to ``target``: relative, so that the report and
    the sweep can move together; a file URI only where no relative path exists (another
    drive)."""
    try:
        link = quote(os.path.relpath(target, out).replace(os.sep, "/"))
    except ValueError:
        link = target.as_uri()
    return html.escape(link)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


RUN_COLUMNS = ("task", "arch", "layers", "heads", "d_model", "lr", "gamma", "status",
               "test_acc", "test_seq_acc", "epochs_run")


def _run_cells(r: pd.Series) -> list[str]:
    cells = []
    for c in (("trial",) if "trial" in r.index else ()) + RUN_COLUMNS:
        v = r.get(c)
        if c in ("test_acc", "test_seq_acc"):
            v = _pct(v, 2)
        elif not isinstance(v, str) and pd.isna(v):
            v = ""
        elif c in ("trial", "layers", "heads", "d_model", "epochs_run"):
            v = _int(v)
        cells.append(f"<td>{html.escape(str(v))}</td>")
    return cells


def _run_links(r: pd.Series, anchor: str, out: Path, self_contained: bool) -> str:
    run = Path(r["run_dir"])
    if self_contained:
        links = [f'<a href="#{anchor}">{html.escape(run.name)}</a>']
    elif run.is_dir():
        links = [f'<a href="{_href(run, out)}/">{html.escape(run.name)}</a>']
        links += [f'<a href="{_href(f, out)}">{html.escape(f.name)}</a>'
                  for f in runs.run_files(run)]
    else:  # a missing job: nothing to link to
        links = [html.escape(run.name)]
    if r["status"] != "completed" and isinstance(r.get("reason"), str):
        links.append(html.escape(r["reason"]))
    return " ".join(links)


def _runs_html(df: pd.DataFrame, out: Path, self_contained: bool) -> str:
    cols = (["trial"] if "trial" in df.columns else []) + list(RUN_COLUMNS)
    head = "".join(f"<th>{c}</th>" for c in cols + ["run"])
    body = []
    for i, (_, r) in enumerate(df.iterrows()):
        cells = _run_cells(r) + [f"<td>{_run_links(r, f'run-{i}', out, self_contained)}</td>"]
        body.append(f'<tr class="{html.escape(str(r["status"]))}">{"".join(cells)}</tr>')
    return f'<table class="t"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _run_sections(df: pd.DataFrame) -> str:
    """One section per run, its anchor the target of the runs table's link: what it is,
    why it did not complete, and its curves embedded."""
    parts = []
    for i, (_, r) in enumerate(df.iterrows()):
        title = " · ".join(html.escape(str(r.get(c))) for c in ("task", "arch", "status"))
        facts = (f"lr {r.get('lr')}, gamma {r.get('gamma')}, test token accuracy "
                 f"{_pct(r.get('test_acc'), 2)} (sequence {_pct(r.get('test_seq_acc'), 2)}), "
                 f"{_int(r.get('epochs_run'))} epochs")
        run = Path(r["run_dir"])
        parts.append(f'<section id="run-{i}"><h3>{html.escape(run.parent.name)}/'
                     f"{html.escape(run.name)}: {title}</h3>"
                     f"<p><code>{html.escape(str(r['run_dir']))}</code></p>"
                     f"<p>{html.escape(facts)}</p>")
        for key in ("reason", "error"):
            if isinstance(r.get(key), str):
                parts.append(f"<pre>{html.escape(r[key])}</pre>")
        curves = runs.curves_path(r["run_dir"])
        if curves is not None:
            parts.append(f'<img alt="curves of {html.escape(run.name)}" '
                         f'src="{_data_uri(curves.read_bytes())}">')
        parts.append("</section>")
    return "<h2>Run details</h2>" + "".join(parts)


def _html_page(title: str, sources: Sequence[str], note: str, tables: dict[str, str],
               figure: bytes, long: tuple[str, str, bytes] | None = None) -> str:
    """The page; `long` is the length-generalization section's (note, table, figure)."""
    long_section = "" if long is None else (
        f"<h2>Length generalization</h2><p>{html.escape(long[0])}</p>{long[1]}"
        f'<p><img alt="longer test accuracy per task and arch" src="{_data_uri(long[2])}"></p>')
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Table 1: {html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table.t{{border-collapse:collapse;font-size:90%}}
table.t td,table.t th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}
tr.failed,tr.diverged,tr.missing,tr.crashed,tr.incomplete{{background:#fdd}}
tr.running,tr.unknown{{background:#ffd}}
tr.skipped,tr.interrupted{{background:#eee}}</style></head><body>
<h1>Table 1</h1><p>Sweeps: {html.escape(', '.join(sources))}</p>
<p>{html.escape(note)}</p>
{tables["table1"]}
<p><img alt="test accuracy per task and arch" src="{_data_uri(figure)}"></p>
{long_section}
<h2>Per (task, layers, heads)</h2>{tables["summary"]}
<h2>Runs ({tables["n_runs"]})</h2>{tables["runs"]}
{tables["details"]}
</body></html>
"""


# --------------------------------------------------------------------------- all files


def _markdown(title: str, note: str, disp: pd.DataFrame, disp_s: pd.DataFrame | None = None,
              rest: pd.DataFrame | None = None, out: Path | None = None) -> str:
    parts = [f"# {title}", "", note, "", to_markdown(disp), ""]
    if disp_s is not None:
        parts += ["## Per (task, layers, heads), over all counted runs", "", to_markdown(disp_s),
                  ""]
    if rest is not None:
        if len(rest):
            rest = rest.drop(columns=["run_dir"]).assign(
                run=[os.path.relpath(p, out) for p in rest["run_dir"]]).astype(object) \
                .fillna("")
        parts += ["## Runs not counted", "", to_markdown(rest), ""]
    return "\n".join(parts)


def _latex(disp: pd.DataFrame, note: str) -> str:
    specials = {"\\": r"\textbackslash{}", "%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#",
                "$": r"\$", "{": r"\{", "}": r"\}"}
    caption = re.sub(r"[\\%_&#${}]", lambda m: specials[m.group()], note)
    tex = disp.map(lambda v: re.sub(r"\*\*(.+?)\*\*", r"\1", str(v)))
    return tex.to_latex(index=False, escape=True, caption=caption,
                        label="tab:table1").replace("±", "$\\pm$").replace("≥", "$\\geq$")


def notes(df: pd.DataFrame, include_interrupted: bool = False,
          solved: float = SOLVED) -> tuple[str, str]:
    """The headers of the test table and of the longer test table: how runs were chosen and
    what each figure is."""
    axes = chosen_among(df, include_interrupted)
    counting = "completed and interrupted" if include_interrupted else "completed"
    pct = f"{100 * solved:g}%"
    spread = (f"Each figure: mean ± half-width of the 95% Student-t interval over replicates "
              f"(none for one), then (k/n: replicates at or above {pct}; min–max); seq: the "
              "same for whole-sequence accuracy.")
    rule = ("the one with the best final validation token accuracy (ties: lower validation "
            "loss); the test split never chooses")
    among = (f"Each replicate's figures are those of its run chosen among its runs that differ "
             f"in {', '.join(axes)}: {rule}." if axes else
             "Each replicate has one run here (among several, differing in lr, gamma or any "
             f"setting but the task, arch and seed, {rule}).")
    choice = (f"A cell is a task and an arch variant; its replicates are its train.seed values. "
              f"{among} Only {counting} runs count; the others are counted by status, never "
              "as accuracy 0.")
    attention = ("Attention: per head of the predicted arch, the match above chance, "
                 "(m - u) / (1 - u) with u the match of uniform attention over the real keys, "
                 "mean over replicates, the raw match in brackets; – where the select picks "
                 "every key (u = 1).")
    no_uniform = pd.Series(math.nan, index=df.index)
    if any((df[f"attention_match.{h}"].notna()
            & df.get(f"attention_uniform.{h}", no_uniform).isna()).any() for h in head_order(df)):
        attention += (" Runs that did not record uniform attention's match (older runs) show "
                      "the raw match only.")
    test = f"Test token accuracy (%). {spread} {choice} {attention}"
    ranges = {}
    if has_long_split(df):
        have = df[df["test_long_acc"].notna()]
        for (lo, hi), tasks in have.groupby(["lengths", "long_lengths"])["task"]:
            ranges[f"trained on lengths {lo}, tested on {hi}"] = sorted(set(tasks))
    where = "; ".join(f"{k} ({', '.join(v)})" if len(ranges) > 1 else k
                      for k, v in ranges.items())
    long = (f"Length generalization: token accuracy (%) on the test_long split, longer than "
            f"any training sequence: {where}. {spread} {choice} The run of each replicate is "
            "chosen on the validation split, at the training lengths.")
    return test, long


def write_report(df: pd.DataFrame, out_dir: str | os.PathLike, sources: Sequence[str] = (),
                 include_interrupted: bool = False, self_contained: bool = False,
                 solved: float = SOLVED) -> dict[str, Path]:
    """Write every output file into ``out_dir`` (created) and return {kind: path}.

    ``self_contained``: the HTML page embeds each run's curves and links only to anchors
    inside itself; otherwise its per-run links are relative to ``out_dir``. When runs have
    a "test_long" split, ``table1_long.md``/``.csv``/``.png`` too, and a section in the page.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    here = out.resolve()  # links are computed from where the page really is
    t1 = table1(df, include_interrupted, solved)
    s = summary(df, include_interrupted)
    disp, disp_s = display_table1(t1, include_interrupted), display_summary(s)
    note, long_note = notes(df, include_interrupted, solved)
    title = ", ".join(sources) or out.name

    names = {"runs_csv": "runs.csv", "table1_csv": "table1.csv", "summary_csv": "summary.csv",
             "table1_md": "table1.md", "table1_tex": "table1.tex", "figure": "table1.png",
             "html": "index.html"}
    long = has_long_split(df)
    if long:
        names.update(long_csv="table1_long.csv", long_md="table1_long.md",
                     long_figure="table1_long.png")
    files = {k: out / v for k, v in names.items()}
    df.to_csv(files["runs_csv"], index=False)
    t1.to_csv(files["table1_csv"], index=False)
    s.to_csv(files["summary_csv"], index=False)
    files["table1_md"].write_text(_markdown(
        f"Table 1: {title}", note, disp, disp_s, not_counted_runs(df, include_interrupted),
        here))
    files["table1_tex"].write_text(_latex(disp, note))
    plot_table1(t1, df, files["figure"], include_interrupted)
    long_html = None
    if long:
        t1_long = table1(df, include_interrupted, solved, split="test_long")
        disp_long = display_table1(t1_long, include_interrupted, split="test_long")
        t1_long.to_csv(files["long_csv"], index=False)
        files["long_md"].write_text(_markdown(f"Table 1 on longer inputs: {title}", long_note,
                                              disp_long))
        plot_table1(t1_long, df, files["long_figure"], include_interrupted, split="test_long")
        long_html = (long_note, _html_table(disp_long), files["long_figure"].read_bytes())
    tables = {"table1": _html_table(disp), "summary": _html_table(disp_s), "n_runs": len(df),
              "runs": _runs_html(df, here, self_contained),
              "details": _run_sections(df) if self_contained else ""}
    files["html"].write_text(_html_page(out.name, sources, note, tables,
                                        files["figure"].read_bytes(), long_html))
    return files
