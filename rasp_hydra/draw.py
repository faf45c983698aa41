"""Attention heatmaps from a run directory: ``python -m rasp_hydra.draw RUN_DIR --sequence abcde``.

Loads the run's best checkpoint (or the last one when the run is unfinished or was cut
short, and says which), runs one input sequence (BOS added when the task has it) and
writes, under ``RUN_DIR/maps/<sequence>/``:

- ``attention_layer{L}.png``: one heatmap per head of the attention probabilities (query
  rows, key columns, both labelled with the tokens, colorbar). Heads with a target or
  reference selector (``task.selector_heads``) get the selector drawn below them, so a
  trained head and the RASP selector it should follow sit in one column;
- ``scores_layer{L}.png``: the same for the pre-softmax scores (scaled q.k);
- ``in_out.txt``: the run, its config in one line, epochs run, test accuracy (or "not
  finished"), the input, the model's output, the task's correct output and each selector
  head's attention match on this sequence, raw and above chance (``runs.match_above_chance``;
  "-" for a select that picks every key), also printed.

``--numbers 2`` overlays the values with two decimals; ``--all`` draws every run below a
sweep directory. A task whose vocabulary is numbers or words (a RASP program over
``tokens_int``, ``tasks.program``) takes its tokens separated by spaces or commas
(``--sequence "10 2 33"``), labels the axes with them and draws under ``maps/10_2_33/``.
Directory names escape every character outside ``[A-Za-z0-9_-]`` as
``%XX`` (the 100-token alphabet holds ``/``, ``\\``, whitespace, ...), and names that
could collide on a case-insensitive file system (upper-case letters) or are too long get a
short hash suffix. Figures stay readable up to length 100: they grow with the sequence
and tick labels thin out to every k-th token; whitespace tokens are shown escaped
(``␣``, ``\\t``, ``\\n``, ...).

From Python::

    from rasp_hydra.draw import draw_run
    out = draw_run("outputs/runs/DATE/TIME", "abcde", numbers=2)
    out["files"]["attention"], out["record"]["output"]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from rasp_hydra import runs
from rasp_hydra.config import dotted  # the run's saved config.yaml is a raw DictConfig

IN_OUT = "in_out.txt"
MAX_TICKS = 40  # at most this many labelled ticks per axis; beyond, every k-th token
MAX_NAME = 100  # longest escaped sequence kept whole in a directory name
VISIBLE = {" ": "␣", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x0b": "\\v", "\x0c": "\\f"}
SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class DrawError(Exception):
    """A problem with the drawer's input, shown to the user as one paragraph (exit code 2)."""


# ----------------------------------------------------------------------------- names

def token_label(tok: str) -> str:
    """A token as it is shown in figures and in_out.txt: whitespace made visible."""
    return VISIBLE.get(tok, tok)


def visible(sequence: str) -> str:
    return "".join(token_label(c) for c in sequence)


def safe_name(sequence: str, spaced: bool = False) -> str:
    """A file-system-safe, injective directory name for a sequence.

    ``[A-Za-z0-9_-]`` stay as they are; every other character becomes ``%XX`` (or
    ``%uXXXX``) of its code point. A name with upper-case letters (which a
    case-insensitive file system would merge with its lower-case twin) or longer than
    MAX_NAME characters gets ``~`` and 8 hex digits of the sequence's SHA-1 appended
    (and is cut to MAX_NAME first). ``spaced``: the sequence is tokens separated by
    single spaces (a vocabulary of numbers or words), written joined by ``_`` ("10 2 33"
    -> ``10_2_33``), and a ``_`` inside a token is escaped.
    """
    if not sequence:
        raise ValueError("empty sequence")
    name, cut = "", False
    for c in sequence:
        keep = c in SAFE and not (spaced and c == "_")
        part = ("_" if spaced and c == " " else c if keep else f"%{ord(c):02X}"
                if ord(c) < 256 else f"%u{ord(c):04X}")
        if len(name) + len(part) > MAX_NAME:  # cut between characters, never in an escape
            cut = True
            break
        name += part
    if cut or any(c.isupper() for c in sequence):
        name += "~" + hashlib.sha1(sequence.encode("utf-8")).hexdigest()[:8]
    return name


