"""Hyperparameter search: `+search=optuna_lr` runs a real Optuna (4+) study through the
command line with the project's own sweeper, keeps it in a SQLite storage in a fresh
folder, continues it without repeating it, prunes, and survives trials that fail."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import TINY, cli, metrics
from omegaconf import OmegaConf

from rasp_hydra.cli import search
from rasp_hydra.report import load_sweep
from tests.records import write_multirun

ROOT = Path(__file__).resolve().parents[1]
# Trials in the sweeper's own process (one torch import, no worker start-up); the joblib
# launcher runs the pruning test and the console test below.
SEARCH = ["-m", "+search=optuna_lr", "hydra/launcher=basic", "lang=hist_10_bos", *TINY,
          "train.num_threads=1"]


def tags(output: str, word: str) -> list[str]:
    """The `[k/N]` tags of the console lines `[k/N] WORD ...`."""
    return re.findall(rf"(\[\d+(?:/\d+)?\]) {word} ", output)


def test_a_stored_study_starts_in_a_fresh_folder_and_continues_without_repeating(cli_cwd):
    storage = f"sqlite:///{cli_cwd / 'fresh' / 'studies' / 'optuna.db'}"  # no such folder
    study = ["hydra.sweeper.study_name=lr_study", f"hydra.sweeper.storage={storage}"]
    first, second = cli_cwd / "first", cli_cwd / "second"
    proc = cli(*SEARCH, *study, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2",
               f"hydra.sweep.dir={first}", cwd=cli_cwd, check=True)
    out = proc.stdout + proc.stderr
    assert "study 'lr_study'" in out and "no trials yet" in out
    assert tags(out, "done") == ["[1/3]", "[2/3]", "[3/3]"]
    proc = cli(*SEARCH, *study, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
               f"hydra.sweep.dir={second}", cwd=cli_cwd, check=True)
    out = proc.stdout + proc.stderr
    assert "3 trials already (3 complete)" in out
    assert tags(out, "done") == ["[1/2]", "[2/2]"]
    assert "start trial 3:" in out and "start trial 4:" in out

    loaded = optuna.load_study(study_name="lr_study", storage=storage)
    trials = loaded.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # the continuation drew new parameters (the sampler's start-up did not restart)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 5
    assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
    # each run directory records its trial; the value is the run's VALIDATION accuracy
    run_of = {metrics(d)["trial"]: d for sweep in (first, second)
              for d in sorted(sweep.iterdir()) if d.name.isdigit()}
    assert sorted(run_of) == [0, 1, 2, 3, 4]
    for trial in trials:
        run_dir = run_of[trial.number]
        assert trial.value == pytest.approx(metrics(run_dir)["final"]["valid"]["token_acc"])
        config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        assert config.optimizer.lr == pytest.approx(trial.params["optimizer.lr"])
        assert config.schedule.gamma == pytest.approx(trial.params["schedule.gamma"])
        assert 1e-4 <= trial.params["optimizer.lr"] <= 1e-2
        assert 0.9 <= trial.params["schedule.gamma"] <= 1.0
    assert loaded.best_value in [t.value for t in trials]
    assert loaded.best_value == pytest.approx(
        max(metrics(d)["final"]["valid"]["token_acc"] for d in run_of.values()))
    results = OmegaConf.load(second / "optimization_results.yaml")
    assert results.best_value == pytest.approx(loaded.best_value)
    assert results.best_trial == loaded.best_trial.number
    # the report's and load_sweep's trial column is Optuna's number
    assert sorted(load_sweep(second)["trial"]) == [3, 4]


def test_a_search_whose_trials_all_fail_ends_with_a_clear_error(cli_cwd):
    # hist has a RASP budget of 1 head: arch=fewer_heads cannot exist, every job is skipped
    storage = f"sqlite:///{cli_cwd / 'optuna.db'}"
    sweep = cli_cwd / "sweep"
    proc = cli(*SEARCH, "arch=fewer_heads", "hydra.sweeper.n_trials=2",
               "hydra.sweeper.study_name=doomed", f"hydra.sweeper.storage={storage}",
               f"hydra.sweep.dir={sweep}", cwd=cli_cwd)
    assert proc.returncode == 1
    assert "no trial of the Optuna study 'doomed' has completed" in proc.stderr
    assert f"{sweep}/N has a metrics.json" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "skipped, failed or diverged (see" in proc.stdout + proc.stderr  # per trial
    trials = optuna.load_study(study_name="doomed", storage=storage).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2
    assert [metrics(sweep / str(i))["status"] for i in range(2)] == ["skipped"] * 2


def test_a_storage_folder_that_cannot_be_made_stops_before_any_trial(cli_cwd):
    (cli_cwd / "taken").write_text("a file where the folder should be")
    storage = f"sqlite:///{cli_cwd / 'taken' / 'optuna.db'}"
    sweep = cli_cwd / "sweep"
    proc = cli(*SEARCH, f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={sweep}",
               cwd=cli_cwd)
    assert proc.returncode == 2, proc.stderr
    assert f"the folder {cli_cwd / 'taken'} of the SQLite database cannot be created" \
        in proc.stderr
    assert "Traceback" not in proc.stderr and not list(cli_cwd.rglob("metrics.json"))


BLOCK_AND_RUN = """
import runpy, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # `import name` now raises ImportError, as if not installed
sys.argv = ["rasp_hydra", *sys.argv[2:]]
runpy.run_module("rasp_hydra", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("args, blocked, install", [
    (["+search=optuna_lr"], "optuna", "pip install -e '.[optuna]'"),
    (["hydra/launcher=submitit_local", "optimizer.lr=1e-3,1e-2"],
     "hydra_plugins.hydra_submitit_launcher", "pip install -e '.[slurm]'"),
])
def test_a_missing_sweeper_or_launcher_stops_first_with_its_install_command(
        cli_cwd, args, blocked, install):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", BLOCK_AND_RUN, blocked, "-m", *args,
                           "lang=hist_10_bos", *TINY], cwd=cli_cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"{args[0]} needs" in proc.stderr and install in proc.stderr
    assert "Traceback" not in proc.stderr and "Could not find" not in proc.stderr
    assert not (cli_cwd / "outputs").exists()  # nothing written


