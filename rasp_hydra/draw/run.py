"""One run on one sequence: load its model (the checkpoint chosen and why), check the
sequence, run it, and gather what in_out.txt says (config, accuracy, output, attention
match); then draw it, or every run below a sweep directory. Its one reason to change: what
is read from a run and what is drawn of it.
"""

from __future__ import annotations

from pathlib import Path

from rasp_hydra import runs
from rasp_hydra.draw.figures import draw_layer
from rasp_hydra.draw.names import safe_name, token_label
from rasp_hydra.errors import UserError

IN_OUT = "in_out.txt"


class DrawError(UserError):
    """A problem with the drawer's input, shown to the user as one paragraph (exit code 2)."""


# ---------------------------------------------------------------------------- run info

def config_summary(model_cfg, run_cfg, metrics: dict, short: bool = False) -> str:
    """The run's config in one line (``short``: for figure titles); `run_cfg` is the run's
    typed config.Config, None for a run without one (its record says what it can)."""
    if run_cfg is None:
        lr, gamma, arch = metrics.get("lr"), metrics.get("gamma"), metrics.get("arch")
        optimizer, epochs, batch_size = metrics.get("optimizer"), None, metrics.get("batch_size")
        attn_loss_c, seed = metrics.get("attn_loss_c"), metrics.get("seed")
        train_size = lengths = None
    else:
        lr, gamma = run_cfg.optimizer.lr, run_cfg.schedule.gamma
        arch = None if run_cfg.arch is None else run_cfg.arch.name.value
        optimizer, epochs = run_cfg.optimizer.name.value, run_cfg.train.epochs
        batch_size, attn_loss_c = run_cfg.train.batch_size, run_cfg.train.attn_loss_c
        seed, train_size = run_cfg.train.seed, run_cfg.lang.train_size
        lengths = f"{run_cfg.lang.min_len}-{run_cfg.lang.max_len}"
    if short:
        out = f"L{model_cfg.layers} H{model_cfg.heads} d{model_cfg.d_model}"
        out += f" lr {lr:g}" if lr is not None else ""
        out += f" γ {gamma:g}" if gamma is not None else ""
        return out + (f" ({arch})" if arch else "")
    items = [("layers", model_cfg.layers), ("heads", model_cfg.heads),
             ("d_model", model_cfg.d_model), ("ff", model_cfg.ff),
             ("dropout", model_cfg.dropout), ("positions", model_cfg.positions.value),
             ("max_len", model_cfg.max_len), ("arch", arch), ("optimizer", optimizer),
             ("lr", lr), ("gamma", gamma), ("epochs", epochs), ("batch_size", batch_size),
             ("attn_loss_c", attn_loss_c), ("seed", seed), ("train_size", train_size),
             ("lengths", lengths)]
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
    trained = None if run_cfg is None else run_cfg.lang.max_len
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
    rd = runs.RunDir(run_dir)
    run_dir = rd.path
    if numbers is not None and not 0 <= int(numbers) <= 6:
        raise DrawError(f"--numbers gives the decimals to overlay, 0 to 6; got {numbers}.")
    model, task, run_cfg, used = _load(run_dir, which)
    notes = _check_sequence(task, model, sequence, run_cfg)
    metrics = rd.record()
    status = metrics.get("status", "unknown")
    why = _why(which, used, status)
    body = task.words(input_tokens(task, sequence))  # "abc", or "10 2 33"
    maps = Path(maps_dir) if maps_dir is not None else rd.maps
    out = Path(out_dir) if out_dir is not None else maps / safe_name(body, spaced=task.spaced)
    if maps_dir is None and out_dir is None:
        _refuse_links(rd, out, model.cfg.layers)
    r = run_sequence(model, task, sequence)
    test_acc, test_text = _test_accuracy(metrics)
    refs = set(getattr(task, "reference_heads", ()))
    names = {runs.head_key(h): n + (", reference" if h in refs else ", target")
             for h, n in getattr(task, "selector_names", {}).items()}
    for h in r["missing_heads"]:
        notes.append(f"the task has a selector for layer {h[0]} head {h[1]}, which this "
                     f"model ({model.cfg.layers} layers, {model.cfg.heads} heads) lacks")
    right = sum(a == b for a, b in zip(r["output"], r["correct"], strict=True))
    rec = {
        "run_dir": str(run_dir), "task": task.name,
        "config": config_summary(model.cfg, run_cfg, metrics),
        "status": status, "epochs_run": metrics.get("epochs_run"),
        "checkpoint": used, "checkpoint_epoch": rd.checkpoint_epoch(used), "why": why,
        "test_acc": test_acc, "test_text": test_text,
        "input": body, "tokens": r["tokens"], "output": r["output"], "correct": r["correct"],
        "output_ok": r["output"] == r["correct"], "tokens_right": right,
        "attention_match": {runs.head_key(h): v for h, v in r["match"].items()},
        "attention_uniform": {runs.head_key(h): v for h, v in r["uniform"].items()},
        "attention_above_chance": {runs.head_key(h): runs.match_above_chance(v, r["uniform"][h])
                                   for h, v in r["match"].items()},
        "selector_names": names, "notes": notes,
    }
    summary = config_summary(model.cfg, run_cfg, metrics, short=True)
    text = in_out_text(rec)
    files = _write(out, r, task, model.cfg.layers, summary, body, numbers, text)
    return {"dir": out, "files": files, "record": rec, "text": text}


