"""`hydra/sweeper=optuna_search` (conf/hydra/sweeper/): the project's Optuna sweeper.

It asks Optuna (4 or newer) for `n_jobs` trials at a time, runs them as one batch on the
configured launcher (joblib, submitit, basic), and tells Optuna each job's return value;
a NaN (skipped, failed, diverged run) is a failed trial, a run stopped by the pruner a
pruned one. See rasp_hydra/cli/search.py for the pieces.

Hydra imports every module under `hydra_plugins` at startup, so this one imports only
Hydra at the top: optuna and rasp_hydra load when a search starts.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper

from rasp_hydra.cli.errors import exits
from rasp_hydra.errors import ConfigError, FailedError

log = logging.getLogger("rasp_hydra.search")


class OptunaSearchSweeper(Sweeper):
    @exits  # Hydra wraps an exception raised while it builds the sweeper
    def __init__(self, sampler: Any = None, direction: str = "maximize",
                 storage: str | None = None, study_name: str | None = None,
                 n_trials: int = 20, n_jobs: int = 2, max_failure_rate: float = 1.0,
                 params: Any = None, pruner: Any = None) -> None:
        from rasp_hydra.cli.search import missing_optuna

        problem = missing_optuna("hydra/sweeper=optuna_search (+search=optuna_lr)")
        if problem:  # before the launcher or any job starts
            raise ConfigError(problem)
        self.sampler, self.direction, self.storage = sampler, str(direction), storage
        self.study_name, self.n_trials, self.n_jobs = study_name, int(n_trials), int(n_jobs)
        self.max_failure_rate, self.params, self.pruner = max_failure_rate, params, pruner

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: list[str]) -> None:
        import optuna
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        from rasp_hydra.cli import search

        sweep_dir = str(self.config.hydra.sweep.dir)
        if self.n_trials < 1 or self.n_jobs < 1:
            _bad(f"hydra.sweeper.n_trials={self.n_trials} and hydra.sweeper.n_jobs="
                 f"{self.n_jobs}: both must be at least 1 (n_trials trials in all, n_jobs "
                 "of them run at once).")
        if self.direction not in ("maximize", "minimize"):
            _bad(f"hydra.sweeper.direction={self.direction}: allowed are maximize (the job "
                 "returns the validation accuracy) and minimize.")
        params = [f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        try:
            space, fixed = search.search_space(params)
            storage = search.prepare_storage(self.storage, sweep_dir, self.pruner is not None)
        except ValueError as err:
            _bad(str(err))
        if not space:
            _bad("the search has no parameter to tune: give hydra.sweeper.params a search "
                 "space, e.g. optimizer.lr: tag(log, interval(1e-4, 1e-2)) or "
                 "model.heads: choice(1, 2, 4).")

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # its lines are said below
        pruner = instantiate(self.pruner) if self.pruner is not None else None
        try:  # a storage that cannot be opened stops here, before any trial
            study = search.open_study(storage, study_name=self.study_name,
                                      direction=self.direction, pruner=pruner)
        except ValueError as err:
            _bad(str(err))
        if study.direction.name.lower() != self.direction:
            _bad(f"the study {study.study_name!r} in {self.storage} maximizes or minimizes "
                 f"the other way ({study.direction.name.lower()}) than "
                 f"hydra.sweeper.direction={self.direction}: give that direction or a new "
                 "study_name.")
        existing = len(study.get_trials(deepcopy=False))
        study.sampler = search.seeded_sampler(self.sampler, existing) or study.sampler
        log.info("study %r (%s): %s; %d more, %d at a time, sampler %s, pruner %s",
                 study.study_name, search.storage_url(storage, sweep_dir) or "in memory",
                 search.study_summary(study), self.n_trials, self.n_jobs,
                 type(study.sampler).__name__, type(study.pruner).__name__
                 if self.pruner is not None else "none")

        Path(sweep_dir).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, Path(sweep_dir) / "multirun.yaml")  # as Hydra's sweepers
        pass_study = [] if self.pruner is None else [
            _env(search.STUDY_ENV, study.study_name),
            _env(search.STORAGE_ENV, search.storage_url(storage, sweep_dir))]
        self._run_trials(study, space, fixed, pass_study, sweep_dir)
        _save_best(study, sweep_dir)

    def _run_trials(self, study, space: dict, fixed: dict, pass_study: list[str],
                    sweep_dir: str) -> None:
        """Ask for n_jobs trials at a time, launch them as one batch, tell Optuna how each
        ended; stop (exit code 1) when too many of a batch failed."""
        from rasp_hydra.cli import search

        job_idx = 0
        while job_idx < self.n_trials:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - job_idx))]
            overrides = [
                [*(f"{k}={search.override_value(v)}" for k, v in t.params.items()),
                 *(f"{k}={v}" for k, v in fixed.items()),
                 _env(search.TRIAL_ENV, t.number), *pass_study]
                for t in trials]
            returns = self.launcher.launch(overrides, initial_job_idx=job_idx)
            failed = 0
            for trial, ret in zip(trials, returns, strict=True):
                failed += self._tell(study, trial, ret, f"{sweep_dir}/{job_idx}")
                job_idx += 1
            if failed / len(trials) > self.max_failure_rate:
                _bad(f"{failed} of {len(trials)} trials of the batch failed, more than "
                     f"hydra.sweeper.max_failure_rate={self.max_failure_rate}; stopping.",
                     code=1)

    def _tell(self, study, trial, ret, run_dir: str) -> bool:
        """Tell Optuna how the trial's job ended; True for a failed trial."""
        from optuna.trial import TrialState

        from rasp_hydra import runs
        from rasp_hydra.cli import search

        hydra_cfg = getattr(ret, "hydra_cfg", None)  # the job's own config, for its run dir
        if hydra_cfg is not None:
            run_dir = str(hydra_cfg.hydra.runtime.output_dir)
        try:
            value = float(ret.return_value)  # re-raises a job's exception
        except Exception as err:  # a job that crashed outside the task's own handling
            value, why = math.nan, f"{type(err).__name__}: {err}"
        else:
            why = f"NaN: the run was skipped, failed or diverged (see {run_dir}/metrics.json)"
        if math.isnan(value):
            reason = str(runs.RunDir(run_dir).record().get("reason") or "")
            if reason.startswith(search.PRUNED):
                study.tell(trial, state=TrialState.PRUNED)
                log.info("trial %d pruned (%s)", trial.number, reason)
                return False
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed: %s", trial.number, why)
            return True
        study.tell(trial, value)
        return False


def _save_best(study, sweep_dir: str) -> None:
    """optimization_results.yaml, as Hydra's Optuna sweeper writes it, and the best trial's
    line; exit code 1 when no trial of the study completed."""
    from omegaconf import OmegaConf

    from rasp_hydra.cli import search

    try:
        best = study.best_trial
    except ValueError:  # no trial of the study completed
        raise FailedError(search.no_completed_trial(study.study_name, sweep_dir)) from None
    OmegaConf.save(OmegaConf.create({
        "name": "optuna", "study_name": study.study_name, "best_trial": best.number,
        "best_params": best.params, "best_value": best.value,
    }), Path(sweep_dir) / "optimization_results.yaml")
    log.info("best trial %d of %d: value %.4f, %s", best.number,
             len(study.get_trials(deepcopy=False)), best.value,
             " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in best.params.items()))


def _env(name: str, value: Any) -> str:
    """An override that sets an environment variable in the job only (not in its config)."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"++hydra.job.env_set.{name}='{text}'"


def _bad(message: str, code: int = 2) -> None:
    raise (FailedError if code == 1 else ConfigError)(message)
