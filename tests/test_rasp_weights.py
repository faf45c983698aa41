"""RASP programs compiled to Encoder weights: exact on every input up to a small length,
refused constructs named, a broken weight caught, the TransformerLens export identical."""

from pathlib import Path

import pytest
import torch

from rasp_hydra.rasp import load
from rasp_hydra.rasp.weights import CompileError, build, check_weights

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "rasp_hydra" / "rasp" / "programs"


def _sop(path, name):
    return load(path).sop(name)


@pytest.mark.parametrize("path,name,vocab,max_len,bos,budget", [
    (ROOT / "docs/results/mirror/mirror.rasp", "mirror", "abc", 5, False, (2, (1, 1))),
    (PROGRAMS / "reverse.rasp", "reverse", "abcd", 4, False, (2, (1, 1))),
    (PROGRAMS / "hist_bos.rasp", "hist_bos", "abc", 5, True, (1, (1,))),
])
def test_compiled_program_matches_evaluator_on_every_input(path, name, vocab, max_len, bos,
                                                           budget):
    sop = _sop(path, name)
    w = build(sop, vocab, max_len, bos)
    cfg = w.model.cfg
    assert (cfg.layers, w.compiled.budget.heads) == budget
    assert cfg.heads == max(budget[1]) and w.residual_width <= cfg.d_model
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in w.model.modules())
    check = check_weights(w.model, sop, vocab, max_len, bos)
    k = len(vocab)
    assert check.exhaustive and check.inputs == sum(k ** n for n in range(1, max_len + 1))
    assert check.mismatches == 0


def test_mirror_outputs_by_hand():
    sop = _sop(ROOT / "docs/results/mirror/mirror.rasp", "mirror")
    w = build(sop, "abc", 4)
    x, n = w.task.encode(["abca", "abc", "aba"])
    got = w.model(x, n)[0].argmax(-1)
    names = [[w.task.out_classes[i] for i in row[:m]] for row, m in zip(
        got.tolist(), n.tolist(), strict=True)]
    assert names == [["True", "False", "False", "True"], ["False", "True", "False"],
                     ["True", "True", "True"]]


def test_broken_weight_is_caught():
    sop = _sop(PROGRAMS / "reverse.rasp", "reverse")
    w = build(sop, "abc", 3)
    with torch.no_grad():  # the flip head's value copy of token 'a' goes to 'b'
        v = w.model.layers[1].attn.proj.weight
        sp = w.spaces[id(sop)]
        v[[sp.start, sp.start + 1]] = v[[sp.start + 1, sp.start]]
    with pytest.raises(CompileError, match=r"disagrees .*'reverse'.* the program gives"):
        check_weights(w.model, sop, "abc", 3)


@pytest.mark.parametrize("path,name,bos,what", [
    (PROGRAMS / "hist_nobos.rasp", "hist_nobos", False, "with_first"),
    (PROGRAMS / "sort_bos.rasp", "sort_bos", True, "with_bos"),
])
def test_refused_constructs_are_named(path, name, bos, what):
    with pytest.raises(CompileError, match=what):
        build(_sop(path, name), "abc", 4, bos)


def test_export_to_transformer_lens_gives_the_same_logits():
    pytest.importorskip("transformer_lens")
    from rasp_hydra.export.lens import lens_logits, to_hooked_transformer
    sop = _sop(ROOT / "docs/results/mirror/mirror.rasp", "mirror")
    w = build(sop, "abc", 4)
    x, n = w.task.encode(["abca", "abcb", "cbbc"])
    hooked = to_hooked_transformer(w.model)
    ours = w.model(x, n)[0]
    theirs = lens_logits(hooked, x, n)
    assert torch.allclose(ours, theirs, atol=1e-5)


