"""Writers: Table 1 and the runs as Markdown, CSV, LaTeX, a PNG figure and one HTML page.

`write_report` writes every file of the report folder, with the headers that say how runs
were chosen (`notes`); the tables' strings come from ``text``, the figure from ``figure``,
the page from ``page``. Its one reason to change: which files a report holds.

Accuracies are fractions in the CSV files and percentages everywhere a person reads them.
The HTML page's links are relative to the report folder (computed when it is written), so
the report and the sweeps it reads can be moved together; with ``self_contained`` the page
links nothing outside itself: each run's curves are embedded and its row links to an
anchor in the page, so the one file can be mailed or attached.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from rasp_hydra.report.figure import plot_table1
from rasp_hydra.report.page import html_page, html_table, run_sections, runs_html
from rasp_hydra.report.tables import (
    SOLVED,
    chosen_among,
    has_long_split,
    head_order,
    not_counted_runs,
    summary,
    table1,
)
from rasp_hydra.report.text import display_summary, display_table1, to_markdown


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
        long_html = (long_note, html_table(disp_long), files["long_figure"].read_bytes())
    tables = {"table1": html_table(disp), "summary": html_table(disp_s), "n_runs": len(df),
              "runs": runs_html(df, here, self_contained),
              "details": run_sections(df) if self_contained else ""}
    files["html"].write_text(html_page(out.name, sources, note, tables,
                                        files["figure"].read_bytes(), long_html))
    return files
