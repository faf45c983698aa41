"""Experiment trackers (logger=tensorboard|mlflow): real runs of the command line, read back
through each library's own reader (TensorBoard's EventAccumulator, MLflow's client)."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, cli, metrics

from rasp_hydra import runs, trackers
from rasp_hydra.config import ModelConfig
from rasp_hydra.data import build_splits
from rasp_hydra.tasks import get_task
from rasp_hydra.train import OptimizerConfig, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
RUN = ["lang=hist_10_bos", *TINY, "train.num_threads=1"]


def only_run_dir(root: Path) -> Path:
    (run_dir,) = [p.parent for p in root.rglob("metrics.json")]
    return run_dir


def history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def test_tensorboard_events_hold_every_epoch_and_the_final_metrics(cli_cwd):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli(*RUN, "logger=tensorboard", cwd=cli_cwd, check=True)
    run_dir = only_run_dir(cli_cwd / "outputs")
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    rows = history(run_dir)
    assert len(rows) == 2
    for key, name in (("train_loss", "train_loss"), ("val_loss", "val_loss"),
                      ("val_token_acc", "val_token_acc"), ("lr", "lr"),
                      ("attn_match_0,0", "val_attention_match/0_0")):  # as in MLflow
        scalars = events.Scalars(name)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([float(r[key]) for r in rows])
    m = metrics(run_dir)
    for split in ("train", "valid", "test"):
        (final,) = events.Scalars(f"final/{split}/token_acc")
        assert final.step == 2 and final.value == pytest.approx(m["final"][split]["token_acc"])
    (match,) = events.Scalars("final/test/attention_match/0_0")
    assert match.value == pytest.approx(m["attention_match"]["0,0"])
    assert "train_attn_loss" not in events.Tags()["scalars"]  # None in an unsupervised run
    hparams = events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparams
    start = hparams["_hparams_/session_start_info"]
    assert b"lang.family" in start and b"optimizer.lr" in start
    # the run's name and tags are HParams columns (TensorBoard names a run by its folder)
    assert b"hist_10_bos-2L1H-seed0" in start and b"gamma" in start


def mlflow_client(cwd: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{cwd / 'outputs' / 'mlflow.db'}")


def test_mlflow_run_and_sweep_in_the_local_store(cli_cwd):
    cli(*RUN, "logger=mlflow", cwd=cli_cwd, check=True)
    client = mlflow_client(cli_cwd)
    experiment = client.get_experiment_by_name(trackers.DEFAULT_EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    run_dir = only_run_dir(cli_cwd / "outputs" / "runs")
    assert run.info.status == "FINISHED"
    assert run.data.tags[trackers.RUN_DIR_TAG] == str(run_dir.resolve())
    assert run.info.run_name == "hist_10_bos-2L1H-seed0"  # task, arch (none: the shape), seed
    assert {k: run.data.tags[k] for k in ("task", "arch", "seed", "lr", "gamma", "sweep")} == {
        "task": "hist_10_bos", "arch": "2L1H", "seed": "0", "lr": "0.0003", "gamma": "0.98",
        "sweep": ""}
    params = run.data.params
    assert (params["lang.family"], params["lang.bos"], params["model.d_model"]) == (
        "hist", "True", "16")
    assert params["optimizer.lr"] == "0.0003" and params["logger.mlflow.experiment_name"] == "None"
    rows = history(run_dir)
    for key, name in (("val_token_acc", "val_token_acc"), ("train_loss", "train_loss"),
                      ("attn_match_0,0", "val_attention_match/0_0")):
        steps = client.get_metric_history(run.info.run_id, name)
        assert [s.step for s in steps] == [1, 2]
        assert [s.value for s in steps] == pytest.approx([float(r[key]) for r in rows])
    m = metrics(run_dir)
    assert run.data.metrics["final/valid/token_acc"] == pytest.approx(
        m["final"]["valid"]["token_acc"])
    assert run.data.metrics["final/test/attention_match/0_0"] == pytest.approx(
        m["attention_match"]["0,0"])
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert top == {"metrics.json", "train.log", "plots"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == [
        "plots/curves.png"]
    local = Path(client.download_artifacts(run.info.run_id, "metrics.json",
                                           str(cli_cwd)))
    assert local.read_text() == (run_dir / "metrics.json").read_text()

    # resumed for one more epoch: the same MLflow run goes on from epoch 3
    cli("--resume", str(run_dir), "train.epochs=3", cwd=cli_cwd, check=True)
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    steps = client.get_metric_history(run.info.run_id, "val_token_acc")
    assert [s.step for s in steps] == [1, 2, 3]
    assert steps[-1].value == pytest.approx(float(history(run_dir)[-1]["val_token_acc"]))

    # a 2-job sweep (jobs in parallel) is one experiment named after its directory
    sweep = cli_cwd / "outputs" / "lr_sweep"
    cli("-m", *RUN, "logger=mlflow", "optimizer.lr=1e-3,3e-3", "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}", cwd=cli_cwd, check=True)
    experiment = client.get_experiment_by_name(str(sweep))
    sweep_runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["optimizer.lr"] for r in sweep_runs) == ["0.001", "0.003"]
    assert {r.data.tags[trackers.RUN_DIR_TAG] for r in sweep_runs} == {
        str(sweep / "0"), str(sweep / "1")}
    assert all(r.info.status == "FINISHED" for r in sweep_runs)
    assert sorted((r.data.tags["lr"], r.data.tags["sweep"]) for r in sweep_runs) == [
        ("0.001", str(sweep)), ("0.003", str(sweep))]
    filtered = client.search_runs([experiment.experiment_id],
                                  filter_string="tags.lr = '0.003' and tags.task = 'hist_10_bos'")
    assert [r.data.params["optimizer.lr"] for r in filtered] == ["0.003"]
    assert len(client.search_runs([client.get_experiment_by_name(
        trackers.DEFAULT_EXPERIMENT).experiment_id])) == 1  # the single run stays apart


# W&B offline: no network, no account; its files stay inside the test's directory
WANDB_ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_API_KEY": ""}


def wandb_env(cwd: Path) -> dict:
    return {**WANDB_ENV, **{f"WANDB_{k}_DIR": str(cwd / f"wandb_{k.lower()}")
                            for k in ("DATA", "CACHE", "CONFIG")}}


def wandb_read(path: Path, *flags: str):
    """A .wandb log read by wandb's own reader (`wandb leet inspect --json`): the run's
    summary object with --summary, else its records."""
    import json

    proc = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", *flags,
                           str(path)], capture_output=True, text=True, timeout=120, check=True)
    if "--summary" in flags:
        return json.loads(proc.stdout)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def wandb_logs(run_dir: Path) -> list[Path]:
    """The run's .wandb logs, one per invocation, oldest first."""
    return sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"),
                  key=lambda p: p.parent.name)