# ---------------------------------------------------------------------------- run info

def config_summary(model_cfg, run_cfg, metrics: dict, short: bool = False) -> str:
    """The run's config in one line (``short``: for figure titles)."""
    lr = dotted(run_cfg, "optimizer.lr", metrics.get("lr"))
    gamma = dotted(run_cfg, "schedule.gamma", metrics.get("gamma"))
    arch = dotted(run_cfg, "arch.name", metrics.get("arch"))
    if short:
        out = f"L{model_cfg.layers} H{model_cfg.heads} d{model_cfg.d_model}"
        out += f" lr {lr:g}" if lr is not None else ""
        out += f" γ {gamma:g}" if gamma is not None else ""
        return out + (f" ({arch})" if arch else "")
    items = [("layers", model_cfg.layers), ("heads", model_cfg.heads),
             ("d_model", model_cfg.d_model), ("ff", model_cfg.ff),
             ("dropout", model_cfg.dropout), ("positions", model_cfg.positions.value),
             ("max_len", model_cfg.max_len), ("arch", arch),
             ("optimizer", dotted(run_cfg, "optimizer.name", metrics.get("optimizer"))),
             ("lr", lr), ("gamma", gamma),
             ("epochs", dotted(run_cfg, "train.epochs")),
             ("batch_size", dotted(run_cfg, "train.batch_size", metrics.get("batch_size"))),
             ("attn_loss_c", dotted(run_cfg, "train.attn_loss_c", metrics.get("attn_loss_c"))),
             ("seed", dotted(run_cfg, "train.seed", metrics.get("seed"))),
             ("train_size", dotted(run_cfg, "lang.train_size")),
             ("lengths", None if dotted(run_cfg, "lang.max_len") is None else
              f"{dotted(run_cfg, 'lang.min_len', 1)}-{dotted(run_cfg, 'lang.max_len')}")]
    return " ".join(f"{k}={v}" for k, v in items if v is not None)


def _test_accuracy(metrics: dict) -> tuple[float | None, str]:
    status = metrics.get("status") or "unknown (no metrics.json)"
    test = (metrics.get("final") or {}).get("test") or {}
    if "token_acc" not in test:
        return None, f"not finished (status {status})"
    seq = test.get("seq_acc", float("nan"))
    text = f"{test['token_acc']:.4f} per token, {seq:.4f} per sequence"
    if status != "completed":
        text += f" (status {status}: a partly trained model)"
    return float(test["token_acc"]), text


def _load(run_dir: Path, which: str):
    try:
        return runs.open_model(run_dir, which, "draw", "add --all to draw every one")
    except runs.NoModelError as e:
        raise DrawError(str(e)) from None


def input_tokens(task, sequence) -> list:
    """The sequence's tokens without BOS: characters, or for a vocabulary of numbers or
    words the pieces between spaces or commas; a list as it is."""
    from rasp_hydra.tasks import BOS

    tokens = task.split(sequence)
    return tokens[1:] if task.bos and tokens[:1] == [BOS] else tokens


def _check_sequence(task, model, sequence, run_cfg) -> list[str]:
    from rasp_hydra.tasks import BOS

    notes = []
    body = input_tokens(task, sequence)
    if not body:
        raise DrawError("The sequence is empty: give at least one token, e.g. --sequence "
                        f"{task.words(task.alphabet[:5])!r}.")
    key = str if task.spaced else (lambda c: c)
    known = {key(c) for c in task.alphabet}
    bad = list(dict.fromkeys(c for c in body if key(c) not in known))
    if bad:
        shown = (f"{task.words(task.alphabet, cut=True)} (write the tokens separated by "
                 "spaces or commas)" if task.spaced else repr(task.alphabet))
        raise DrawError(
            f"{', '.join(repr(c) for c in bad)} {'is' if len(bad) == 1 else 'are'} not in the "
            f"alphabet of {task.name}, which has {len(task.alphabet)} tokens: "
            f"{shown}" + (f" (BOS {BOS!r} is added by the drawer)." if task.bos else "."))
    n = len(body) + int(task.bos)
    limit = model.cfg.max_len
    if n > limit:
        raise DrawError(
            f"The sequence has {len(body)} tokens" + (" (+ BOS)" if task.bos else "")
            + f" but the model covers at most {limit} positions"
            + (" (BOS included)" if task.bos else "") + f"; give at most "
            f"{limit - int(task.bos)} tokens.")
    trained = dotted(run_cfg, "lang.max_len")
    if trained is not None and len(body) > int(trained):
        notes.append(f"the sequence is longer than the training sequences (at most "
                     f"{trained} tokens): the model has not seen such lengths")
    return notes


