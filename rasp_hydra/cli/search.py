"""Hyperparameter search with Optuna: the pieces of the project's own sweeper.

`conf/search/optuna_lr.yaml` selects `hydra/sweeper=optuna_search`, this project's sweeper
(`hydra_plugins/rasp_hydra_optuna/`: Hydra takes sweepers only from the `hydra_plugins`
package). It drives Optuna's ask/tell API (Optuna 4 or newer) and Hydra's configured
launcher (joblib, submitit, basic): it asks `n_jobs` trials, launches them as one batch of
ordinary jobs (run directories SWEEP_DIR/N), tells Optuna each job's return value, and
writes the best parameters and value to SWEEP_DIR/optimization_results.yaml.

- The search space keeps hydra-optuna-sweeper's syntax (`interval(a, b)`,
  `tag(log, interval(a, b))`, `choice(...)`, `range(...)`, or a plain value that is fixed).
- A job's NaN (skipped, failed, diverged run) is a failed trial and the search goes on;
  a study in which no trial completed ends with one paragraph and exit status 1.
- A SQLite storage's folder is created; a continued study seeds its sampler with the seed
  plus the number of trials the study already has, so it never repeats its start.
- Pruning (`hydra.sweeper.pruner`): each job reports its validation accuracy per epoch to
  the study's storage and asks Optuna whether to stop (`TrialPruning` below); without a
  storage the sweeper keeps the study in a journal file in the sweep directory, which the
  jobs (other processes under joblib and submitit) can reach.

Optuna is imported inside the functions: Hydra imports the plugin at every start.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("rasp_hydra.search")

# What a job learns from the sweeper (hydra.job.env_set: the run's own config is untouched)
TRIAL_ENV = "RASP_HYDRA_TRIAL"  # Optuna's trial number
STUDY_ENV = "RASP_HYDRA_STUDY"  # the study's name, with pruning on
STORAGE_ENV = "RASP_HYDRA_STORAGE"  # the study's storage, with pruning on
JOURNAL = "optuna_journal.log"  # the study of a pruned search without a storage

# The plugins a sweep may name, and what installs each (see `missing_plugin`)
LAUNCHER_PACKAGES = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher", None),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher",
                       "slurm"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher",
                       "slurm"),
}


def missing_optuna(what: str) -> str | None:
    """The install command for `what` (a search), if optuna is not installed."""
    if importlib.util.find_spec("optuna") is not None:
        return None
    return (f"{what} needs Optuna, which is not installed here. Install it with: pip install "
            "-e '.[optuna]' (from the rasp_hydra checkout; or pip install 'optuna>=4'), or "
            "run a grid sweep with the basic sweeper instead (python -m rasp_hydra -m "
            "optimizer.lr=1e-4,1e-3,1e-2).")


def missing_plugin(argv: list[str]) -> str | None:
    """Why the sweeper or launcher named on the command line cannot run, with its install
    command; checked before Hydra composes anything (Hydra would only say "Could not find
    'hydra/launcher/submitit_slurm'")."""
    for arg in argv:
        key, _, choice = arg.lstrip("+~").partition("=")
        if key == "hydra/launcher" and choice in LAUNCHER_PACKAGES:
            module, package, extra = LAUNCHER_PACKAGES[choice]
            if importlib.util.find_spec(module) is None:
                how = f"pip install -e '.[{extra}]' (from the rasp_hydra checkout; or pip " \
                      f"install {package})" if extra else f"pip install {package}"
                return (f"{arg} needs the Hydra launcher plugin {package!r}, which is not "
                        f"installed here. Install it with: {how}, or leave the launcher "
                        "out to run the jobs with the default joblib launcher.")
        if (key == "search" and choice.startswith("optuna")) or \
                (key == "hydra/sweeper" and choice == "optuna_search"):
            problem = missing_optuna(arg)
            if problem:
                return problem
        if key == "hydra/sweeper" and choice == "optuna" and \
                importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
            return (f"{arg}: this project's Optuna sweeper is hydra/sweeper=optuna_search "
                    "(+search=optuna_lr selects it with a search space); the sweeper named "
                    "optuna belongs to hydra-optuna-sweeper, which is not installed and "
                    "works only with optuna<3.")
    return None


# ------------------------------------------------------------------------ search space

def distribution(override) -> Any:
    """The Optuna distribution of a parsed sweep override, or its fixed value (a string).

    The syntax of hydra-optuna-sweeper: `choice(a, b)` and a shuffled `range` are
    categorical, `range(a, b[, step])` a stepped int or float, `interval(a, b)` a float
    (or int, if both ends are ints), `tag(log, interval(a, b))` the same on a log scale.
    """
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(
            list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        # hydra's range(a, b) stops before b, Optuna's step distributions include high
        if all(isinstance(x, int) for x in (value.start, value.stop, value.step)):
            last = value.start + (value.stop - 1 - value.start) // value.step * value.step
            return IntDistribution(value.start, last, step=value.step)
        n = int((value.stop - value.start) / value.step - 1e-9)
        return FloatDistribution(value.start, value.start + n * value.step, step=value.step)
    if override.is_interval_sweep():
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{override.input_line}: not a search space Optuna can sample "
                     "(allowed: choice, range, interval, tag(log, interval))")


def search_space(arguments: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(name -> distribution, name -> fixed value) of `key=value` search-space overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from optuna.distributions import BaseDistribution

    space, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(arguments):
        d = distribution(override)
        name = override.get_key_element()
        if isinstance(d, BaseDistribution):
            space[name] = d
            fixed.pop(name, None)
        else:
            fixed[name] = d
            space.pop(name, None)
    return space, fixed


def override_value(value: Any) -> str:
    """A sampled value as Hydra override text (a string with spaces or quotes is quoted)."""
    if isinstance(value, str) and any(c in value for c in " ,'\"[]{}()=:\\"):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "null" if value is None else repr(value) if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------- storage

def prepare_storage(storage: Any, sweep_dir: str, pruning: bool) -> Any:
    """The storage the study lives in: `storage` (a SQLite file's folder is created), or a
    journal file in the sweep directory when pruning needs one, or None (in memory).

    Raises ValueError with one paragraph when the folder cannot be created."""
    if storage:
        storage = str(storage)
        if storage.startswith("sqlite:///"):
            db = Path(storage[len("sqlite:///"):])
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ValueError(
                    f"hydra.sweeper.storage={storage}: the folder {db.parent} of the SQLite "
                    f"database cannot be created ({err.strerror or err}). Give a path in a "
                    "writable folder, e.g. hydra.sweeper.storage=sqlite:///outputs/optuna.db,"
                    " or drop the storage (hydra.sweeper.storage=null) to keep the study in "
                    "memory.") from None
        return storage
    if not pruning:
        return None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(Path(sweep_dir) / JOURNAL)))


