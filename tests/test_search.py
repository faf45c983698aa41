"""Hyperparameter search: `+search=optuna_lr` runs a real Optuna study through the command
line, keeps it in a SQLite storage, continues it, and survives trials that fail."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from conftest import TINY, cli, metrics
from omegaconf import OmegaConf

from rasp_hydra import search

# Trials in the sweeper's own process (one torch import, no worker start-up): the joblib
# launcher's sweeps are tested in test_cli.py and test_trackers.py.
SEARCH = ["-m", "+search=optuna_lr", "hydra/launcher=basic", "lang=hist_10_bos", *TINY,
          "train.num_threads=1"]


def trial_runs(sweep: Path, first_trial: int, n: int) -> dict[int, Path]:
    """Trial number -> run directory: the sweeper asks trials in order, job i is SWEEP/i."""
    return {first_trial + i: sweep / str(i) for i in range(n)}


def test_a_study_with_storage_runs_to_the_end_and_continues(cli_cwd):
    storage = f"sqlite:///{cli_cwd / 'optuna.db'}"
    study = ["hydra.sweeper.study_name=lr_study", f"hydra.sweeper.storage={storage}"]
    first, second = cli_cwd / "first", cli_cwd / "second"
    cli(*SEARCH, *study, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=3",
        f"hydra.sweep.dir={first}", cwd=cli_cwd, check=True)
    proc = cli(*SEARCH, *study, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
               f"hydra.sweep.dir={second}", cwd=cli_cwd, check=True)
    assert "Using an existing study with name 'lr_study'" in proc.stdout + proc.stderr

    loaded = optuna.load_study(study_name="lr_study", storage=storage)
    trials = loaded.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    runs = {**trial_runs(first, 0, 3), **trial_runs(second, 3, 2)}
    for trial in trials:
        run_dir = runs[trial.number]
        m = metrics(run_dir)
        # the objective is the VALIDATION token accuracy of the run the trial trained
        assert trial.value == pytest.approx(m["final"]["valid"]["token_acc"])
        config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        assert config.optimizer.lr == pytest.approx(trial.params["optimizer.lr"])
        assert config.schedule.gamma == pytest.approx(trial.params["schedule.gamma"])
        assert 1e-4 <= trial.params["optimizer.lr"] <= 1e-2
        assert 0.9 <= trial.params["schedule.gamma"] <= 1.0
    best = max(metrics(d)["final"]["valid"]["token_acc"] for d in runs.values())
    assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
    assert loaded.best_value == pytest.approx(best)
    results = OmegaConf.load(second / "optimization_results.yaml")
    assert results.best_value == pytest.approx(best)


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
    assert "Traceback" not in proc.stderr and "No trials are completed" not in proc.stderr
    assert "skipped, failed or diverged (see" in proc.stdout + proc.stderr  # per trial
    trials = optuna.load_study(study_name="doomed", storage=storage).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2
    assert [metrics(sweep / str(i))["status"] for i in range(2)] == ["skipped"] * 2


def test_storage_with_sqlalchemy_2_under_optuna_2_is_refused_with_the_fix(monkeypatch):
    import sqlalchemy

    assert search.storage_problem(None) is None
    assert search.storage_problem("sqlite:///x.db") is None  # the pins of '.[optuna]'
    monkeypatch.setattr(sqlalchemy, "__version__", "2.0.30")
    monkeypatch.setattr(optuna, "__version__", "2.10.1")
    problem = search.storage_problem("sqlite:///x.db")
    assert "SQLAlchemy<2" in problem and "pip install -e '.[optuna]'" in problem


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