def test_the_median_pruner_stops_a_trial_in_a_joblib_worker(cli_cwd):
    """Pruning across processes: the joblib worker reports its per-epoch validation
    accuracy to the study's storage and asks the pruner there."""
    storage = f"sqlite:///{cli_cwd / 'optuna.db'}"
    prune = ["+search=optuna_lr", "hydra/sweeper/pruner=median", "lang=hist_10_bos", *TINY,
             "train.epochs=3", "train.num_threads=1", f"hydra.sweeper.storage={storage}",
             "hydra.sweeper.n_jobs=1"]
    # two trials that learn (lr 1e-2) set the median; they run to the end
    cli("-m", *prune, "hydra/launcher=basic", "hydra.sweeper.n_trials=2",
        "optimizer.lr=1e-2", f"hydra.sweep.dir={cli_cwd / 'good'}",
        cwd=cli_cwd, check=True)
    # then one that learns nothing in an epoch (lr 1e-5), in a joblib worker
    sweep = cli_cwd / "bad"
    proc = cli("-m", *prune, "hydra.sweeper.n_trials=1", "optimizer.lr=1e-5",
               f"hydra.sweep.dir={sweep}", cwd=cli_cwd, check=True)
    study = optuna.load_study(study_name="optuna_lr", storage=storage)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "COMPLETE", "PRUNED"]
    m = metrics(sweep / "0")
    assert (m["trial"], m["status"], m["epochs_run"]) == (2, "interrupted", 1)
    assert m["reason"].startswith("pruned by Optuna's MedianPruner after epoch 1")
    assert "trial 2 pruned" in proc.stdout + proc.stderr
    assert study.best_trial.number in (0, 1)


def test_the_job_returns_validation_accuracy_and_nan_for_what_did_not_complete():
    from rasp_hydra.job import objective

    done = {"status": "completed",
            "final": {"valid": {"token_acc": 0.75, "loss": 0.5},
                      "test": {"token_acc": 0.25, "loss": 0.5}}}
    assert objective(done) == 0.75
    for status in ("skipped", "failed", "interrupted"):
        assert math.isnan(objective({**done, "status": status}))
    diverged = {"status": "completed", "final": {"valid": {"token_acc": 0.1, "loss": None}}}
    assert math.isnan(objective(diverged))
    assert math.isnan(objective({"status": "completed", "final": {}}))


def test_the_search_space_syntax_of_hydra_optuna_sweeper():
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    space, fixed = search.search_space([
        "optimizer.lr=tag(log, interval(1e-4, 1e-2))", "schedule.gamma=interval(0.9, 1.0)",
        "model.heads=choice(1, 2, 4)", "model.layers=range(1, 4)",
        "train.batch_size=tag(log, interval(16, 256))", "lang=hist_10_bos"])
    assert space == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "schedule.gamma": FloatDistribution(0.9, 1.0),
        "model.heads": CategoricalDistribution([1, 2, 4]),
        "model.layers": IntDistribution(1, 3),  # range stops before its end, as in Hydra
        "train.batch_size": FloatDistribution(16, 256, log=True),  # Hydra: floats
    }
    assert fixed == {"lang": "hist_10_bos"}
    assert search.override_value("a b") == "'a b'" and search.override_value(0.5) == "0.5"


@pytest.mark.parametrize("sweeper, size", [
    ({"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
     4),
    ({"_target_": "hydra_plugins.rasp_hydra_optuna.optuna_search.OptunaSearchSweeper",
      "n_trials": 7}, 7),
    ({"_target_": "hydra_plugins.hydra_nevergrad_sweeper.nevergrad_sweeper.NevergradSweeper"},
     None),  # another sweeper's jobs: the tag is "[k]"
])
def test_the_job_tag_counts_the_jobs_of_the_sweeper_that_runs(tmp_path, sweeper, size):
    from rasp_hydra import runs

    write_multirun(tmp_path, {"hydra": {
        "sweeper": sweeper, "sweep": {"subdir": "${hydra.job.num}"},
        "overrides": {"task": ["optimizer.lr=1e-3,1e-2", "schedule.gamma=0.9,0.99"]}}})
    assert runs.sweep_size(tmp_path) == size