# ------------------------------------------------------------------------------ compute

def run_sequence(model, task, sequence) -> dict:
    """Run one sequence (a string or a list of tokens): tokens (with BOS, as labels),
    output and correct output class lists (and their values: ``output_values``,
    ``correct_values``),
    attention and scores per layer as numpy [H, n, n], selectors {(L, H): bool [n, n]}
    for selector heads the model has, and attention match per head with the match uniform
    attention would score (its chance level)."""
    import torch

    from rasp_hydra.train import attention_terms, present_heads

    tokens, lengths = task.encode([sequence])
    with torch.no_grad():
        logits, attn, scores = model(tokens, lengths, need_attention=True)
        pred = logits.argmax(-1)
        correct = task.outputs(tokens, lengths)
        heads = present_heads(task.selector_heads, model.cfg)
        sels = task.selectors(tokens, lengths, heads) if heads else {}
        match, uniform = {}, {}
        if heads:
            t = attention_terms(task, tokens, lengths, attn, heads, False, True)
            rows = max(float(t["rows"]), 1.0)
            match = {h: float(m) / rows for h, m in zip(heads, t["match"].tolist(),
                                                           strict=True)}
            uniform = {h: float(u) / rows for h, u in zip(heads, t["uniform"].tolist(),
                                                             strict=True)}
    return {
        "tokens": [str(t) for t in task.decode_tokens(tokens, lengths)[0]],
        "output": task.decode_outputs(pred, lengths)[0],
        "correct": task.decode_outputs(correct, lengths)[0],
        "output_values": task.decode_values(pred, lengths)[0],
        "correct_values": task.decode_values(correct, lengths)[0],
        "attention": [a[0].float().numpy() for a in attn],
        "scores": [s[0].float().numpy() for s in scores],
        "selectors": {h: s[0].numpy() for h, s in sels.items()},
        "match": match,
        "uniform": uniform,
        "missing_heads": tuple(h for h in task.selector_heads if h not in heads),
    }


# ------------------------------------------------------------------------------ figures

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
        tmp = path.with_name(f".{path.stem}.tmp.png")
        fig.savefig(tmp, dpi=_dpi(n, numbers))
        tmp.replace(path)
    return path


# ------------------------------------------------------------------------------ one run

def in_out_text(rec: dict) -> str:
    def toks(xs):
        return " ".join(token_label(x) for x in xs)

    lines = [
        f"run: {rec['run_dir']}",
        f"task: {rec['task']}",
        f"config: {rec['config']}",
        f"status: {rec['status']}; epochs run: {rec['epochs_run']}",
        f"checkpoint: {rec['checkpoint']} (epoch {rec['checkpoint_epoch']}; {rec['why']})",
        f"test accuracy: {rec['test_text']}",
        f"input: {rec['input']!r}",
        f"tokens:  {toks(rec['tokens'])}",
        f"output:  {toks(rec['output'])}",
        f"correct: {toks(rec['correct'])}",
        f"output is {'correct' if rec['output_ok'] else 'wrong'}: "
        f"{rec['tokens_right']}/{len(rec['correct'])} tokens right",
    ]
    if rec["attention_match"]:
        lines.append("attention match on this sequence (mean attention on selected keys), "
                     "above chance ((match - u) / (1 - u), u: the match of uniform attention "
                     "over the real keys; - where the select picks every key):")
        for key, v in rec["attention_match"].items():
            above = rec["attention_above_chance"].get(key)
            lines.append(f"  layer {key.split(',')[0]} head {key.split(',')[1]} "
                         f"({rec['selector_names'].get(key, '')}): "
                         f"{'-' if above is None else f'{above:.4f}'} above chance "
                         f"(match {v:.4f}, u {rec['attention_uniform'][key]:.4f})")
    else:
        lines.append("attention match: none (the task has no selector for this model's heads)")
    lines += [f"note: {n}" for n in rec["notes"]]
    return "\n".join(lines) + "\n"


