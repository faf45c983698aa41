"""The instruments calibrated on models that compute their program by construction.

    python benchmarks/compiled_calibration.py [--sequences 500] [--positions 4000]

Each program is compiled to an Encoder's weights (``rasp_hydra.rasp.weights``), checked
against the evaluator on every input up to its maximum length, and written as a run
(``rasp_hydra.compiled``). Then the project's own instruments score it as they score a
trained run: the attention match of each compiled head against its select on the test
split (``train.losses.evaluate``, as a run's final evaluation; above chance, the report's
correction) and the probes of each s-op after the embedding and after each layer
(``rasp_hydra.probe``). The untrained control is the same shape at random init (seed 0):
the probes' control, and the same attention match measured on it. A compiled model is
ground truth, so an instrument that does not score it as computing its program is wrong.

Printed (markdown, as docs/results/compiled/README.md holds them): per program the budget,
residual width, inputs checked, mismatches, final test accuracy and compile time; per head
the match (raw, above chance) of the compiled model and of the control; per s-op the
probe's skill at every layer (compiled and control), the layer where the program computes
it, the test positions left out as unseen, and the skill at that layer as the probe scored
it before unseen values were left out (they counted as errors).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train_throughput.py

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "rasp_hydra" / "rasp" / "programs"
CASES = [  # (label, file, s-op, vocabulary, max_len, bos)
    ("mirror", ROOT / "docs/results/mirror/mirror.rasp", "mirror", "abc", 6, False),
    ("reverse", PROGRAMS / "reverse.rasp", "reverse", "abcd", 6, False),
    ("hist_bos", PROGRAMS / "hist_bos.rasp", "hist_bos", "abcd", 6, True),
    ("hist2_bos", PROGRAMS / "hist2_bos.rasp", "hist2_bos", "abc", 5, True),
]
SIZES = {"train_size": 2000, "valid_size": 500, "test_size": 1000}


def skill(score: float, baseline: float) -> float:
    from rasp_hydra.probe.fit import skill as _skill

    return _skill(score, baseline)


def before_fix(row) -> float:
    """The categorical skill as scored when unseen test values counted as errors: the
    classifier names a train value there, never the right one and never the majority."""
    if row["kind"] != "categorical" or not row["unseen"]:
        return skill(row["trained"], row["baseline"])
    f = row["n_test"] / (row["n_test"] + row["unseen"])
    return skill(row["trained"] * f, row["baseline"] * f)


def calibrate(case, tmp: Path, sequences: int, positions: int) -> dict:
    from rasp_hydra import runs
    from rasp_hydra.compiled import evaluate_compiled, lang_config, write_compiled_run
    from rasp_hydra.probe.fit import initial_model
    from rasp_hydra.probe.run import probe_run
    from rasp_hydra.rasp import load
    from rasp_hydra.rasp.weights import build, check_weights

    label, path, name, vocab, max_len, bos = case
    sop = load(path).sop(name)
    t = time.perf_counter()
    w = build(sop, vocab, max_len, bos)
    check = check_weights(w.model, sop, vocab, max_len, bos)
    seconds = time.perf_counter() - t
    out = tmp / label
    record = write_compiled_run(w, check, out, path, name, vocab, max_len, bos, seconds,
                                **SIZES)
    control = initial_model(w.model, 0)
    _, control_final, control_match, control_uniform = evaluate_compiled(
        control, lang_config(path, name, vocab, max_len, bos, **SIZES))
    heads = []
    for h, m in record["attention_match"].items():
        u = record["attention_uniform"][h]
        cm, cu = control_match[h], control_uniform[h]
        heads.append({"head": h, "match": m, "uniform": u,
                      "above": runs.match_above_chance(m, u), "control": cm,
                      "control_above": runs.match_above_chance(cm, cu)})
    frame = probe_run(out, sequences=sequences, positions=positions, write=False)["frame"]
    return {"label": label, "vocab": vocab, "max_len": max_len, "bos": bos,
            "record": record, "seconds": seconds, "heads": heads, "probes": frame,
            "control_test_acc": control_final["test"]["token_acc"]}


def _f(x, digits=3) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def tables(results: list[dict]) -> str:
    lines = ["| program | vocabulary | max len | budget (layers x heads) | residual width | "
             "d_model | params | inputs checked | mismatches | test acc | control test acc "
             "| compile time |", "|" + "---|" * 12]
    for r in results:
        m = r["record"]
        b = m["budget"]
        lines.append(
            f"| {r['label']} | {r['vocab']}{' + BOS' if r['bos'] else ''} | {r['max_len']} "
            f"| {b['layers']} x {'/'.join(map(str, b['heads']))} | {m['residual_width']} | "
            f"{m['d_model']} | {m['params']} | {m['checked_inputs']} "
            f"({'all' if m['checked_exhaustive'] else 'sampled'}) | {m['mismatches']} | "
            f"{_f(m['final']['test']['token_acc'], 4)} | {_f(r['control_test_acc'], 4)} | "
            f"{r['seconds']:.1f} s |")
    lines += ["", "Attention match per head on the test split (raw; above chance, `–` where "
              "the select picks every key), compiled model and untrained control:", "",
              "| program | head (layer,head) | match | uniform | above chance | control match "
              "| control above chance |", "|" + "---|" * 7]
    for r in results:
        for h in r["heads"]:
            lines.append(f"| {r['label']} | {h['head']} | {_f(h['match'])} | "
                         f"{_f(h['uniform'])} | {_f(h['above'])} | {_f(h['control'])} | "
                         f"{_f(h['control_above'])} |")
    lines += ["", "Probe skill per s-op and layer (0: after the embedding; skill = (score - "
              "baseline) / (1 - baseline), R² for numerical s-ops), compiled / control; "
              "**bold** the layer where the program computes the s-op; `unseen`: test "
              "positions left out (their value never occurs at a train position); "
              "`before`: the skill at the compiled layer as scored when those counted as "
              "errors:", ""]
    width = max(int(r["record"]["layers"]) for r in results) + 1
    lines += ["| program | s-op | kind | values | " + " | ".join(
        f"layer {i}" for i in range(width)) + " | unseen | before |",
        "|" + "---|" * (width + 6)]
    for r in results:
        df = r["probes"]
        for sop, g in df.groupby("sop", sort=False):
            g = g.sort_values("layer")
            at = int(g["compiled_layer"].iloc[0])
            cells = []
            for _, row in g.iterrows():
                txt = (f"{_f(skill(row['trained'], row['baseline']))} / "
                       f"{_f(skill(row['control'], row['baseline']))}")
                cells.append(f"**{txt}**" if int(row["layer"]) == at else txt)
            cells += [""] * (width - len(cells))
            row_at = g[g["layer"] == at].iloc[0]
            lines.append(f"| {r['label']} | {sop} | {row_at['kind']} | {row_at['values']} | "
                         + " | ".join(cells) + f" | {int(row_at['unseen'])} | "
                         f"{_f(before_fix(row_at))} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequences", type=int, default=500)
    ap.add_argument("--positions", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        results = [calibrate(c, Path(tmp), args.sequences, args.positions) for c in CASES]
    print(tables(results))


if __name__ == "__main__":
    main()
