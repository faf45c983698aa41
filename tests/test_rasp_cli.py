"""``python -m rasp_hydra.rasp``: each command, and each kind of error as one paragraph on
stderr with exit code 2 (never a traceback), run as a user runs it (a subprocess per
command and per kind of error; more variants of each kind run ``main`` in-process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rasp_hydra.rasp.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "rasp_hydra" / "rasp" / "programs"


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "rasp_hydra.rasp", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd or ROOT, timeout=120)


def error_of(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_names():
    r = cli(PROGRAMS / "sort_bos.rasp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["function: selector_width_bos", "function: sort_with_bos",
                                     "s-op: sort_key", "s-op: sort_bos"]


def test_eval_prints_as_the_repl(tmp_path):
    r = cli(PROGRAMS / "sort_bos.rasp", "--eval", "sort_bos", "§dcab")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'sort_bos("§dcab") = [§, a, b, c, d] (strings)'
    prog = tmp_path / "ints.rasp"
    prog.write_text("x = tokens_int + 1; y = x / 2; z = x > 2; n = length; same = "
                    "select(tokens_int, tokens_int, ==); k = 3;")
    lines = [cli(prog, "--eval", name, "[1, 2, 3]").stdout.strip() for name in "xyzn"]
    assert lines == ["x([1, 2, 3]) = [2, 3, 4] (ints)",
                     "y([1, 2, 3]) = [1.0, 1.5, 2.0] (floats)",
                     "z([1, 2, 3]) = [F, T, T] (bools)",
                     "n([1, 2, 3]) = [3]*3 (ints)"]
    assert cli(prog, "--eval", "same", "[1, 2, 1]").stdout.splitlines() == [
        "same([1, 2, 1]) =", "    1 2 1", "1 | 1   1", "2 |   1  ", "1 | 1   1"]
    assert cli(prog, "--eval", "k", "x").stdout.strip() == "k = 3"


def test_budget_names_the_selects_by_layer():
    r = cli(PROGRAMS / "hist2_bos.rasp", "--budget", "hist2_bos")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "hist2_bos: 2 layers, heads per layer 2/1 (budget: 2 x 2)"
    assert lines[1:4] == ["layer 0:", "  head 0: with_bos = same_token or select(indices, 0, ==)",
                          "  head 1: with_bos = earlier_copy or select(indices, 0, ==)"]
    assert "layer 1:" in lines and any("tokens_with_my_count" in x for x in lines)
    r = cli(PROGRAMS / "dyck2_ptf.rasp", "--budget", "dyck2_ptf")
    assert r.stdout.splitlines()[0] == (
        "dyck2_ptf: 4 layers, heads per layer 1/2/1/1 (budget: 4 x 2)")


def test_draw_writes_a_figure(tmp_path):
    out = tmp_path / "figs" / "sort.png"
    r = cli(PROGRAMS / "sort_bos.rasp", "--draw", "sort_bos", "--input", "§cab", "--out", out)
    assert r.returncode == 0, r.stderr
    import matplotlib.image

    image = matplotlib.image.imread(out)
    assert image.shape[0] > 200 and image.shape[1] > 200


def test_draw_shows_each_head_on_its_layer(tmp_path):
    from rasp_hydra.rasp import evaluate, load
    from rasp_hydra.rasp.__main__ import draw_compiled

    prog = load(PROGRAMS / "dyck2_ptf.rasp")
    compiled = prog.compile("dyck2_ptf")
    inp = "({})"
    matrices = {h: evaluate(s, inp) for h, s in compiled.head_selects.items()}
    fig = draw_compiled("dyck2_ptf", compiled, matrices, list(inp),
                        prog.eval("dyck2_ptf", inp), tmp_path / "d.png")
    drawn = [ax for ax in fig.get_axes() if ax.images]
    assert len(drawn) == 5  # heads 1/2/1/1
    assert [ax.get_title().split(":")[0] for ax in drawn] == [
        "head 0", "head 0", "head 1", "head 0", "head 0"]
    titles = " ".join(ax.get_title() for ax in drawn)
    assert "prefix" in titles and "opener_of" in titles
    assert drawn[0].images[0].get_array().tolist() == [
        [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]  # prefix: k <= q
    layer_titles = [sf._suptitle.get_text() for sf in fig.subfigs]
    assert layer_titles[0].startswith("layer 0 computes: n_opens, n_closes, depth")
    assert "dyck2_ptf" in layer_titles[3]


ERROR_KINDS = {  # one of each kind, through a subprocess
    "syntax": ("x = (1 + ;", ("--eval", "x", "a"), ["line 1, column 10", "unexpected ';'"]),
    "unknown name": ("flip = indices;", ("--eval", "flp", "ab"),
                     ["Unknown name 'flp'", "Did you mean 'flip'"]),
    "wrong type": ("x = aggregate(tokens, tokens);", (),
                   ["line 1", "must be a selector", "s-op 'tokens'"]),
    "non-numeric aggregate": ("x = aggregate(full_s, tokens);", ("--eval", "x", "ab"),
                              ["input ['a', 'b']", "several keys", "non-numeric"]),
    "usage": ("x = tokens;", ("--draw", "x", "--input", "ab"),
              ["--draw NAME needs --input", "--out"]),
}


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_each_error_kind_through_the_command(tmp_path, kind):
    source, args, words = ERROR_KINDS[kind]
    prog = tmp_path / "prog.rasp"
    prog.write_text(source)
    message = error_of(cli(prog, *args))
    for w in words:
        assert w in message, message


@pytest.mark.parametrize("source, args, words", [
    *ERROR_KINDS.values(),
    ("x = select(tokens, tokens, =>);", (), ["line 1, column 28", "comparison"]),
    ("a = 1;\nb = lenght;", (), ["line 2", "Unknown name 'lenght'", "'length'"]),
    ("x = indicator(1);", (), ["indicator takes an s-op"]),
    ("x = tokens_int;", ("--eval", "x", "ab"), ["tokens_int", "int()"]),
    ("x = tokens;", ("--eval", "x", ""), ["input is empty"]),
    ("k = 3;", ("--budget", "k"), ["'k' is the number 3, not an s-op"]),
    ('load "missing";', (), ["Cannot load 'missing'"]),
    ("length = 3;", (), ["Cannot assign 'length'"]),
    ("x = tokens;", ("--eval", "x", "ab", "--out", "x.png"), ["--input and --out go with"]),
])
def test_errors_are_one_paragraph(tmp_path, capsys, source, args, words):
    prog = tmp_path / "prog.rasp"
    prog.write_text(source)
    assert main([str(prog), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err, err


def test_missing_file_is_an_error(tmp_path):
    assert "No RASP file" in error_of(cli(tmp_path / "nothing.rasp"))
