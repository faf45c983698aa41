"""Linear probes of a RASP program's values in a trained model:
``python -m rasp_hydra.probe RUN_DIR`` (``--all SWEEP_DIR`` for every completed run).

Does the model hold the program's intermediate values where the program computes them?
For a run whose task has a RASP program (``lang=rasp``, or a built-in Table 1 family
through its shipped program in ``rasp_hydra/rasp/programs/``):

- features: the residual stream after the embedding (layer 0) and after each layer l
  (``Encoder.hidden_states``), at every real position except BOS (the model's BOS slot
  holds no program value; the program's values there are placeholders such as "§");
- labels: the value, at the same positions, of every named s-op the program's output
  depends on (``tokens``, ``indices`` and library ones such as ``length`` included;
  constants left out), from the program evaluated on the same ids (``rasp.evaluate``);
- sequences: the first ``--sequences`` of the run's train split to fit on and of its
  test split to score on (the run's own data, rebuilt from its config), then at most
  ``MAX_POSITIONS`` positions of each, drawn with a fixed seed;
- one probe per (s-op, layer), features standardised on the train positions (scikit-learn):
  an s-op of numbers with more than ``MANY_VALUES`` distinct values is *numerical* and
  gets a ridge regression, scored by R^2 (baseline 0: the train mean); every other s-op is
  *categorical* and gets a multinomial logistic regression, scored by accuracy beside the
  baseline of always guessing the train split's most common value;
- a control: the same probes on the untrained model of the same config and seed (the
  weights training started from), so what the architecture gives for free (tokens are
  decodable from any embedding) is told apart from what training put there;
- each s-op's compiled layer: the residual stream index where the compiled program first
  holds it (0 for values of tokens and indices alone; l when it needs layer l's
  aggregate), from ``rasp.compile``.

Decodable: skill = (score - baseline) / (1 - baseline) (R^2 itself for numerical s-ops) is
at least ``DECODABLE`` (0.8: accuracy 0.9 on a 50/50 value, R^2 0.8). Over the control:
the trained skill exceeds the control's by at least ``OVER_CONTROL`` (0.2).

Writes ``RUN_DIR/probes/probes.csv`` (one row per s-op and layer), ``probes.png``
(s-op x layer heatmap of trained minus control, the compiled layer outlined) and prints a
line per s-op. From Python: ``probe_run(run_dir)`` or ``load_run(run_dir).probe()``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rasp_hydra import runs
from rasp_hydra.config import dotted  # the run's saved config.yaml is a raw DictConfig

PROBES = "probes"  # the folder under the run directory
MANY_VALUES = 20  # numbers with more distinct values than this are regressed, not classified
DECODABLE = 0.8  # skill at or above: decodable
OVER_CONTROL = 0.2  # trained skill minus control skill at or above: training put it there
DEFAULT_SEQUENCES = 500  # sequences of each split
MAX_POSITIONS = 4000  # positions per split at most (fit cost grows with them)
MAX_ITER = 200  # logistic regression iterations (lbfgs)
COLUMNS = ["sop", "kind", "layer", "metric", "trained", "control", "difference", "baseline",
           "decodable", "over_control", "compiled_layer", "values", "n_train", "n_test"]


class ProbeError(Exception):
    """A problem with the probe's input, shown as one paragraph (exit code 2)."""


# ----------------------------------------------------------------------- the program

# built-in families -> their shipped programs (without BOS, with BOS); None: no such program
SHIPPED = {"reverse": ("reverse", "reverse"), "hist": ("hist_nobos", "hist_bos"),
           "hist2": ("hist2_nobos", "hist2_bos"), "sort": ("sort_nobos", "sort_bos"),
           "sort_by_freq": ("sort_by_freq_nobos", "sort_by_freq_bos")}