def of_type(records: list[dict], kind: str) -> list[dict]:
    return [r[kind] for r in records if r["type"] == kind]


def test_wandb_offline_run_and_its_resume_read_back_with_wandb(cli_cwd):
    env = wandb_env(cli_cwd)
    cli(*RUN, "logger=wandb", cwd=cli_cwd, check=True, env=env)
    run_dir = only_run_dir(cli_cwd / "outputs" / "runs")
    (log,) = wandb_logs(run_dir)
    summary = wandb_read(log, "--summary")
    run_id = runs.RunDir(run_dir).tracker_ids()["wandb"]
    assert summary["run_id"] == run_id and summary["state"] == "finished"
    assert summary["project"] == "rasp_hydra" and summary["exit_code"] == 0
    assert summary["name"] == "hist_10_bos-2L1H-seed0"  # task, arch (none: the shape), seed
    assert summary["tags"] == ["task=hist_10_bos", "arch=2L1H", "seed=0", "lr=0.0003",
                               "gamma=0.98"]  # no sweep
    config = summary["config"]
    assert (config["lang.family"], config["lang.bos"], config["model.d_model"]) == (
        "hist", True, 16)
    assert config["optimizer.lr"] == 0.0003 and config["logger.wandb.project"] == "rasp_hydra"
    rows = history(run_dir)
    logged_records = wandb_read(log)
    logged = of_type(logged_records, "history")
    assert [h["step"]["num"] for h in logged] == [1, 2]
    for key, name in (("val_token_acc", "val_token_acc"), ("train_loss", "train_loss"),
                      ("lr", "lr"), ("attn_match_0,0", "val_attention_match/0_0")):
        assert [h["item"][name] for h in logged] == pytest.approx([float(r[key]) for r in rows])
    m = metrics(run_dir)
    assert summary["summary"]["final/valid/token_acc"] == pytest.approx(
        m["final"]["valid"]["token_acc"])
    assert summary["summary"]["final/test/attention_match/0_0"] == pytest.approx(
        m["attention_match"]["0,0"])
    assert summary["summary"]["status"] == "completed"
    (artifact,) = of_type(logged_records, "artifact")
    assert artifact["type"] == trackers.WANDB_FILES
    files = {c["path"]: c for c in artifact["manifest"]["contents"]}
    assert set(files) == {"metrics.json", "train.log", "plots/curves.png"}
    assert int(files["metrics.json"]["size"]) == (run_dir / "metrics.json").stat().st_size

    # resumed for one more epoch: the same W&B run goes on from epoch 3
    cli("--resume", str(run_dir), "train.epochs=3", cwd=cli_cwd, check=True, env=env)
    first, second = wandb_logs(run_dir)
    assert first == log
    resumed_records = wandb_read(second)
    (resumed,) = of_type(resumed_records, "run")
    assert resumed["run_id"] == run_id and resumed["resume"] is True
    assert [h["step"]["num"] for h in of_type(resumed_records, "history")] == [3]
    again = wandb_read(second, "--summary")
    assert again["summary"]["epochs_run"] == 3 and again["config"]["train.epochs"] == 3



