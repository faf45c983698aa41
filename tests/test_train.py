"""The training loop and run directory, through the library (no Hydra, no subprocess)."""

import csv
import json
import math
import os
import signal
import threading

import pytest
import torch

from rasp_hydra import runs
from rasp_hydra.config import ModelConfig
from rasp_hydra.data import build_splits
from rasp_hydra.tasks import get_task
from rasp_hydra.train import (
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    selector_targets,
    train,
)


def setup(name="reverse_10", n_train=200, max_len=6, layers=1, heads=1, d=16, dropout=0.0):
    task = get_task(name)
    splits = build_splits(task, sizes={"train": n_train, "valid": 40, "test": 40},
                          min_len=1, max_len=max_len)
    cfg = ModelConfig(layers=layers, heads=heads,
                      d_model=d, ff=2 * d, dropout=dropout, max_len=max_len + int(task.bos))
    return task, splits, cfg


def tc(**kw):
    return TrainConfig(**{"epochs": 3, "batch_size": 20, "num_threads": 1, **kw})


def quiet(_line):
    pass


def test_run_directory_contract(tmp_path):
    task, splits, cfg = setup("hist_10_bos")
    out = train(task, splits, cfg, OptimizerConfig(lr=1e-3), ScheduleConfig(gamma=0.9),
                tc(), tmp_path, meta={"arch": "predicted"}, log=quiet)
    m = runs.read_metrics(tmp_path)
    assert m == json.loads(json.dumps(out))
    assert m["status"] == "completed" and m["reason"] is None and m["error"] is None
    assert (m["task"], m["family"], m["bos"], m["with_attns"]) == ("hist_10_bos", "hist",
                                                                  True, False)
    assert m["arch"] == "predicted" and m["layers"] == 1 and m["heads"] == 1
    assert (m["d_model"], m["ff"], m["lr"], m["gamma"]) == (16, 32, 1e-3, 0.9)
    assert (m["predicted_layers"], m["predicted_heads"]) == (1, 1)
    assert m["params"] > 0 and m["epochs_run"] == 3 and 1 <= m["best_epoch"] <= 3
    assert m["wall_seconds"] > 0 and m["tokens_per_second"] > 0 and m["num_threads"] == 1
    assert m["checkpoint"] == "best"
    assert set(m["final"]) == {"train", "valid", "test"}
    for split in m["final"].values():
        assert split["loss"] > 0 and 0 <= split["seq_acc"] <= split["token_acc"] <= 1
    assert set(m["attention_match"]) == {runs.head_key(h) for h in task.selector_heads}
    assert all(0 <= v <= 1 for v in m["attention_match"].values())

    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert set(runs.HISTORY_COLUMNS) <= set(rows[0])
    assert "attn_match_0,0" in rows[0]
    assert math.isclose(float(rows[1]["lr"]), 1e-3 * 0.9)
    assert runs.RunDir(tmp_path).history()[2]["epoch"] == 3

    log = (tmp_path / "train.log").read_text().splitlines()
    assert sum(line.startswith("epoch") for line in log) == 3
    assert log[-1].startswith("final") and "test acc" in log[-1]
    assert (tmp_path / "plots/curves.png").stat().st_size > 1000

    for which in ("best", "last"):
        ck = torch.load(tmp_path / "checkpoints" / f"{which}.pt", weights_only=True)
        assert {"model", "model_config", "task", "epoch"} <= set(ck)
        assert ck["task"] == "hist_10_bos"
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))

    model, task2, run_cfg, which = runs.load_model(tmp_path)
    assert which == "best" and task2.name == task.name and run_cfg is None
    assert not model.training
    assert runs.find_runs(tmp_path) == [tmp_path]  # the root itself is a run


def test_supervised_sort_learns_its_attention(tmp_path):
    task, splits, cfg = setup("sort_10_with_attns", n_train=400, max_len=6, layers=2, d=32)
    out = train(task, splits, cfg, OptimizerConfig(lr=3e-3), ScheduleConfig(),
                tc(epochs=6), tmp_path, log=quiet)
    hist = runs.RunDir(tmp_path).history()
    assert hist[-1]["train_attn_loss"] < 0.5 * hist[0]["train_attn_loss"]
    assert hist[-1]["val_attn_loss"] < hist[0]["val_attn_loss"]
    for head in ("0,0", "1,0"):
        assert hist[-1][f"attn_match_{head}"] > hist[0][f"attn_match_{head}"]
        assert out["attention_match"][head] > 0.5
    assert hist[-1]["attn_match_1,0"] > hist[0]["attn_match_1,0"] + 0.15
    assert out["supervised_heads"] == ["0,0", "1,0"]
    assert "attn_loss" in out["final"]["test"]