def program_task(task, max_len: int = 100):
    """The program task that computes ``task``: the task itself for a program task, else
    its family's shipped program over the same alphabet (reverse and Dyck programs see no
    BOS; the others have a variant for each). Raises ProbeError if there is none."""
    from rasp_hydra.tasks.program import ProgramFamily, make_program_task
    from rasp_hydra.tasks.registry import find_program

    if isinstance(task.impl, ProgramFamily):
        return task
    family = task.family
    if family in SHIPPED:
        name = SHIPPED[family][task.bos]
    elif family == "dyck" and task.size in (1, 2):
        name = f"dyck{task.size}_ptf"
    else:
        raise ProbeError(
            f"The task {task.name!r} has no RASP program to probe: probes need a program "
            "task (lang=rasp, e.g. lang.program=docs/results/mirror/mirror.rasp) or a "
            f"built-in family with a shipped program ({', '.join(SHIPPED)}, dyck1_ptf, "
            "dyck2_ptf).")
    sees_bos = task.bos and name.endswith("_bos")
    return make_program_task(find_program(name), name, alphabet=task.alphabet, bos=task.bos,
                             sees_bos=sees_bos, max_len=max_len, base=task.base_name)


def program_sops(prog_task) -> dict:
    """The probed s-ops, by a unique name: every named s-op (and tokens, indices) the
    output depends on, constants left out, in creation order."""
    from rasp_hydra.rasp.evaluate import ancestors
    from rasp_hydra.rasp.lang import Input, Map, SOp

    out = {}
    for node in ancestors([prog_task.impl.output]):
        if not isinstance(node, SOp) or (isinstance(node, Map) and node.is_constant):
            continue
        if not (node.is_named or isinstance(node, Input)):
            continue
        name, k = node.name, 2
        while name in out:  # a name given twice (a variable reassigned)
            name, k = f"{node.name}#{k}", k + 1
        out[name] = node
    return out


def compiled_layers(prog_task, sops: dict) -> dict[str, int]:
    """Residual stream index where the compiled program holds each s-op."""
    compiled = prog_task.impl.compiled
    return {name: compiled.depth[id(node)] for name, node in sops.items()}


# ----------------------------------------------------------------------- data

@dataclass
class Positions:
    """Sampled real positions of some sequences: rows ``b`` and model positions ``i``
    (BOS excluded), program positions ``p`` (the same, less the BOS the program does not
    see)."""

    tokens: object  # LongTensor[N, n]
    lengths: object  # LongTensor[N]
    b: object  # LongTensor[P]
    i: object
    p: object


def sample_positions(task, prog_task, tokens, lengths, limit: int, seed: int) -> Positions:
    import numpy as np
    import torch

    first = 1 if task.bos else 0  # BOS is left out
    offset = 1 if task.bos and not prog_task.impl.sees_bos else 0  # model pos - program pos
    n = tokens.shape[1]
    real = (torch.arange(n)[None, :] < lengths[:, None])
    real[:, :first] = False
    b, i = real.nonzero(as_tuple=True)
    if len(b) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(b), limit, replace=False))
        b, i = b[keep], i[keep]
    return Positions(tokens, lengths, b, i, i - offset)


def program_labels(prog_task, sops: dict, pos: Positions) -> dict[str, list]:
    """Each s-op's values at the sampled positions (Python values, as the program gives)."""
    from rasp_hydra.rasp import evaluate_batch

    x, n = prog_task._strip(pos.tokens, pos.lengths)
    cols = evaluate_batch(list(sops.values()), x, n, prog_task.impl.input_values)
    out = {}
    for name, node in sops.items():
        col = cols[node]
        codes = col.codes[pos.b, pos.p].tolist()
        out[name] = [col.table[c] for c in codes]
    return out


def residual_streams(model, pos: Positions, batch: int = 256) -> list:
    """Per layer 0..L: float32 array [P, d] of the residual stream at the sampled positions
    (in their order: ``pos.b`` ascends, so batch after batch keeps it)."""
    import numpy as np
    import torch

    parts = []
    for s in range(0, len(pos.lengths), batch):
        lens = pos.lengths[s:s + batch]
        hs = model.hidden_states(pos.tokens[s:s + batch, :int(lens.max())], lens)
        sel = (pos.b >= s) & (pos.b < s + batch)
        parts.append([h[pos.b[sel] - s, pos.i[sel]] for h in hs])
    return [np.asarray(torch.cat([p[layer] for p in parts]), dtype=np.float32)
            for layer in range(len(parts[0]))]


def initial_model(trained, seed: int):
    """The untrained model the run of `trained` started from: train.py seeds torch with
    train.seed right before building the Encoder (weights are drawn on the CPU on any
    device)."""
    import torch

    from rasp_hydra.model import Encoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = Encoder(trained.cfg, trained.vocab_size, trained.n_out, trained.pad_id)
    return model.eval()


# ----------------------------------------------------------------------- fits