def test_wandb_jobs_of_a_sweep_share_its_group(tmp_path, monkeypatch):
    """Two jobs of one sweep in one process (as a notebook runs them), each its own run."""
    for key, value in wandb_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    sweep = "outputs/multirun/2026-01-01/10-00-00"
    ids = []
    for job, lr in enumerate((1e-3, 3e-3)):
        run_dir = tmp_path / str(job)
        run_dir.mkdir()
        (run_dir / "metrics.json").write_text('{"status": "failed"}')
        name, tags = trackers.identity("sort_10", "predicted", 1, lr, 0.5, sweep)
        group = trackers.make_trackers(["wandb"])
        group.start(run_dir, {"optimizer.lr": lr}, name, sweep, tags)
        group.log_epoch(1, {"epoch": 1, "val_loss": 0.5, "train_attn_loss": None})
        group.finish(run_dir)
        assert not group[0].failed
        (log,) = wandb_logs(run_dir)
        logged = wandb_read(log)
        (run,) = of_type(logged, "run")
        assert run["run_group"] == sweep and run["display_name"] == "sort_10-predicted-seed1"
        assert run["tags"] == ["task=sort_10", "arch=predicted", "seed=1", f"lr={lr:g}",
                               "gamma=0.5", f"sweep={sweep}"]
        (row,) = of_type(logged, "history")
        assert row["item"]["val_loss"] == 0.5 and "train_attn_loss" not in row["item"]
        (exit_,) = of_type(logged, "exit")
        assert exit_["exit_code"] == 1  # a failed run ends its W&B run as failed
        (artifact,) = of_type(logged, "artifact")
        assert [c["path"] for c in artifact["manifest"]["contents"]] == ["metrics.json"]
        ids.append(run["run_id"])
    assert ids[0] != ids[1]