def test_supervision_needs_the_heads(tmp_path):
    task, splits, cfg = setup("sort_10_with_attns", layers=1)
    with pytest.raises(ValueError, match="layer 1 head 0"):
        train(task, splits, cfg, train_cfg=tc(), run_dir=tmp_path, log=quiet)


def test_selector_targets_rows():
    sel = torch.tensor([[[True, False, False], [False, False, False], [False, False, False]]])
    keys = torch.tensor([[True, True, False]])
    t = selector_targets(sel, keys)
    torch.testing.assert_close(t[0, 0], torch.tensor([1.0, 0.0, 0.0]))  # S / (count + n * 1e-8)
    torch.testing.assert_close(t[0, 1], torch.tensor([0.5, 0.5, 0.0]))  # empty row: uniform


def test_reset_patience_reloads_best(tmp_path):
    task, splits, cfg = setup()
    # lr 1e-30 moves no float32 weight: the validation loss never improves after epoch 1
    train(task, splits, cfg, OptimizerConfig(lr=1e-30), train_cfg=tc(epochs=4, reset_patience=1),
          run_dir=tmp_path, log=quiet)
    assert "reset to best of epoch 1" in (tmp_path / "train.log").read_text()


def test_interrupt_flag_stops_cleanly(tmp_path):
    task, splits, cfg = setup()
    stop = threading.Event()

    def after(epoch, row):
        if epoch == 1:
            stop.set()

    out = train(task, splits, cfg, train_cfg=tc(epochs=5), run_dir=tmp_path, stop=stop,
                on_epoch_end=after, log=quiet)
    assert out["status"] == "interrupted" and out["epochs_run"] == 1
    assert set(out["final"]) == {"train", "valid", "test"}
    assert runs.read_metrics(tmp_path)["status"] == "interrupted"
    model, _, _, which = runs.load_model(tmp_path, "best")
    assert which == "best"
    assert runs.load_model(tmp_path)[3] == "last"  # auto: the run did not complete


def _comparable(m):
    keep = ("status", "epochs_run", "best_epoch", "final", "attention_match", "params")
    return {k: m[k] for k in keep}


def _history(run_dir):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runs.RunDir(run_dir).history()]


def test_resume_after_crash_is_exact(tmp_path):
    task, splits, cfg = setup(dropout=0.1)
    opt, sched = OptimizerConfig(lr=3e-3), ScheduleConfig(gamma=0.9)
    ref = train(task, splits, cfg, opt, sched, tc(epochs=4, reset_patience=1),
                tmp_path / "ref", log=quiet)

    def crash(epoch, row):
        if epoch == 2:
            raise RuntimeError("simulated kill")

    with pytest.raises(RuntimeError, match="simulated kill"):
        train(task, splits, cfg, opt, sched, tc(epochs=4, reset_patience=1),
              tmp_path / "run", on_epoch_end=crash, log=quiet)
    assert runs.read_metrics(tmp_path / "run")["status"] == "failed"
    out = train(task, splits, cfg, opt, sched, tc(epochs=4, reset_patience=1, resume=True),
                tmp_path / "run", log=quiet)
    assert out["resumes"] == 1
    assert _comparable(out) == _comparable(ref)  # bit for bit
    assert _history(tmp_path / "run") == _history(tmp_path / "ref")


def test_resume_after_interrupt_mid_epoch_is_exact(tmp_path):
    task, splits, cfg = setup(dropout=0.1)
    ref = train(task, splits, cfg, train_cfg=tc(), run_dir=tmp_path / "ref", log=quiet)
    stop = threading.Event()
    stop.set()  # stops after the first batch of epoch 1
    out = train(task, splits, cfg, train_cfg=tc(), run_dir=tmp_path / "run", stop=stop,
                log=quiet)
    assert out["status"] == "interrupted" and out["epochs_run"] == 0
    assert (tmp_path / "run" / "checkpoints/best.pt").is_file()
    # resume into another directory, naming the interrupted one
    out = train(task, splits, cfg, train_cfg=tc(), run_dir=tmp_path / "resumed", log=quiet,
                resume_from=tmp_path / "run")
    assert _comparable(out) == _comparable(ref)
    assert _history(tmp_path / "resumed") == _history(tmp_path / "ref")