def draw_run(run_dir, sequence, numbers: int | None = None, which: str = "auto",
             out_dir=None, maps_dir=None) -> dict:
    """Draw one run on one sequence; returns {"dir", "files": {"attention": [...],
    "scores": [...], "in_out": path}, "record": dict, "text": in_out.txt's text}.

    The files go to `out_dir`, else to `maps_dir`/<sequence>/ (default RUN_DIR/maps).
    Raises DrawError for a directory without a run or checkpoint, a token outside the
    alphabet, a sequence longer than the model's max_len, or a folder that cannot be
    written (a read-only run: give maps_dir, the command line's --out).
    """
    run_dir = Path(run_dir)
    if numbers is not None and not 0 <= int(numbers) <= 6:
        raise DrawError(f"--numbers gives the decimals to overlay, 0 to 6; got {numbers}.")
    model, task, run_cfg, used = _load(run_dir, which)
    notes = _check_sequence(task, model, sequence, run_cfg)
    metrics = runs.read_metrics(run_dir)
    status = metrics.get("status", "unknown")
    if which == "auto":
        why = ("auto: the run completed" if used == "best" and status == "completed" else
               f"auto: the run is {status}" if used == "last" else
               f"auto: the run is {status} and has no last checkpoint")
    else:
        why = f"asked for {which}"
    r = run_sequence(model, task, sequence)
    test_acc, test_text = _test_accuracy(metrics)
    refs = set(getattr(task, "reference_heads", ()))
    names = {runs.head_key(h): n + (", reference" if h in refs else ", target")
             for h, n in getattr(task, "selector_names", {}).items()}
    for h in r["missing_heads"]:
        notes.append(f"the task has a selector for layer {h[0]} head {h[1]}, which this "
                     f"model ({model.cfg.layers} layers, {model.cfg.heads} heads) lacks")
    body = task.words(input_tokens(task, sequence))  # "abc", or "10 2 33"
    right = sum(a == b for a, b in zip(r["output"], r["correct"], strict=True))
    rec = {
        "run_dir": str(run_dir), "task": task.name,
        "config": config_summary(model.cfg, run_cfg, metrics),
        "status": status, "epochs_run": metrics.get("epochs_run"),
        "checkpoint": used, "checkpoint_epoch": runs.checkpoint_epoch(run_dir, used), "why": why,
        "test_acc": test_acc, "test_text": test_text,
        "input": body, "tokens": r["tokens"], "output": r["output"], "correct": r["correct"],
        "output_ok": r["output"] == r["correct"], "tokens_right": right,
        "attention_match": {runs.head_key(h): v for h, v in r["match"].items()},
        "attention_uniform": {runs.head_key(h): v for h, v in r["uniform"].items()},
        "attention_above_chance": {runs.head_key(h): runs.match_above_chance(v, r["uniform"][h])
                                   for h, v in r["match"].items()},
        "selector_names": names, "notes": notes,
    }
    maps = Path(maps_dir) if maps_dir is not None else run_dir / runs.MAPS
    out = Path(out_dir) if out_dir is not None else maps / safe_name(body, spaced=task.spaced)
    summary = config_summary(model.cfg, run_cfg, metrics, short=True)
    sel_names = getattr(task, "selector_names", {})
    files = {"attention": [], "scores": []}
    text = in_out_text(rec)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for layer in range(model.cfg.layers):
            for kind, values in (("attention", r["attention"][layer]),
                                 ("scores", r["scores"][layer])):
                files[kind].append(draw_layer(
                    out / f"{kind}_layer{layer}.png", kind, layer, values, r["tokens"], task,
                    summary, body, r["selectors"], sel_names, r["match"], numbers))
        files["in_out"] = out / IN_OUT
        files["in_out"].write_text(text, encoding="utf-8")
    except OSError as e:  # a read-only run, a full disk, no permission
        import errno
        import os

        why = "is on a read-only file system" if e.errno == errno.EROFS else (
            f"cannot be written ({os.strerror(e.errno) if e.errno else e})")
        raise DrawError(
            f"the figures cannot be written to {out}: {e.filename or out} {why}. Give a "
            "folder you can write with --out DIR (from Python: maps_dir=DIR); the figures "
            "then go to DIR/<sequence>/, and the run itself is only read.") from None
    return {"dir": out, "files": files, "record": rec, "text": text}