def _cli(*args, cwd=ROOT):
    import os
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "rasp_hydra.rasp", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_cli_writes_a_run_that_load_run_and_the_drawer_read(tmp_path):
    import json

    from rasp_hydra.api import load_run
    out = tmp_path / "mirror_run"
    r = _cli(ROOT / "docs/results/mirror/mirror.rasp", "--weights", "mirror",
             "--alphabet", "abc", "--max-len", 4, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "0 mismatches" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "compiled" and m["checked_inputs"] == 3 + 9 + 27 + 81
    assert m["budget"] == {"layers": 2, "heads": [1, 1]} and m["mismatches"] == 0
    run = load_run(out)
    x, n = run.task.encode(["abca"])
    assert [run.task.out_classes[i] for i in run.model(x, n)[0].argmax(-1)[0].tolist()] == [
        "True", "False", "False", "True"]
    from rasp_hydra.draw.run import draw_run
    draw_run(out, "abca")
    assert (out / "maps" / "abca" / "attention_layer1.png").is_file()


def test_cli_refusal_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "hist_run"
    r = _cli(PROGRAMS / "hist_nobos.rasp", "--weights", "hist_nobos", "--alphabet", "abc",
             "--max-len", 3, "--out", out)
    assert r.returncode == 2
    assert "with_first" in r.stderr and "cannot be one head" in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_compiled_run_is_a_run_for_load_run_the_drawer_the_probes_and_the_report(tmp_path):
    # a compiled run's metrics.json carries the ordinary final evaluation (training's
    # final_evaluation on the task's splits); the report shows it as a cell of its own
    # (arch "compiled") beside a trained run of the same task
    import json
    import shutil

    from rasp_hydra.api import load_run
    from rasp_hydra.draw.run import draw_run
    from rasp_hydra.probe.run import probe_run
    from rasp_hydra.report import load_sweep, table1
    out = tmp_path / "sweep" / "compiled"
    r = _cli(ROOT / "docs/results/mirror/mirror.rasp", "--weights", "mirror", "--alphabet",
             "abc", "--max-len", 4, "--train-size", 300, "--valid-size", 100,
             "--test-size", 100, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "final accuracy train 1.0000 valid 1.0000 test 1.0000" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert (m["status"], m["arch"], m["task"]) == ("compiled", "compiled", "mirror_3")
    assert set(m["final"]) == {"train", "valid", "test"}
    assert all(v["token_acc"] == v["seq_acc"] == 1.0 for v in m["final"].values())
    assert m["attention_match"] == {"0,0": 1.0, "1,0": 1.0}
    assert m["residual_width"] > 0 and m["params"] > 0 and m["budget"]["layers"] == 2
    run = load_run(out)
    assert run.task.name == "mirror_3" and run.status == "compiled"
    draw_run(out, "abca")
    assert (out / "maps" / "abca" / "attention_layer1.png").is_file()
    probes = probe_run(out, sequences=100, positions=300)["frame"]
    at = probes[probes["layer"] == probes["compiled_layer"]]
    assert set(at["sop"]) == {"tokens", "indices", "length", "mirror"}
    assert (at["trained"] >= 0.99).all(), at
    # a trained run of the same task beside it (its record made up: a half-right model)
    trained = tmp_path / "sweep" / "trained"
    shutil.copytree(out, trained)
    rec = json.loads((trained / "metrics.json").read_text())
    rec.update(status="completed", arch="predicted", seed=0, epochs_run=3, best_epoch=3)
    for split in rec["final"].values():
        split.update(token_acc=0.5, seq_acc=0.25)
    (trained / "metrics.json").write_text(json.dumps(rec))
    df = load_sweep(tmp_path / "sweep")
    t1 = table1(df).set_index("arch")
    assert list(t1["task"]) == ["mirror_3", "mirror_3"]
    assert t1.loc["compiled", "test_acc_mean"] == 1.0 and t1.loc["compiled", "seeds"] == 1
    assert t1.loc["predicted", "test_acc_mean"] == 0.5 and t1.loc["predicted", "seeds"] == 1