@pytest.mark.slow
def test_hist_10_bos_one_layer_one_head_learns(tmp_path):
    task = get_task("hist_10_bos")
    splits = build_splits(task, sizes={"train": 3000, "valid": 200, "test": 500},
                          min_len=1, max_len=6)
    cfg = ModelConfig(layers=1, heads=1,
                      d_model=64, ff=128, max_len=7)
    out = train(task, splits, cfg, OptimizerConfig(lr=1e-3), ScheduleConfig(gamma=0.98),
                TrainConfig(epochs=40, batch_size=50, num_threads=1), tmp_path, log=quiet)
    assert out["final"]["test"]["token_acc"] >= 0.99


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_interrupts_after_the_batch(tmp_path, sig):
    task, splits, cfg = setup()
    before = signal.getsignal(sig)

    def send(epoch, row):
        os.kill(os.getpid(), sig)

    out = train(task, splits, cfg, train_cfg=tc(epochs=5), run_dir=tmp_path,
                on_epoch_end=send, log=quiet)
    assert out["status"] == "interrupted" and out["reason"] == sig.name
    assert out["epochs_run"] == 1 and out["final"]["test"]["token_acc"] >= 0
    assert signal.getsignal(sig) is before  # handlers restored
    torch.load(tmp_path / "checkpoints/best.pt", weights_only=True)


def test_runs_helpers_read_hydra_dirs(tmp_path):
    from omegaconf import OmegaConf

    task, splits, cfg = setup("hist_10_bos")
    run = tmp_path / "sweep" / "0"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"lang": {"family": "hist", "size": 10, "bos": True,
                                              "with_attns": False}}), run / ".hydra/config.yaml")
    only_config = tmp_path / "sweep" / "1"
    (only_config / ".hydra").mkdir(parents=True)
    (only_config / ".hydra/config.yaml").write_text("lang: {}\n")
    train(task, splits, cfg, train_cfg=tc(epochs=1), run_dir=run, log=quiet)
    assert runs.find_runs(tmp_path) == [run, only_config]
    model, task2, run_cfg, which = runs.load_model(run)
    assert task2.name == "hist_10_bos" and run_cfg.lang.size == 10 and which == "best"
    assert runs.read_metrics(only_config) == {} and runs.RunDir(only_config).history() == []
    runs.write_metrics(only_config, runs.RunRecord(status="skipped", reason="no such arch",
                                                  task="hist_10_bos"))
    assert runs.read_metrics(only_config)["status"] == "skipped"
    with pytest.raises(FileNotFoundError):
        runs.load_model(only_config)


def test_stops_after_perfect_validation_epochs(tmp_path):
    task, splits, cfg = setup("reverse_10", max_len=1)  # one token: reverse is the identity
    out = train(task, splits, cfg, OptimizerConfig(lr=1e-2),
                train_cfg=tc(epochs=40, perfect_acc_epochs=2), run_dir=tmp_path, log=quiet)
    hist = runs.RunDir(tmp_path).history()
    assert out["epochs_run"] < 40 and out["status"] == "completed"
    assert [r["val_token_acc"] for r in hist[-2:]] == [1.0, 1.0]
    assert len(hist) == 2 or hist[-3]["val_token_acc"] < 1.0
    assert "stop: validation accuracy 1.0 for 2 epochs" in (tmp_path / "train.log").read_text()


def test_the_progress_bar_shows_loss_and_rate_without_warnings(tmp_path, capsys):
    import warnings

    task, splits, cfg = setup(n_train=1000)  # 50 batches: the bar's postfix updates
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(task, splits, cfg, train_cfg=tc(epochs=1, progress="true"), run_dir=tmp_path,
              log=quiet)
    assert not [w for w in caught if "requires_grad" in str(w.message)]
    err = capsys.readouterr().err
    assert "epoch 1" in err and "loss=" in err and "tok_s=" in err