def figure_path(out: Path, kind: str, layer: int) -> Path:
    """Where one layer's "attention" or "scores" figure goes in a sequence's folder."""
    return out / f"{kind}_layer{layer}.png"


def _refuse_links(rd, out: Path, layers: int) -> None:
    """DrawError if maps/, the sequence's folder or one of its files inside the run
    directory is a symlink: a figure saved there would land elsewhere (another run's
    maps). Asked before the model runs, so nothing is written."""
    paths = [out / IN_OUT, *(figure_path(out, kind, layer) for layer in range(layers)
                             for kind in ("attention", "scores"))]
    links = rd.links_among(paths)
    if links:
        raise DrawError(
            f"{rd.path} holds symlinks where the drawer writes its figures "
            f"({rd.links_text(links)}): the drawer writes only inside the run directory, and "
            "through a link it would change files elsewhere, so nothing was written. Replace "
            "each link by a copy of what it points to or remove it, or give another folder "
            "with --out DIR (from Python: maps_dir=DIR).")


def _why(which: str, used: str, status: str) -> str:
    """Why this checkpoint was drawn, as in_out.txt says it."""
    if which == "auto":
        return ("auto: the run completed" if used == "best" and status == "completed" else
                f"auto: the run is {status}" if used == "last" else
                f"auto: the run is {status} and has no last checkpoint")
    return f"asked for {which}"


def _write(out: Path, r: dict, task, layers: int, summary: str, body: str,
           numbers: int | None, text: str) -> dict:
    """The figures of every layer and in_out.txt under `out`; DrawError if it cannot be
    written."""
    import os

    from rasp_hydra.runs.files import tmp_path

    sel_names = getattr(task, "selector_names", {})
    files = {"attention": [], "scores": []}
    made = [d for d in (out, *out.parents) if not d.exists()]  # folders this call creates
    new = []  # the files this call writes that were not there before
    try:
        out.mkdir(parents=True, exist_ok=True)
        for layer in range(layers):
            for kind, values in (("attention", r["attention"][layer]),
                                 ("scores", r["scores"][layer])):
                path = figure_path(out, kind, layer)
                new += [] if path.exists() else [path]
                files[kind].append(draw_layer(
                    path, kind, layer, values, r["tokens"], task,
                    summary, body, r["selectors"], sel_names, r["match"], numbers))
        files["in_out"] = out / IN_OUT
        new += [] if files["in_out"].exists() else [files["in_out"]]
        tmp = tmp_path(files["in_out"])
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, files["in_out"])
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:  # a read-only run, a full disk, no permission
        import errno

        for path in new:  # what this call added goes; nothing it found is touched
            path.unlink(missing_ok=True)
        for folder in made:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break
        why = "is on a read-only file system" if e.errno == errno.EROFS else (
            f"cannot be written ({os.strerror(e.errno) if e.errno else e})")
        raise DrawError(
            f"the figures cannot be written to {out}: {e.filename or out} {why}. Give a "
            "folder you can write with --out DIR (from Python: maps_dir=DIR); the figures "
            "then go to DIR/<sequence>/, and the run itself is only read.") from None
    return files


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