# ------------------------------------------------------------------------------ sweeps

def draw_all(root, sequence: str, numbers: int | None = None, which: str = "auto",
             echo=print, maps_dir=None) -> dict:
    """Draw every run below ``root``; runs without a checkpoint or that fail are listed.
    ``maps_dir``: figures under maps_dir/<run's path below root>/<sequence>/ instead of
    each RUN_DIR/maps/. Returns {"drawn": [draw_run results], "passed": [(run_dir, why)]}."""
    root = Path(root)
    if not root.is_dir():
        raise DrawError(f"{root} is not a directory. Give a sweep directory "
                        "(e.g. outputs/multirun/DATE/TIME) or a run directory.")
    found = runs.find_runs(root)
    if not found:
        raise DrawError(f"{root} holds no run: no directory below it has .hydra/config.yaml "
                        "or metrics.json. Give a sweep directory such as "
                        "outputs/multirun/DATE/TIME.")
    drawn, passed = [], []
    for run_dir in found:
        try:
            res = draw_run(run_dir, sequence, numbers, which, maps_dir=None if maps_dir is None
                           else Path(maps_dir) / Path(run_dir).relative_to(root))
        except DrawError as e:
            passed.append((run_dir, str(e)))
            echo(f"passed over {run_dir}: {e}")
            continue
        drawn.append(res)
        echo(res["text"] + f"figures: {res['dir']}\n")
    return {"drawn": drawn, "passed": passed}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rasp_hydra.draw",
        description="Draw attention heatmaps (and pre-softmax scores and RASP selectors) of a "
                    "trained run on one sequence, under RUN_DIR/maps/<sequence>/.")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory (or, with --all, a sweep directory)")
    parser.add_argument("--sequence", required=True,
                        help="input tokens from the task's alphabet, e.g. abcde, or "
                             "'10 2 33' (separated by spaces or commas) for a vocabulary of "
                             "numbers or words; BOS is added when the task has it")
    parser.add_argument("--numbers", type=int, metavar="DECIMALS", default=None,
                        help="overlay the values with this many decimals, e.g. 2")
    parser.add_argument("--which", choices=("auto", "best", "last"), default="auto",
                        help="checkpoint: best, last, or auto (best if the run completed, "
                             "else last); default auto")
    parser.add_argument("--all", action="store_true",
                        help="draw every run below RUN_DIR (a sweep directory)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="write the figures under DIR/<sequence>/ (with --all, "
                             "DIR/<run>/<sequence>/) instead of RUN_DIR/maps/, e.g. for a "
                             "run you cannot write")
    args = parser.parse_args(argv)
    try:
        if args.all:
            res = draw_all(args.run_dir, args.sequence, args.numbers, args.which,
                           maps_dir=args.out)
            print(f"drew {len(res['drawn'])} runs, passed over {len(res['passed'])}")
            if not res["drawn"]:
                raise DrawError(f"no run below {args.run_dir} could be drawn (see above).")
        else:
            res = draw_run(args.run_dir, args.sequence, args.numbers, args.which,
                           maps_dir=args.out)
            print(res["text"], end="")
            print(f"figures: {res['dir']} ("
                  + ", ".join(p.name for k in ("attention", "scores")
                              for p in res["files"][k]) + ", in_out.txt)")
    except DrawError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
