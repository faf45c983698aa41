"""`hydra.sweeper._target_` of `+search=optuna_lr`: hydra-optuna-sweeper's OptunaSweeper
that records a NaN job (skipped, failed, diverged) as a failed trial, with clear messages
for its two dead ends (see rasp_hydra/search.py).

Hydra imports every module under `hydra_plugins` at startup, so this one imports only
Hydra at the top: the Optuna plugin and optuna load when a search starts.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from hydra.plugins.sweeper import Sweeper

NO_BEST_TRIAL = ("No trials are completed yet", "Record does not exist")


class OptunaSearchSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

        self.plugin = OptunaSweeper(**options)

    def setup(self, **kwargs: Any) -> None:
        self.plugin.setup(**kwargs)
        impl = self.plugin.sweeper
        impl.launcher = _NanIsFailedTrial(impl.launcher, impl.config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> None:
        from rasp_hydra.search import no_completed_trial, storage_problem

        impl = self.plugin.sweeper
        problem = storage_problem(impl.storage)
        if problem:
            sys.exit(f"error: {problem}")
        try:
            return self.plugin.sweep(arguments)
        except ValueError as err:
            # study.best_trial of a study without a completed trial: optuna's words for it
            # in memory and in a database
            if not any(m in str(err) for m in NO_BEST_TRIAL):
                raise
        sys.exit(no_completed_trial(impl.study_name, impl.config.hydra.sweep.dir))


class _FailedRun:
    """A NaN job's return value for the plugin: not float-castable, so the plugin tells
    Optuna "FAIL" and goes on (given NaN itself, plugin 1.3.0 crashes: it retells the NaN
    along with the FAIL state), and logs this text as the reason."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir

    def __float__(self) -> float:
        raise TypeError(str(self))

    def __str__(self) -> str:
        return f"NaN: the run was skipped, failed or diverged (see {self.run_dir}/metrics.json)"


class _NanIsFailedTrial:
    """The launcher, with each NaN return value replaced by a `_FailedRun`."""

    def __init__(self, launcher: Any, sweep_dir: str):
        self.launcher = launcher
        self.sweep_dir = sweep_dir

    def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
        returns = self.launcher.launch(job_overrides, initial_job_idx)
        for i, ret in enumerate(returns):
            value = getattr(ret, "_return_value", None)
            if isinstance(value, float) and math.isnan(value):
                ret.return_value = _FailedRun(f"{self.sweep_dir}/{initial_job_idx + i}")
        return returns
