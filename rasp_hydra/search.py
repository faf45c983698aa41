"""Hyperparameter search with Optuna: the hydra-optuna-sweeper plugin, with clear ends.

`conf/search/optuna_lr.yaml` selects the sweeper `OptunaSearchSweeper`
(hydra_plugins/rasp_hydra_optuna/: Hydra takes sweepers only from the `hydra_plugins`
package). It is the plugin's own sweeper, unchanged while things go well; it adds two
messages, written here, where the plugin stops with an obscure one:

- storage (`hydra.sweeper.storage=sqlite:///...`) with optuna 2.x, the only optuna the
  plugin (1.3.0: optuna<3) allows, needs SQLAlchemy<2; with SQLAlchemy 2 optuna fails
  with a bare AssertionError. Checked before the first trial; `pip install -e
  '.[optuna]'` installs pins that work.
- a study in which no trial completed (every job skipped, failed or diverged: the job
  returns NaN for those, which Optuna records as failed trials) has no best trial, and
  the plugin dies with "No trials are completed yet". Here it ends with one paragraph
  that says so and where the reasons are, and exit status 1.

Each trial is an ordinary run directory (SWEEP_DIR/N); the plugin writes the best
parameters and value to SWEEP_DIR/optimization_results.yaml.
"""

from __future__ import annotations

from typing import Any


def storage_problem(storage: Any) -> str | None:
    """Why `storage` cannot work with the installed optuna and SQLAlchemy, if it cannot."""
    if not storage:
        return None
    import optuna
    import sqlalchemy

    if int(optuna.__version__.split(".")[0]) < 3 and \
            int(sqlalchemy.__version__.split(".")[0]) >= 2:
        return (
            f"hydra.sweeper.storage={storage} needs SQLAlchemy<2 with optuna "
            f"{optuna.__version__} (hydra-optuna-sweeper 1.3 requires optuna<3), but "
            f"SQLAlchemy {sqlalchemy.__version__} is installed. Install the pins that work "
            "with: pip install -e '.[optuna]' (or pip install 'sqlalchemy<2'), or drop the "
            "storage (hydra.sweeper.storage=null) to keep the study in memory."
        )
    return None


def no_completed_trial(study_name: str | None, sweep_dir: str) -> str:
    return (
        f"error: no trial of the Optuna study {study_name!r} has completed: every trial so "
        f"far was skipped, failed or diverged, so there is no best value (each trial's run "
        f"directory {sweep_dir}/N has a metrics.json whose status and reason say why, and "
        "train.log the details). Fix the config and run the search again; with a storage "
        "the failed trials stay in the study, marked FAIL."
    )
