"""RASP programs over numbers: vocabularies of token values (ints, words), one output class
per value (0 == 0.0), and 0-layer budgets kept as compiled, end to end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import TINY, cli, metrics

from rasp_hydra.rasp import load
from rasp_hydra.tasks import task_of_lang
from rasp_hydra.tasks.program import ProgramError, make_program_task, vocabulary

ROOT = Path(__file__).resolve().parents[1]
SORT_INT = ROOT / "docs" / "results" / "numbers" / "sort_int.rasp"
FRACTION = "frac_a = aggregate(select(indices, indices, <=), indicator(tokens == \"a\"));"
DOUBLE = "double = tokens_int * 2;"


def test_vocabulary_forms():
    assert vocabulary("abc") == "abc"  # characters, as always
    assert vocabulary("0..99") == tuple(range(100))
    assert vocabulary([10, 2, 33]) == (10, 2, 33)
    assert vocabulary(["ab", "c"]) == ("ab", "c")
    assert vocabulary(5) == "abcde" and vocabulary(5, reads_numbers=True) == (0, 1, 2, 3, 4)
    for bad, why in (([1, "1"], "written the same twice"), (["a b"], "without spaces"),
                     ([True], "neither ints"), ("9..3", "empty"), ("aa", "repeated")):
        with pytest.raises(ProgramError, match=why):
            vocabulary(bad)


def test_int_vocabulary_from_config_encodes_and_decodes():
    from omegaconf import OmegaConf

    from rasp_hydra.config import LangConfig

    lang = OmegaConf.merge(OmegaConf.structured(LangConfig), {
        "family": "rasp", "program": str(SORT_INT), "alphabet": [5, 10, 200],
        "classes": [5, 10, 200], "max_len": 4})
    task = task_of_lang(lang)
    assert task.alphabet == (5, 10, 200) and task.spaced and task.name == "sort_int_3"
    tokens, lengths = task.encode(["200 5, 10", [10, 5]])
    assert tokens[0, :3].tolist() == [2, 0, 1] and lengths.tolist() == [3, 2]
    assert task.decode_inputs(tokens, lengths) == ["200 5 10", "10 5"]
    assert task.decode_values(task.outputs(tokens, lengths), lengths) == [[5, 10, 200], [5, 10]]
    with pytest.raises(ValueError, match="'7' is not in the alphabet"):
        task.encode(["5 7"])
    # a size gives a tokens_int program the ints 0..k-1 (the first k characters otherwise)
    sized = task_of_lang({"family": "rasp", "program": str(SORT_INT), "size": 60,
                          "classes": "0..59", "max_len": 4})
    assert sized.alphabet == tuple(range(60)) and sized.out_values == tuple(range(60))


def test_digit_characters_and_the_integers_give_a_tokens_int_program_the_same_task():
    import torch

    src = "shifted = tokens_int * 2 + length;"
    chars = task_of_lang({"family": "rasp", "program": src, "alphabet": "0123456789",
                          "max_len": 8})
    ints = task_of_lang({"family": "rasp", "program": src, "alphabet": "0..9", "max_len": 8})
    assert chars.name == ints.name == "shifted_10" and chars.out_classes == ints.out_classes
    x, n = chars.sample(200, max_len=8)
    y, m = ints.sample(200, max_len=8)
    assert torch.equal(x, y) and torch.equal(chars.outputs(x, n), ints.outputs(y, m))
    assert chars.decode_inputs(x[:1], n[:1])[0] == "".join(
        ints.decode_inputs(y[:1], m[:1])[0].split())


def test_int_program_trains_and_predicts_through_load_run(tmp_path):
    from rasp_hydra.api import load_run

    run = tmp_path / "run"
    cli("lang=rasp", f"lang.program={SORT_INT}", "lang.alphabet=10..69", "lang.classes=10..69",
        "arch=predicted", *TINY, f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    m = metrics(run)
    assert m["status"] == "completed" and m["task"] == "sort_int_60"
    assert (m["predicted_layers"], m["predicted_heads"]) == (2, 2)
    loaded = load_run(run)
    assert len(loaded.task.alphabet) == 60
    prog = load(SORT_INT)
    for given in ("33 10 69 45", [33, 10, 69, 45], "[33, 10, 69, 45]"):
        predicted, correct = loaded.predict(given), loaded.correct(given)
        assert correct == prog.eval("sort_int", [33, 10, 69, 45]) == [10, 33, 45, 69]
        assert len(predicted) == 4 and all(type(v) is int and 10 <= v <= 69
                                           for v in predicted)
    # the drawer takes the same input, labels the axes with the numbers
    proc = cli(str(run), "--sequence", "33 10 69 45", cwd=tmp_path, module="rasp_hydra.draw")
    assert proc.returncode == 0, proc.stderr
    text = (run / "maps" / "33_10_69_45" / "in_out.txt").read_text()
    assert "input: '33 10 69 45'" in text and "correct: 10 33 45 69" in text
    proc = cli(str(run), "--sequence", "33 70", cwd=tmp_path, module="rasp_hydra.draw")
    assert proc.returncode == 2 and "'70' is not in the alphabet" in proc.stderr


def test_mixed_int_and_float_outputs_are_one_class_per_value(tmp_path):
    task = make_program_task(FRACTION, "frac_a", alphabet="ab", max_len=4)
    # 0, 1 (one key selected: the indicator's ints) and 0.0, 1.0 (means) are one class each
    assert task.out_classes == ("0", "0.25", "0.3333333333333333", "0.5",
                                "0.6666666666666666", "0.75", "1")
    assert task.out_values[0] == 0 and type(task.out_values[0]) is int
    run = tmp_path / "run"
    src = tmp_path / "frac_a.rasp"
    src.write_text(FRACTION + "\n")
    cli("lang=rasp", f"lang.program={src}", "lang.alphabet=ab", *TINY[:1], "lang.max_len=4",
        *TINY[2:], f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    from rasp_hydra.api import load_run

    loaded = load_run(run)
    assert loaded.task.out_classes == task.out_classes
    assert loaded.model.n_out == 7  # the classifier has one output per distinct value
    correct = loaded.correct("aab")
    assert correct == load(src).eval("frac_a", "aab") == [1, 1.0, 2 / 3]


def test_zero_layer_program_keeps_its_budget_in_record_and_report(tmp_path):
    from rasp_hydra.config import ArchConfig, ArchName, ModelConfig, resolve_model
    from rasp_hydra.job import skip_reason

    task = make_program_task(DOUBLE, "double", alphabet="0..59", max_len=6)
    assert (task.predicted_layers, task.predicted_heads) == (0, 0)
    budgets = {a: resolve_model(ModelConfig(), ArchConfig(a), (0, 0), 7) for a in ArchName}
    assert (budgets[ArchName.predicted].layers, budgets[ArchName.predicted].heads) == (1, 1)
    assert all(skip_reason(task, ArchConfig(a), budgets[a])
               for a in ArchName if a != ArchName.predicted)

    src = tmp_path / "double.rasp"
    src.write_text(DOUBLE + "\n")
    sweep = tmp_path / "sweep"
    cli("lang=rasp", f"lang.program={src}", "lang.size=60", "arch=predicted", *TINY,
        f"hydra.run.dir={sweep / '0'}", cwd=tmp_path, check=True)
    m = metrics(sweep / "0")
    assert m["status"] == "completed"
    assert (m["predicted_layers"], m["predicted_heads"], m["layers"], m["heads"]) == (0, 0, 1, 1)
    proc = cli(str(sweep), cwd=tmp_path, module="rasp_hydra.report", check=True)
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| double_60"))
    cells = [c.strip() for c in row.split("|")]
    assert cells[2] == "0/0" and cells[3].startswith("1L1H: ")


def test_value_inputs_in_directory_names_peep_and_rasp_draw_titles(tmp_path, capsys):
    from rasp_hydra.draw import safe_name
    from rasp_hydra.rasp import evaluate
    from rasp_hydra.rasp.__main__ import draw_compiled
    from rasp_hydra.tasks.__main__ import main as tasks_main

    # tokens joined by "_", a "_" inside a token escaped: ["a_b"] and ["a", "b"] differ
    assert safe_name("10 2 33", spaced=True) == "10_2_33"
    assert safe_name("a_b", spaced=True) != safe_name("a b", spaced=True)
    assert safe_name("abc") == "abc"

    assert tasks_main(["peep", str(SORT_INT), "--alphabet", "0..99", "--classes", "0..99",
                       "--stop", "1", "--max-len", "6"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("  in : "))
    numbers = [int(v) for v in line[7:].split()]
    sorted_line = next(x for x in out.splitlines() if x.startswith("  out: "))
    assert [int(v) for v in sorted_line[7:].split()] == sorted(numbers)

    prog = load(SORT_INT)
    compiled = prog.compile("sort_int")
    inp = [10, 2, 33]
    fig = draw_compiled("sort_int", compiled,
                        {h: evaluate(s, inp) for h, s in compiled.head_selects.items()},
                        inp, prog.eval("sort_int", inp), tmp_path / "s.png")
    assert "sort_int([10, 2, 33]) = [2, 10, 33] (ints)" in fig._suptitle.get_text()


@pytest.mark.parametrize("override, says", [
    ("lang.alphabet=9..3", "is empty: write A..B with A <= B"),
    ("lang.alphabet=[1,'1']", "written the same twice"),
    ("lang.alphabet=[ab,'c d']", "without spaces"),
    ("lang.classes=abc", "a range of integers A..B"),
])
def test_bad_vocabularies_are_one_paragraph(override, says):
    from rasp_hydra import job
    from rasp_hydra.config import ConfigError
    from tests.records import compose_config

    cfg = compose_config("lang=rasp", f"lang.program={SORT_INT}", override)
    with pytest.raises(ConfigError, match=says):
        job.resolve_task(cfg.lang)


def test_a_bad_vocabulary_exits_2_before_anything_is_written(tmp_path):
    run = tmp_path / "run"
    proc = cli("lang=rasp", f"lang.program={SORT_INT}", "lang.alphabet=9..3",
               f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 2 and "is empty: write A..B" in proc.stderr, proc.stderr
    assert not run.exists()


def test_rasp_eval_of_a_spaced_string_hints_at_the_list_form(capsys):
    from rasp_hydra.rasp.__main__ import main as rasp_main

    assert rasp_main([str(SORT_INT), "--eval", "sort_int", "[10, 2, 33]"]) == 0
    assert "sort_int([10, 2, 33]) = [2, 10, 33] (ints)" in capsys.readouterr().out
    assert rasp_main([str(SORT_INT), "--eval", "sort_int", "10 2 33"]) == 2
    assert "give numbers or words as a list: '[10, 2, 33]'" in capsys.readouterr().err


# The REPL's mean (its Support.py): ``sum(selected) * 1.0 / n``, Python's sum left to
# right (floats compensated from Python 3.12 on, as the REPL running there does)
MEANS = """
full = select(indices, indices, ==) or select(indices, indices, !=);
avg = aggregate(full, tokens_asis);
prefix = aggregate(select(indices, indices, <=), tokens_asis);
is_012 = avg == 0.12;
"""


def repl_mean(values):
    return sum(values) * 1.0 / len(values)


def test_a_mean_of_floats_is_the_repls_left_to_right_sum_at_every_position():
    prog = load(MEANS)
    tenths = [0.1] * 21
    got = prog.eval("avg", tenths)
    assert got == [repl_mean(tenths)] * 21
    if sys.version_info < (3, 12):  # the plain left-to-right sum (no compensation)
        assert got == [0.10000000000000002] * 21
    x = [0.1] * 5 + [0.5] + [0.1] * 14
    assert prog.eval("avg", x) == [repl_mean(x)] * 20
    assert prog.eval("is_012", x) == [repl_mean(x) == 0.12] * 20
    assert prog.eval("prefix", x) == [repl_mean(x[: q + 1]) for q in range(20)]
    if sys.version_info < (3, 12):
        assert repl_mean(x) == 0.12000000000000006 and prog.eval("is_012", x) == [False] * 20
    # ints before the first float are summed exactly, then the float is added
    mixed = [2**60, 1, 0.5, 3, 0.25, 7]
    assert prog.eval("avg", mixed) == [repl_mean(mixed)] * 6


def test_a_mean_of_ints_is_exact_before_its_one_rounding():
    prog = load(MEANS)
    for big in ([2**60 + i for i in range(12)], [2**60 + 1000 * i for i in range(12)],
                [-(2**62) + 7 * i for i in range(12)], [2**70 + i for i in range(12)]):
        assert prog.eval("avg", big) == [repl_mean(big)] * 12, big
        assert prog.eval("prefix", big) == [repl_mean(big[: q + 1]) for q in range(12)]
    # an earlier int64 sum of 12 ints near 2**60 overflowed to -3.8e17
    assert prog.eval("avg", [2**60 + i for i in range(12)])[0] == 1.152921504606847e18


def _sum_312(values):
    """Python 3.12's sum() (Objects/bltinmodule.c): ints exactly until the first float,
    then floats Neumaier-compensated, ints added as plain doubles."""
    import math
    total, i = 0, 0
    while i < len(values) and not isinstance(values[i], float):
        total, i = total + values[i], i + 1
    if i == len(values):
        return total
    f, c = total + values[i], 0.0
    for x in values[i + 1:]:
        if isinstance(x, float):
            t = f + x
            c += (f - t) + x if abs(f) >= abs(x) else (x - t) + f
            f = t
        else:
            f += float(x)
    return f + c if c and math.isfinite(c) else f


@pytest.mark.parametrize("compensated", [False, True])
def test_the_key_by_key_sum_is_pythons_for_ints_beside_floats(monkeypatch, compensated):
    # ints too large for the plain float path (n * max > 2**53) but within int64 take the
    # int prefix; from Python 3.12 on sum() compensates floats: both replayed here
    from rasp_hydra.rasp import aggregates
    monkeypatch.setattr(aggregates, "COMPENSATED", compensated)
    prog = load(MEANS)
    mixed = [2**52 + 1, 3, 0.1, 2**52 + 7, 0.25, 0.1, 0.1, 5]
    tenths = [0.1] * 21
    for values in (mixed, tenths, [0.1] * 5 + [0.5] + [0.1] * 14):
        n = len(values)
        mean = (_sum_312 if compensated else sum)
        assert prog.eval("avg", values) == [mean(values) * 1.0 / n] * n, values
        assert prog.eval("prefix", values) == [mean(values[: q + 1]) * 1.0 / (q + 1)
                                               for q in range(n)]
    if compensated:
        assert prog.eval("avg", tenths) == [0.1] * 21  # as the REPL on Python 3.12