def open_study(storage: Any, **study: Any):
    """optuna.create_study(storage=storage, **study, load_if_exists=True), before any trial.

    Raises ValueError with one paragraph naming the storage when it cannot be opened: a
    file that is not a database (random bytes, a database cut short, a directory), a
    database driver that is not installed, a URL SQLAlchemy cannot read."""
    import optuna

    try:
        return optuna.create_study(storage=storage, load_if_exists=True, **study)
    except Exception as err:  # SQLAlchemy's, the driver's or Optuna's own errors
        if not isinstance(storage, str):
            raise
        raise ValueError(storage_problem(storage, err)) from None


def storage_problem(url: str, err: BaseException) -> str:
    """One paragraph: why the study's storage `url` cannot be opened, and what to do."""
    said = " ".join(str(getattr(err, "orig", None) or err).split("\n")[0].split())
    scheme = url.partition(":")[0]
    way_out = ("Give another storage (e.g. hydra.sweeper.storage=sqlite:///outputs/optuna.db, "
               "a new file is created), or drop it (hydra.sweeper.storage=null) to keep the "
               "study in memory. No trial was run.")
    head = f"hydra.sweeper.storage={url}: the Optuna study's storage cannot be opened"
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        if db.is_dir():
            return f"{head}: {db} is a directory, not a database file. {way_out}"
        if db.is_file() and type(err).__name__ in ("DatabaseError", "OperationalError"):
            return (f"{head}: {db} is not a SQLite database Optuna can read ({said}): not a "
                    "database at all, or one cut short or damaged. Move it away or restore "
                    f"it from a copy. {way_out}")
    if isinstance(err, ImportError) or type(err).__name__ == "NoSuchModuleError":
        return (f"{head}: the database driver for {scheme!r} is not installed here, or "
                f"SQLAlchemy has no dialect of that name ({said}). Install the driver "
                "(e.g. pip install psycopg2-binary for postgresql://, pip install pymysql "
                f"and mysql+pymysql:// for MySQL). {way_out}")
    if type(err).__name__ == "ArgumentError":
        return (f"{head}: it is not a database URL ({said}); write it as "
                f"DIALECT://... (sqlite:///path/to/optuna.db). {way_out}")
    return f"{head} ({type(err).__name__}: {said}). {way_out}"


