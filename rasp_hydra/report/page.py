"""The report's HTML page: the tables, the figures embedded, one row per run with links
relative to the report folder (or, self-contained, to a section per run with its curves
embedded). Its one reason to change: how the page looks and links.
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
from rasp_hydra.report.text import int_text, pct


def html_table(frame: pd.DataFrame) -> str:
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
            v = pct(v, 2)
        elif not isinstance(v, str) and pd.isna(v):
            v = ""
        elif c in ("trial", "layers", "heads", "d_model", "epochs_run"):
            v = int_text(v)
        cells.append(f"<td>{html.escape(str(v))}</td>")
    return cells


def _run_links(r: pd.Series, anchor: str, out: Path, self_contained: bool) -> str:
    run = Path(r["run_dir"])
    if self_contained:
        links = [f'<a href="#{anchor}">{html.escape(run.name)}</a>']
    elif run.is_dir():
        links = [f'<a href="{_href(run, out)}/">{html.escape(run.name)}</a>']
        links += [f'<a href="{_href(f, out)}">{html.escape(f.name)}</a>'
                  for f in runs.RunDir(run).files()]
    else:  # a missing job: nothing to link to
        links = [html.escape(run.name)]
    if r["status"] != "completed" and isinstance(r.get("reason"), str):
        links.append(html.escape(r["reason"]))
    return " ".join(links)


def runs_html(df: pd.DataFrame, out: Path, self_contained: bool) -> str:
    cols = (["trial"] if "trial" in df.columns else []) + list(RUN_COLUMNS)
    head = "".join(f"<th>{c}</th>" for c in cols + ["run"])
    body = []
    for i, (_, r) in enumerate(df.iterrows()):
        cells = _run_cells(r) + [f"<td>{_run_links(r, f'run-{i}', out, self_contained)}</td>"]
        body.append(f'<tr class="{html.escape(str(r["status"]))}">{"".join(cells)}</tr>')
    return f'<table class="t"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def run_sections(df: pd.DataFrame) -> str:
    """One section per run, its anchor the target of the runs table's link: what it is,
    why it did not complete, and its curves embedded."""
    parts = []
    for i, (_, r) in enumerate(df.iterrows()):
        title = " · ".join(html.escape(str(r.get(c))) for c in ("task", "arch", "status"))
        facts = (f"lr {r.get('lr')}, gamma {r.get('gamma')}, test token accuracy "
                 f"{pct(r.get('test_acc'), 2)} (sequence {pct(r.get('test_seq_acc'), 2)}), "
                 f"{int_text(r.get('epochs_run'))} epochs")
        run = Path(r["run_dir"])
        parts.append(f'<section id="run-{i}"><h3>{html.escape(run.parent.name)}/'
                     f"{html.escape(run.name)}: {title}</h3>"
                     f"<p><code>{html.escape(str(r['run_dir']))}</code></p>"
                     f"<p>{html.escape(facts)}</p>")
        for key in ("reason", "error"):
            if isinstance(r.get(key), str):
                parts.append(f"<pre>{html.escape(r[key])}</pre>")
        curves = runs.RunDir(r["run_dir"]).curves()
        if curves is not None:
            parts.append(f'<img alt="curves of {html.escape(run.name)}" '
                         f'src="{_data_uri(curves.read_bytes())}">')
        parts.append("</section>")
    return "<h2>Run details</h2>" + "".join(parts)


def html_page(title: str, sources: Sequence[str], note: str, tables: dict[str, str],
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
tr.running,tr.unknown,tr.unreadable{{background:#ffd}}
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
