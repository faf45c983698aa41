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
import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from rasp_hydra import runs
from rasp_hydra.report.collect import EPOCH_FOR_VAL
from rasp_hydra.report.tables import (
    STATUS_ORDER,
    counted,
    not_counted_runs,
    status_counts,
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


def _arch_cell(r: pd.Series, arch: str, runs_of_arch: pd.DataFrame,
               include_interrupted: bool) -> str:
    if not r[f"{arch}.runs"]:
        return ""
    lh = f"{_int(r[f'{arch}.layers'])}L{_int(r[f'{arch}.heads'])}H"
    if r[f"{arch}.n"]:
        spread = (f"{_pct(r[f'{arch}.mean'])} ± {_pct(r[f'{arch}.std'])}"
                  if r[f"{arch}.n"] > 1 else _pct(r[f"{arch}.mean"]))
        cell = (f"{lh}: **{_pct(r[f'{arch}.best'])}** ({spread}, n={r[f'{arch}.n']}) "
                f"seq {_pct(r[f'{arch}.seq_acc'])}")
    else:
        cell = f"{lh}: –"
    not_counted = {s: n for s, n in status_counts(runs_of_arch).items()
                   if n and s != "completed"}
    if include_interrupted and "interrupted" in not_counted:
        not_counted["interrupted (counted)"] = not_counted.pop("interrupted")
    if not_counted:
        cell += " [" + ", ".join(f"{n} {s}" for s, n in not_counted.items()) + "]"
    return cell


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
            out[arch] = _arch_cell(r, arch, t[t["arch"] == arch], include_interrupted)
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
            good = a[ok.loc[a.index]]
            if len(good):
                ax.plot([x] * len(good), 100 * good["test_acc"], "k.", ms=4)
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
               figure: bytes) -> str:
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
<h2>Per (task, layers, heads)</h2>{tables["summary"]}
<h2>Runs ({tables["n_runs"]})</h2>{tables["runs"]}
{tables["details"]}
</body></html>
"""


# --------------------------------------------------------------------------- all files


def _markdown(title: str, note: str, disp: pd.DataFrame, disp_s: pd.DataFrame,
              rest: pd.DataFrame, out: Path) -> str:
    if len(rest):
        rest = rest.drop(columns=["run_dir"]).assign(
            run=[os.path.relpath(p, out) for p in rest["run_dir"]]).astype(object).fillna("")
    return "\n".join([
        f"# Table 1: {title}", "", note, "", to_markdown(disp), "",
        "## Per (task, layers, heads)", "", to_markdown(disp_s), "",
        "## Runs not counted", "", to_markdown(rest), ""])


def _latex(disp: pd.DataFrame, note: str) -> str:
    specials = {"\\": r"\textbackslash{}", "%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#",
                "$": r"\$", "{": r"\{", "}": r"\}"}
    caption = re.sub(r"[\\%_&#${}]", lambda m: specials[m.group()], note)
    tex = disp.map(lambda v: re.sub(r"\*\*(.+?)\*\*", r"\1", str(v)))
    return tex.to_latex(index=False, escape=True, caption=caption,
                        label="tab:table1").replace("±", "$\\pm$")


def write_report(df: pd.DataFrame, out_dir: str | os.PathLike, sources: Sequence[str] = (),
                 include_interrupted: bool = False,
                 self_contained: bool = False) -> dict[str, Path]:
    """Write every output file into ``out_dir`` (created) and return {kind: path}.

    ``self_contained``: the HTML page embeds each run's curves and links only to anchors
    inside itself; otherwise its per-run links are relative to ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    here = out.resolve()  # links are computed from where the page really is
    t1 = table1(df, include_interrupted)
    s = summary(df, include_interrupted)
    disp, disp_s = display_table1(t1, df, include_interrupted), display_summary(s)
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
    files["table1_md"].write_text(_markdown(
        ", ".join(sources) or out.name, note, disp, disp_s,
        not_counted_runs(df, include_interrupted), here))
    files["table1_tex"].write_text(_latex(disp, note))
    plot_table1(t1, df, files["figure"], include_interrupted)
    tables = {"table1": _html_table(disp), "summary": _html_table(disp_s), "n_runs": len(df),
              "runs": _runs_html(df, here, self_contained),
              "details": _run_sections(df) if self_contained else ""}
    files["html"].write_text(_html_page(out.name, sources, note, tables,
                                        files["figure"].read_bytes()))
    return files