BLOCK_AND_RUN = """
import runpy, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # `import name` now raises ImportError, as if not installed
sys.argv = ["rasp_hydra", *sys.argv[2:]]
runpy.run_module("rasp_hydra", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("logger, blocked", [
    ("mlflow", "mlflow"),
    ("tensorboard", "torch.utils.tensorboard"),
    ("[tensorboard,mlflow]", "mlflow"),
    ("wandb", "wandb"),
])
def test_a_chosen_logger_that_is_not_installed_fails_first(cli_cwd, logger, blocked):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", BLOCK_AND_RUN, blocked, *RUN,
                           f"logger={logger}"], cwd=cli_cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    name = blocked.split(".")[-1]
    assert f"logger={name} needs" in proc.stderr
    assert f"pip install -e '.[{name}]'" in proc.stderr
    assert "Traceback" not in proc.stderr and "start hist_10_bos" not in proc.stdout
    assert not list((cli_cwd / "outputs").rglob("metrics.json"))  # nothing trained


class Broken:
    """A tracker whose backend goes away after the first epoch."""

    name = "broken"

    def __init__(self):
        self.calls = []

    def start(self, *args):
        self.calls.append("start")

    def log_epoch(self, epoch, row):
        self.calls.append(epoch)
        if epoch == 2:
            raise ConnectionError("server gone")

    def finish(self, *args):
        self.calls.append("finish")


def test_a_tracker_failing_mid_run_warns_once_and_training_goes_on(tmp_path, caplog):
    task = get_task("hist_10_bos")
    splits = build_splits(task, sizes={"train": 100, "valid": 20, "test": 20}, max_len=5)
    cfg = ModelConfig(layers=1, heads=1,
                      d_model=16, ff=32, max_len=6)
    broken = Broken()
    group = trackers.TrackerGroup([trackers.Guarded(broken)])
    group.start(tmp_path, {"a": 1}, "run", None)
    with caplog.at_level(logging.WARNING, logger="rasp_hydra.trackers"):
        out = train(task, splits, cfg, OptimizerConfig(), train_cfg=TrainConfig(
            epochs=4, batch_size=20, num_threads=1), run_dir=tmp_path, log=lambda _: None,
            on_epoch_end=group.log_epoch)
        group.finish(tmp_path)
    assert out["status"] == "completed" and out["epochs_run"] == 4
    assert broken.calls == ["start", 1, 2]  # switched off after its failure
    warnings = [r.message for r in caplog.records]
    assert len(warnings) == 1 and "logger broken failed in log_epoch" in warnings[0]
    log = (tmp_path / "train.log").read_text()
    assert log.count("logger broken failed") == 1 and "server gone" in log
    assert log.rstrip().splitlines()[-1].startswith("final ")  # the run went on to the end


def test_flatten_and_final_scalars():
    from rasp_hydra.config import Config, LangConfig, LoggerConfig, MlflowConfig

    flat = trackers.config_params({"logger": LoggerConfig(mlflow=MlflowConfig()),
                             "model": {"layers": 2}})
    assert flat == {"logger.tensorboard": None,
                    "logger.mlflow.tracking_uri": "sqlite:///outputs/mlflow.db",
                    "logger.mlflow.experiment_name": None, "logger.wandb": None,
                    "model.layers": 2}
    assert set(trackers.config_params(Config(lang=LangConfig(family="sort")))) >= {
        "lang.family", "model.positions", "train.device", "logger.mlflow"}
    params = trackers.config_params(Config(lang=LangConfig(family="sort")))
    assert params["model.positions"] == "sin"
    assert trackers.final_scalars({"final": {"valid": {"token_acc": 0.5, "loss": float("nan")}},
                                   "status": "completed"}) == {"final/valid/token_acc": 0.5}
    assert trackers.from_config(LoggerConfig()) == []
    with pytest.raises(ValueError, match="allowed: none, tensorboard, mlflow, wandb"):
        trackers.make_trackers(["neptune"])


def test_doctests_of_trackers_and_the_objective():
    import doctest

    from rasp_hydra import job

    assert doctest.testmod(trackers).failed == 0
    assert doctest.testmod(job).failed == 0