def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def encode_labels(train: list, test: list):
    """(kind, y_train, y_test, distinct values): numerical (floats) when every value is a
    number and there are more than MANY_VALUES of them, else categorical (class ids)."""
    import numpy as np

    from rasp_hydra.rasp.evaluate import value_key

    keys = {value_key(v) for v in train + test}
    if len(keys) > MANY_VALUES and all(_is_number(v) for v in train + test):
        return ("numerical", np.array(train, dtype=np.float64),
                np.array(test, dtype=np.float64), len(keys))
    ids: dict = {}
    y = [ids.setdefault(value_key(v), len(ids)) for v in train + test]
    return "categorical", np.array(y[:len(train)]), np.array(y[len(train):]), len(keys)


def fit_probe(kind: str, x_train, y_train, x_test, y_test) -> float:
    """Test accuracy (categorical) or R^2 (numerical) of a linear probe fitted on train."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = Ridge(alpha=1.0) if kind == "numerical" else LogisticRegression(max_iter=MAX_ITER)
    probe = make_pipeline(StandardScaler(), head)
    with warnings.catch_warnings():  # a probe short of convergence is still a lower bound
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(x_train, y_train)
    return float(probe.score(x_test, y_test))


def skill(score: float, baseline: float) -> float:
    return (score - baseline) / (1.0 - baseline) if baseline < 1.0 else float("nan")


def probe_matrix(trained: dict, control: dict, labels: dict, compiled: dict, layers: int):
    """The probes' DataFrame (COLUMNS): ``trained``/``control`` map split -> [P, d] arrays
    per layer; ``labels`` split -> s-op -> values."""
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    # One BLAS thread: a probe's products are small (positions x d_model x values), and
    # BLAS threads that spin-wait on a busy machine cost 10x the work (measured: 13 s
    # instead of 1 s of CPU for one 100-class fit on the shared 2-core machine).
    with threadpool_limits(limits=1, user_api="blas"):
        return _probe_matrix(trained, control, labels, compiled, layers)


def _probe_matrix(trained, control, labels, compiled, layers):
    import numpy as np
    import pandas as pd

    rows = []
    for name, layer_of in compiled.items():
        train, test = labels["train"][name], labels["test"][name]
        kind, y_train, y_test, n_values = encode_labels(train, test)
        if kind == "numerical":
            metric, baseline = "r2", 0.0
        else:
            metric = "accuracy"
            majority = np.bincount(y_train).argmax()
            baseline = float(np.mean(y_test == majority))
        one_value = len(np.unique(y_train)) < 2  # nothing to fit: reported, not probed
        for layer in range(layers + 1):
            t = c = float("nan")
            if not one_value:
                t = fit_probe(kind, trained["train"][layer], y_train, trained["test"][layer],
                              y_test)
                c = fit_probe(kind, control["train"][layer], y_train, control["test"][layer],
                              y_test)
            st, sc = skill(t, baseline), skill(c, baseline)
            rows.append({
                "sop": name, "kind": "constant" if one_value else kind, "layer": layer,
                "metric": metric, "trained": t, "control": c, "difference": t - c,
                "baseline": baseline, "decodable": bool(st >= DECODABLE),
                "over_control": bool(st - sc >= OVER_CONTROL), "compiled_layer": layer_of,
                "values": n_values, "n_train": len(y_train), "n_test": len(y_test)})
    return pd.DataFrame(rows, columns=COLUMNS)


# ----------------------------------------------------------------------- a run

def _load(run_dir: Path, which: str):
    try:
        return runs.open_model(run_dir, which, "probe", "add --all to probe every completed one")
    except runs.NoModelError as e:
        raise ProbeError(str(e)) from None


def _seed(run_dir: Path, run_cfg) -> int:
    seed = dotted(run_cfg, "train.seed")
    return int(seed if seed is not None else runs.read_metrics(run_dir).get("seed") or 0)


def prepare(run_dir, sequences: int = DEFAULT_SEQUENCES, sops: Sequence[str] | None = None,
            which: str = "auto", positions: int = MAX_POSITIONS) -> dict:
    """Everything a probe needs, checked (ProbeError) before any long work: the models,
    tasks, s-ops and the sampled positions of both splits."""
    from rasp_hydra.config import LangConfig

    run_dir = Path(run_dir)
    if int(sequences) < 1:
        raise ProbeError(f"--sequences is the number of sequences of each split to probe, at "
                         f"least 1; got {sequences}.")
    if int(positions) < 2:
        raise ProbeError(f"--positions is the most train positions to fit on (test: half), "
                         f"at least 2; got {positions}.")
    model, task, run_cfg, used = _load(run_dir, which)
    defaults = LangConfig(family="?")
    get = lambda key: dotted(run_cfg, f"lang.{key}", getattr(defaults, key))  # noqa: E731
    prog_task = program_task(task, max_len=int(get("max_len")))
    known = program_sops(prog_task)
    if sops:
        unknown = [s for s in sops if s not in known]
        if unknown:
            raise ProbeError(
                f"The program of {task.name!r} has no s-op {', '.join(map(repr, unknown))}; "
                f"the s-ops its output depends on are: {', '.join(known)}.")
        known = {s: known[s] for s in known if s in sops}
    data = {}
    for split, size_key in (("train", "train_size"), ("test", "test_size")):
        count = min(int(sequences), int(get(size_key)))
        tokens, lengths = task.sample(count, seed=int(get("data_seed")), split=split,
                                      min_len=int(get("min_len")), max_len=int(get("max_len")))
        limit = int(positions) if split == "train" else int(positions) // 2
        data[split] = sample_positions(task, prog_task, tokens, lengths, limit, seed=0)
    control = initial_model(model, _seed(run_dir, run_cfg))
    return {"run_dir": run_dir, "model": model, "control": control, "task": task,
            "prog_task": prog_task, "sops": known, "data": data, "checkpoint": used,
            "run_cfg": run_cfg}


def run_probes(prep: dict):
    """The probes' DataFrame for a prepared run (see ``prepare``)."""
    labels = {split: program_labels(prep["prog_task"], prep["sops"], pos)
              for split, pos in prep["data"].items()}
    _check_output(prep, labels)
    streams = {which: {split: residual_streams(prep[which], pos)
                       for split, pos in prep["data"].items()}
               for which in ("model", "control")}
    compiled = compiled_layers(prep["prog_task"], prep["sops"])
    return probe_matrix(streams["model"], streams["control"], labels, compiled,
                        prep["model"].cfg.layers)


