"""The drawer on real tiny runs: finished, interrupted, unfinished, a 100-token alphabet,
a sweep with a skipped run, and the errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
torch = pytest.importorskip("torch")

from matplotlib.image import imread  # noqa: E402

from rasp_hydra import runs  # noqa: E402
from rasp_hydra.draw import DrawError, draw_all, draw_run, main, safe_name  # noqa: E402

SORT = "sort_10_bos_with_attns"


def _train(run_dir: Path, name: str, layers: int, heads: int, max_len: int, data_len: int,
           epochs: int, stop_after: int | None = None) -> dict:
    from rasp_hydra.config import ModelConfig
    from rasp_hydra.data import build_splits
    from rasp_hydra.tasks import get_task
    from rasp_hydra.train import TrainConfig, train

    task = get_task(name)
    splits = build_splits(task, sizes={"train": 150, "valid": 30, "test": 30},
                          max_len=data_len)
    cfg = ModelConfig(layers=layers, heads=heads,
                      d_model=16, ff=32, max_len=max_len)
    stop = threading.Event()

    def on_epoch_end(epoch, row):
        if stop_after is not None and epoch >= stop_after:
            stop.set()

    tc = TrainConfig(epochs=epochs, num_threads=1, progress="false")
    return train(task, splits, cfg, train_cfg=tc,
                 run_dir=run_dir, stop=stop, on_epoch_end=on_epoch_end,
                 handle_signals=False, log=lambda line: None)


@pytest.fixture(scope="session")
def sweep(tmp_path_factory) -> Path:
    """sweep/0: finished sort run; sweep/1: the same cut short after epoch 1 of 3;
    sweep/2: a skipped run (no checkpoint)."""
    root = tmp_path_factory.mktemp("sweep")
    m = _train(root / "0", SORT, 2, 1, max_len=8, data_len=6, epochs=1)
    assert m["status"] == "completed"
    m = _train(root / "1", SORT, 2, 1, max_len=8, data_len=6, epochs=3, stop_after=1)
    assert m["status"] == "interrupted"
    runs.write_metrics(root / "2", runs.RunRecord(
        status="skipped", reason="arch=fewer_layers would need 0 layers", task=SORT))
    return root


@pytest.fixture(scope="session")
def wide(tmp_path_factory) -> Path:
    """hist over the 100-token alphabet (letters, digits, punctuation, whitespace), one layer
    and head, positions up to 101, trained on short sequences for one epoch."""
    run_dir = tmp_path_factory.mktemp("wide")
    _train(run_dir, "hist_100_bos", 1, 1, max_len=101, data_len=4, epochs=1)
    (run_dir / ".hydra").mkdir()  # as a Hydra run has it: the drawer reads lang.max_len
    (run_dir / ".hydra" / "config.yaml").write_text(
        "lang: {family: hist, size: 100, bos: true, with_attns: false, min_len: 1, "
        "max_len: 4}\n")
    return run_dir


def _expected(run_dir: Path, which: str, sequence: str):
    """The model's output and the task's correct output, recomputed here."""
    model, task, _, _ = runs.load_model(run_dir, which)
    tokens, lengths = task.encode([sequence])
    with torch.no_grad():
        logits, _, _ = model(tokens, lengths)
    out = task.decode_outputs(logits.argmax(-1), lengths)[0]
    correct = task.decode_outputs(task.outputs(tokens, lengths), lengths)[0]
    return out, correct


def _line(text: str, prefix: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    return line[len(prefix):].strip()


def test_finished_run(sweep):
    run = sweep / "0"
    res = draw_run(run, "edcba", numbers=2)
    d = run / "maps" / "edcba"
    assert res["dir"] == d
    names = sorted(p.name for p in d.iterdir())
    assert names == ["attention_layer0.png", "attention_layer1.png", "in_out.txt",
                     "scores_layer0.png", "scores_layer1.png"]
    text = (d / "in_out.txt").read_text()
    assert text == res["text"]
    out, correct = _expected(run, "best", "edcba")
    assert _line(text, "output:").split() == out
    assert _line(text, "correct:").split() == correct == ["§", "a", "b", "c", "d", "e"]
    assert res["record"]["checkpoint"] == "best"
    assert "completed" in _line(text, "checkpoint:")
    acc = runs.read_metrics(run)["final"]["test"]["token_acc"]
    assert _line(text, "test accuracy:").startswith(f"{acc:.4f}")
    assert _line(text, "run:") == str(run)
    assert "layers=2 heads=1 d_model=16" in _line(text, "config:")
    assert "layer 0 head 0 (before, target):" in text
    assert "layer 1 head 0 (place, target):" in text
    # match = mean over query positions of the attention mass on the selected keys
    model, task, _, _ = runs.load_model(run, "best")
    tokens, lengths = task.encode(["edcba"])
    with torch.no_grad():
        _, attn, _ = model(tokens, lengths, need_attention=True)
    for (layer, head), sel in task.selectors(tokens, lengths).items():
        want = float((attn[layer][0, head] * sel[0]).sum(-1).mean())
        got = res["record"]["attention_match"][f"{layer},{head}"]
        assert got == pytest.approx(want, abs=1e-6)
    # the attention figure has the selector row below the heads: taller than wide
    att = imread(d / "attention_layer1.png")
    sc = imread(d / "scores_layer1.png")
    assert att.shape[0] > att.shape[1] >= 300
    assert att.shape[0] > sc.shape[0] and sc.shape[1] == att.shape[1]


def test_interrupted_run_uses_last(sweep):
    run = sweep / "1"
    res = draw_run(run, "cab")
    rec = res["record"]
    assert rec["status"] == "interrupted" and rec["checkpoint"] == "last"
    assert "auto: the run is interrupted" in res["text"]
    out, correct = _expected(run, "last", "cab")
    assert rec["output"] == out and rec["correct"] == correct == ["§", "a", "b", "c"]
    assert _line(res["text"], "output:").split() == out


def test_unfinished_run_says_not_finished(sweep, tmp_path):
    run = tmp_path / "running"
    shutil.copytree(sweep / "0", run, ignore=shutil.ignore_patterns("maps"))
    m = runs.read_metrics(run)
    m.update(status="running", final={}, attention_match={})
    (run / "metrics.json").write_text(json.dumps(m))
    res = draw_run(run, "ab")
    assert res["record"]["checkpoint"] == "last"
    assert _line(res["text"], "test accuracy:").startswith("not finished")


def test_hundred_tokens_whitespace_and_long_sequence(wide, sweep):
    from rasp_hydra.tasks import ALL_TOKENS

    seq = ALL_TOKENS  # 100 tokens: letters, digits, punctuation (/ \ ...), whitespace
    assert len(seq) == 100
    res = draw_run(wide, seq)
    d = res["dir"]
    assert d.parent == wide / "maps" and d.is_dir()
    assert "/" not in d.name and "\\" not in d.name and not any(c.isspace() for c in d.name)
    assert len(d.name) <= 110
    big = imread(d / "attention_layer0.png")  # one head and its selector, n = 101
    small = draw_run(sweep / "0", "ab")["dir"]  # the same layout, n = 3
    little = imread(small / "attention_layer0.png")
    assert big.shape[0] > 2 * little.shape[0] and big.shape[1] > 2 * little.shape[1]
    out, correct = _expected(wide, "best", seq)
    assert res["record"]["output"] == out and res["record"]["correct"] == correct
    assert "longer than the training sequences" in res["text"]
    assert "input: " + repr(seq) in res["text"]


def test_safe_names_are_distinct():
    seqs = ["ab", "aB", "Ab", "a/b", "a\\b", "a b", "a\tb", "a%b", "a.b", ".", "..", "-a"]
    names = [safe_name(s) for s in seqs]
    assert len(set(n.lower() for n in names)) == len(seqs)
    for n in names:
        assert n not in (".", "..") and all(c.isalnum() or c in "%_-~" for c in n)
    assert safe_name("ab c") == "ab%20c" and safe_name("a/b") == "a%2Fb"
    assert len(safe_name("x" * 500)) < 120 and safe_name("x" * 500) != safe_name("x" * 501)


def test_all_draws_every_run_and_passes_over_skipped(sweep):
    res = draw_all(sweep, "ba", echo=lambda s: None)
    assert [r["dir"] for r in res["drawn"]] == [sweep / "0" / "maps" / "ba",
                                                sweep / "1" / "maps" / "ba"]
    ((passed, why),) = res["passed"]
    assert passed == sweep / "2" and "no checkpoint" in why and "skipped" in why


@pytest.mark.parametrize("args, words", [
    (["--sequence", "abz"], ["'z'", "not in the alphabet", "'abcdefghij'"]),
    (["--sequence", "abcdefgh"], ["8 tokens", "at most 8 positions", "at most 7 tokens"]),
    (["--sequence", ""], ["empty"]),
])
def test_sequence_errors(sweep, capsys, args, words):
    assert main([str(sweep / "0"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for w in words:
        assert w in err


def test_directory_errors(sweep, tmp_path, capsys):
    assert main([str(tmp_path), "--sequence", "ab"]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert main([str(sweep), "--sequence", "ab"]) == 2
    assert "--all" in capsys.readouterr().err
    assert main([str(sweep / "2"), "--sequence", "ab"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main([str(tmp_path), "--all", "--sequence", "ab"]) == 2
    assert "holds no run" in capsys.readouterr().err
    runs.write_metrics(tmp_path / "only_skipped" / "0",
                       runs.RunRecord(status="skipped", reason="no layers"))
    assert main([str(tmp_path / "only_skipped"), "--all", "--sequence", "ab"]) == 2
    out, err = capsys.readouterr()
    assert "passed over" in out and "no run below" in err
    with pytest.raises(DrawError, match="no last checkpoint"):
        bare = tmp_path / "bare"
        shutil.copytree(sweep / "0", bare, ignore=shutil.ignore_patterns("maps", "last.pt"))
        draw_run(bare, "ab", which="last")


def test_cli(sweep, capsys):
    assert main([str(sweep / "1"), "--sequence", "bad", "--numbers", "1",
                 "--which", "best"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint: best (epoch 1; asked for best)" in out
    assert "output:" in out and "figures:" in out
    assert (sweep / "1" / "maps" / "bad" / "scores_layer0.png").is_file()


def test_cli_error_in_a_subprocess(sweep):
    proc = subprocess.run([sys.executable, "-m", "rasp_hydra.draw", str(sweep / "2"),
                           "--sequence", "ab"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("link", ["maps", "maps/abc/in_out.txt"])
def test_the_drawer_refuses_a_linked_maps_folder_or_figure(sweep, tmp_path, link):
    # a maps/ (or a figure) linked to another run's would be overwritten through the link
    run = Path(shutil.copytree(sweep / "0", tmp_path / "run",
                               ignore=shutil.ignore_patterns("maps")))
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "abc").mkdir(parents=True)
    (elsewhere / "abc" / "in_out.txt").write_text("another run's drawing\n")
    target = elsewhere if link == "maps" else elsewhere / "abc" / "in_out.txt"
    (run / link).parent.mkdir(parents=True, exist_ok=True)
    (run / link).symlink_to(target)
    draw = [sys.executable, "-m", "rasp_hydra.draw", str(run), "--sequence", "abc"]
    proc = subprocess.run(draw, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{link} -> {target}" in proc.stderr and "--out DIR" in proc.stderr
    assert sorted(p.name for p in elsewhere.rglob("*")) == ["abc", "in_out.txt"]
    assert (elsewhere / "abc" / "in_out.txt").read_text() == "another run's drawing\n"
    # the way out it names: another folder
    proc = subprocess.run([*draw, "--out", str(tmp_path / "figs")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "figs" / "abc" / "attention_layer1.png").is_file()
    assert (elsewhere / "abc" / "in_out.txt").read_text() == "another run's drawing\n"