def storage_url(storage: Any, sweep_dir: str) -> str | None:
    """The text a job opens the study's storage with (see `open_storage`)."""
    if storage is None:
        return None
    if isinstance(storage, str):
        return storage
    return f"journal:{(Path(sweep_dir) / JOURNAL).resolve()}"


def open_storage(url: str) -> Any:
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url[len("journal:"):]))
    return url


def study_summary(study) -> str:
    """'3 trials already (2 complete, 1 failed)' or 'no trials yet'."""
    trials = study.get_trials(deepcopy=False)
    if not trials:
        return "no trials yet"
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return f"{len(trials)} trials already (" + ", ".join(
        f"{n} {state}" for state, n in counts.items()) + ")"


def seeded_sampler(sampler_cfg: Any, n_existing: int):
    """The configured sampler, its seed moved on by the study's trial count: a continued
    study does not replay the start-up sequence of the trials it already has."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if sampler_cfg is None:
        return None
    cfg = OmegaConf.to_container(sampler_cfg, resolve=True) \
        if OmegaConf.is_config(sampler_cfg) else dict(sampler_cfg)
    if cfg.get("seed") is not None:
        cfg["seed"] = int(cfg["seed"]) + n_existing
    return instantiate(cfg)


# ----------------------------------------------------------------------- in the job

class TrialPruning:
    """A job's link to its Optuna trial: reports the validation accuracy of each epoch
    to the study's storage and asks the study's pruner whether to stop.

    Made by `from_hydra` only when the sweeper passed a storage (pruning on); `stop` is
    the Event that ends training after the epoch (the run ends "interrupted", reason
    "pruned ...", which the sweeper reads back and tells Optuna as PRUNED).
    """

    def __init__(self, study, trial_number: int, stop):
        import optuna

        self.stop, self.off = stop, False
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, trial_number)
        self.trial = optuna.trial.Trial(study, trial_id)
        self.pruner = type(study.pruner).__name__

    @classmethod
    def from_hydra(cls, hc, stop) -> TrialPruning | None:
        url, name, number = (os.environ.get(k) for k in (STORAGE_ENV, STUDY_ENV, TRIAL_ENV))
        if not (url and name and number):
            return None
        import optuna
        from hydra.utils import instantiate

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        pruner = instantiate(hc.sweeper.pruner)
        study = optuna.load_study(study_name=name, storage=open_storage(url), pruner=pruner)
        return cls(study, int(number), stop)

    def __call__(self, epoch: int, row: dict) -> None:
        accuracy = row.get("val_token_acc")
        if accuracy is None or self.off or self.stop.is_set():
            return
        try:
            self.trial.report(float(accuracy), epoch)
            prune = self.trial.should_prune()
        except Exception as err:  # a busy or broken storage never costs the run
            logging.getLogger("rasp_hydra").warning(
                "pruning switched off for this trial: the study's storage failed (%s: %s)",
                type(err).__name__, err)
            self.off = True
            return
        if prune:
            self.stop.reason = (f"pruned by Optuna's {self.pruner} after epoch {epoch}: "
                                f"validation accuracy {accuracy:.4f}")
            self.stop.set()


PRUNED = "pruned by Optuna"  # how a pruned run's reason starts


def no_completed_trial(study_name: str | None, sweep_dir: str) -> str:
    return (
        f"no trial of the Optuna study {study_name!r} has completed: every trial so "
        f"far was skipped, failed, diverged or pruned, so there is no best value (each "
        f"trial's run directory {sweep_dir}/N has a metrics.json whose status and reason say "
        "why, and train.log the details). Fix the config and run the search again; with a "
        "storage the failed trials stay in the study, marked FAIL."
    )