def _check_output(prep: dict, labels: dict) -> None:
    """The program must compute the run's task: its output equals the targets at the
    probed positions (guards the alignment of program and model positions)."""
    task, prog_task = prep["task"], prep["prog_task"]
    output = prog_task.impl.output
    pos = prep["data"]["test"]
    values = program_labels(prog_task, {"_": output}, pos)["_"]
    targets = task.outputs(pos.tokens, pos.lengths)[pos.b, pos.i].tolist()
    want = [task.out_classes[t] for t in targets]
    if [str(v) for v in values] != want:
        raise ProbeError(f"The program {output.name!r} does not compute the task "
                         f"{task.name!r} on its test sequences, so its values cannot label "
                         "the model's positions.")


def write_outputs(df, out_dir: Path, title: str) -> dict:
    """probes.csv and probes.png under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / "probes.csv"
    tmp = csv.with_suffix(".csv.tmp")
    df.to_csv(tmp, index=False, float_format="%.4f")
    tmp.replace(csv)
    png = draw_matrix(df, out_dir / "probes.png", title)
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
    """One line per s-op: kind, compiled layer, trained and control per layer, and where
    it first becomes decodable."""
    lines = []
    width = max(len(s) for s in df["sop"])
    for name, g in df.groupby("sop", sort=False):
        g = g.sort_values("layer")
        r = g.iloc[0]
        head = f"{name:<{width}}  compiled {r.compiled_layer}"
        if r.kind == "constant":
            lines.append(f"{head}  one value on the train sequences: not probed")
            continue
        metric = "R2" if r.metric == "r2" else f"acc (baseline {r.baseline:.2f})"
        scores = " ".join(f"{v:.2f}" for v in g["trained"])
        controls = " ".join(f"{v:.2f}" for v in g["control"])
        first = g[g["decodable"]]
        if len(first):
            f = first.iloc[0]
            where = (f"decodable from layer {int(f.layer)}"
                     + ("" if f.over_control else ", as in the untrained model"))
        elif r.compiled_layer > layers:
            where = f"not decodable (compiled beyond this model's {layers} layers)"
        else:
            where = "not decodable"
        lines.append(f"{head}  {metric}: trained {scores} | control {controls}  {where}")
    return lines


def probe_run(run_dir, sequences: int = DEFAULT_SEQUENCES, sops: Sequence[str] | None = None,
              which: str = "auto", write: bool = True, positions: int = MAX_POSITIONS) -> dict:
    """Probe one run; returns {"frame": DataFrame, "lines": summary, "files": {...}}."""
    prep = prepare(run_dir, sequences, sops, which, positions)
    df = run_probes(prep)
    model, task = prep["model"], prep["task"]
    lines = summary_lines(df, model.cfg.layers)
    files = {}
    if write:
        c = model.cfg
        title = (f"{task.name}: {c.layers} layer{'s' * (c.layers != 1)}, {c.heads} "
                 f"head{'s' * (c.heads != 1)}, d_model {c.d_model} ({prep['checkpoint']} "
                 "checkpoint)")
        files = write_outputs(df, Path(run_dir) / PROBES, title)
    return {"frame": df, "lines": lines, "files": files, "checkpoint": prep["checkpoint"]}


def probe_all(root, sequences: int = DEFAULT_SEQUENCES, sops: Sequence[str] | None = None,
              which: str = "auto", echo=print, positions: int = MAX_POSITIONS) -> dict:
    """Probe every completed run below root; the others are passed over, with why."""
    root = Path(root)
    if not root.is_dir():
        raise ProbeError(f"{root} is not a directory. Give a sweep directory (e.g. "
                         "outputs/multirun/DATE/TIME).")
    found = runs.find_runs(root)
    if not found:
        raise ProbeError(f"{root} holds no run: no directory below it has .hydra/config.yaml "
                         "or metrics.json.")
    probed, passed = [], []
    for run_dir in found:
        status = runs.read_metrics(run_dir).get("status", "unknown")
        if status != "completed":
            passed.append((run_dir, f"status {status}"))
            echo(f"passed over {run_dir}: status {status}")
            continue
        try:
            res = probe_run(run_dir, sequences, sops, which, positions=positions)
        except ProbeError as e:
            passed.append((run_dir, str(e)))
            echo(f"passed over {run_dir}: {e}")
            continue
        probed.append((run_dir, res))
        echo(f"{run_dir}:\n" + "\n".join(res["lines"]) + f"\nwrote {res['files']['csv']}, "
             f"{res['files']['png'].name}\n")
    return {"probed": probed, "passed": passed}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rasp_hydra.probe",
        description="Linear probes of every s-op of the task's RASP program at every layer of "
                    "a trained run, beside the same probes of its untrained model; writes "
                    "RUN_DIR/probes/probes.csv and probes.png.")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory (or, with --all, a sweep directory)")
    parser.add_argument("--sequences", type=int, default=DEFAULT_SEQUENCES,
                        help=f"sequences of the train split to fit on and of the test split "
                             f"to score on; default {DEFAULT_SEQUENCES}")
    parser.add_argument("--positions", type=int, default=MAX_POSITIONS,
                        help=f"at most this many of their positions to fit on (half as many "
                             f"to score on), drawn with a fixed seed; default {MAX_POSITIONS}")
    parser.add_argument("--sops", default=None,
                        help="comma-separated s-op names to probe (default: every one)")
    parser.add_argument("--which", choices=("auto", "best", "last"), default="auto",
                        help="checkpoint: best, last, or auto (best if the run completed, "
                             "else last); default auto")
    parser.add_argument("--all", action="store_true",
                        help="probe every completed run below RUN_DIR (a sweep directory)")
    args = parser.parse_args(argv)
    sops = [s.strip() for s in args.sops.split(",") if s.strip()] if args.sops else None
    try:
        if args.all:
            res = probe_all(args.run_dir, args.sequences, sops, args.which,
                            positions=args.positions)
            print(f"probed {len(res['probed'])} runs, passed over {len(res['passed'])}")
            if not res["probed"]:
                raise ProbeError(f"no run below {args.run_dir} could be probed (see above).")
        else:
            res = probe_run(args.run_dir, args.sequences, sops, args.which,
                            positions=args.positions)
            print("\n".join(res["lines"]))
            print(f"wrote {res['files']['csv']} and {res['files']['png'].name} "
                  f"({res['checkpoint']} checkpoint)")
    except ProbeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
