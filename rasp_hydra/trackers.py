"""Experiment trackers: mirror a run into TensorBoard or MLflow while it trains.

The run directory stays the record (docs/design.md, "The run directory"); a tracker only
copies what the loop already computes into the tool a researcher browses:

    tensorboard   event files in RUN_DIR/tb/ (`tensorboard --logdir outputs`): every
                  epoch's history row as scalars (step = epoch), the flattened config
                  and the final metrics in the HParams tab
    mlflow        one MLflow run per job: the flattened config as params, every epoch's
                  history row as metrics (step = epoch), the final metrics, and
                  metrics.json, plots/curves.png and train.log as artifacts. A sweep is
                  one MLflow experiment, named after its directory; a single run goes to
                  the experiment "rasp_hydra".
    wandb         one Weights & Biases run per job, as for MLflow: the flattened config,
                  every epoch's metrics (step = epoch), the final ones in its summary, the
                  files as an artifact; a sweep is one W&B group. Its local files go to
                  RUN_DIR/wandb/ and its run id to RUN_DIR/trackers.json, so a resume
                  continues the same W&B run. WANDB_MODE=offline (or
                  logger.wandb.mode=offline) needs no network: `wandb sync` uploads later.

Every tracker names a run after its task, arch and seed (`hist_10_bos-predicted-seed0`)
and tags it with task, arch, seed, lr, gamma and the sweep (`identity`).

The interface the training job calls, in this order (see `make_trackers`):

    start(run_dir, flat_config, run_name, experiment_name, tags)
    log_epoch(epoch, row)          after each epoch's files are written
    finish(metrics, run_dir, files)

MLflow's store: since MLflow 3.x the plain-directory "file store" (./mlruns) is in
maintenance mode and refuses to open unless MLFLOW_ALLOW_FILE_STORE=true, and MLflow's own
default is a SQLite database; so the default here is `sqlite:///outputs/mlflow.db` (a
relative path is taken from the directory the command was started in), with artifacts in
`outputs/mlartifacts/`. `logger.mlflow.tracking_uri=http://host:5000` logs to a server;
a `file:` URI still works (this module sets MLflow's opt-out MLFLOW_ALLOW_FILE_STORE=true for it).

The libraries are imported only when a tracker is chosen; one that is not installed fails
in `make_trackers`, before any data is built, with the pip command that installs it. A
tracker that raises while the run trains is switched off with one warning (on the
console and in train.log): a tracker never costs a run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Any

from rasp_hydra import runs
from rasp_hydra.config import LoggerConfig
from rasp_hydra.errors import UserError

logger = logging.getLogger("rasp_hydra.trackers")

TRACKERS = ("tensorboard", "mlflow", "wandb")
DEFAULT_EXPERIMENT = "rasp_hydra"
RUN_DIR_TAG = "rasp_hydra.run_dir"  # finds a resumed run's MLflow run again


class TrackerUnavailable(UserError, ImportError):
    """A chosen tracker's library is not installed; the message is meant for the user."""


def _missing(name: str, package: str, err: ImportError) -> TrackerUnavailable:
    return TrackerUnavailable(
        f"logger={name} needs the {package!r} package, which is not installed here "
        f"({err}). Install it with: pip install -e '.[{name}]' (from the rasp_hydra "
        f"checkout; or pip install {package}), or choose another logger (logger=none, "
        f"logger=tensorboard, logger=mlflow, logger=wandb, logger=[tensorboard,mlflow])."
    )


def config_params(config: Any) -> dict[str, Any]:
    """A config (a dataclass such as config.Config, or dicts of them) as the trackers'
    params, {"a.b.c": value} (runs.flatten), enums as their values.

    >>> config_params({"model": {"layers": 2, "ff": None}, "lang": {"family": "sort"}})
    {'model.layers': 2, 'model.ff': None, 'lang.family': 'sort'}
    """
    return runs.flatten(_plain(config))


def _plain(value: Any) -> Any:
    """Dataclasses as dicts (field order), enums as their values, all the way down."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.value if isinstance(value, Enum) else value


def _scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a history row or metrics dict (None and text dropped)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            out[k] = float(v)
    return out


def metric_name(name: str) -> str:
    """The one name of a metric in every tracker. A head's attention match is named like
    the other metrics of its split (`val_token_acc` per epoch, `final/test/token_acc` at
    the end), its head after a slash; MLflow allows only alphanumerics and _ - . space :
    / in names, so the comma of a head becomes "_" everywhere.

    >>> metric_name("attn_match_0,1"), metric_name("final/test/attention_match/0,1")
    ('val_attention_match/0_1', 'final/test/attention_match/0_1')
    """
    if name.startswith("attn_match_"):  # history.csv's column: measured on valid
        name = "val_attention_match/" + name[len("attn_match_"):]
    return re.sub(r"[^\w\-. :/]", "_", name)


def epoch_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """A history row's numbers under their tracker names (the epoch is the step)."""
    return {metric_name(k): v for k, v in _scalars(row).items() if k != "epoch"}


def final_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """metrics.json's final numbers under their tracker names.

    >>> final_scalars({"final": {"test": {"token_acc": 1.0, "loss": None}},
    ...                "attention_match": {"0,0": 0.5}, "epochs_run": 3, "status": "x"})
    {'final/test/token_acc': 1.0, 'final/test/attention_match/0_0': 0.5, 'epochs_run': 3.0}
    """
    out = {}
    for split, values in (metrics.get("final") or {}).items():
        out.update({f"final/{split}/{k}": v for k, v in _scalars(values).items()})
    # measured on the test split (metrics.json's attention_match)
    out.update({f"final/test/attention_match/{k}": v
                for k, v in _scalars(metrics.get("attention_match") or {}).items()})
    for key in ("epochs_run", "best_epoch", "wall_seconds", "tokens_per_second", "params"):
        if key in metrics:
            out.update(_scalars({key: metrics[key]}))
    return {metric_name(k): v for k, v in out.items()}


def identity(task: str, arch: str, seed: int, lr: float, gamma: float,
             sweep: str | None = None) -> tuple[str, dict[str, str]]:
    """A run's name and tags in every tracker: named after task, arch and seed (the
    replicate), tagged with those, the swept lr and gamma, and the sweep ("" for none).

    >>> identity("hist_10_bos", "predicted", 0, 3e-4, 0.98, "outputs/multirun/x")
    ('hist_10_bos-predicted-seed0', {'task': 'hist_10_bos', 'arch': 'predicted', \
'seed': '0', 'lr': '0.0003', 'gamma': '0.98', 'sweep': 'outputs/multirun/x'})
    """
    tags = {"task": task, "arch": arch, "seed": str(seed), "lr": f"{lr:g}",
            "gamma": f"{gamma:g}", "sweep": sweep or ""}
    return f"{task}-{arch}-seed{seed}", tags


# ------------------------------------------------------------------------ TensorBoard

class TensorBoardTracker:
    """Event files in RUN_DIR/<subdir>, written by torch's SummaryWriter."""

    name = "tensorboard"

    def __init__(self, subdir: str = "tb"):
        try:  # torch.utils.tensorboard needs the tensorboard package
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise _missing("tensorboard", "tensorboard", err) from None
        self._writer_class = SummaryWriter
        self.subdir = subdir
        self.writer = None
        self.config: dict[str, Any] = {}

    def start(self, run_dir, flat_config, run_name, experiment_name, tags=None):
        self.writer = self._writer_class(log_dir=str(Path(run_dir) / self.subdir))
        # TensorBoard names a run by its folder; name and tags go in the HParams columns
        self.config = {"run": run_name, **(tags or {}), **flat_config}

    def log_epoch(self, epoch, row):
        for key, value in epoch_scalars(row).items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()  # a person watching TensorBoard sees each epoch at once

    def finish(self, metrics, run_dir, files):
        from torch.utils.tensorboard.summary import hparams

        final = final_scalars(metrics)
        step = int(metrics.get("epochs_run") or 0)
        # HParams tab: written into this run's own event file (SummaryWriter.add_hparams
        # would start a sub-run per call)
        params = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                  for k, v in self.config.items()}
        for summary in hparams(params, final):
            self.writer.file_writer.add_summary(summary, step)
        for key, value in final.items():
            self.writer.add_scalar(key, value, step)
        self.writer.close()


# ----------------------------------------------------------------------------- MLflow

def _resolve_uri(uri: str) -> str:
    """A relative sqlite path made absolute (and its folder made); file: stores allowed."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri[len("sqlite:///"):]).resolve()
        uri = f"sqlite:///{path}"
    if uri.startswith("sqlite:////"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if uri.startswith("file:") or "://" not in uri:
        # MLflow's documented opt-out of "file store is in maintenance mode"
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


@contextmanager
def _store_lock(uri: str):
    """Serialize first-time creation of a SQLite store and its experiments across the
    processes of a sweep (concurrent schema migrations would collide)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no lock; parallel sweeps there may race once
        yield
        return
    with open(uri[len("sqlite:///"):] + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"


class MlflowTracker:
    """One MLflow run per job, through MlflowClient (no global active-run state)."""

    name = "mlflow"

    def __init__(self, tracking_uri: str = "sqlite:///outputs/mlflow.db",
                 experiment_name: str | None = None):
        try:
            import mlflow  # noqa: F401
        except ImportError as err:
            raise _missing("mlflow", "mlflow-skinny", err) from None
        if tracking_uri.startswith("sqlite:"):
            try:  # mlflow-skinny leaves out what its SQL store needs
                import alembic  # noqa: F401
                import sqlalchemy  # noqa: F401
            except ImportError as err:
                raise _missing("mlflow", "sqlalchemy and alembic", err) from None
        self.tracking_uri = _resolve_uri(tracking_uri)
        self.experiment_name = experiment_name
        self.client = None
        self.run_id = None

    def _artifact_location(self, experiment: str) -> str | None:
        """Beside the SQLite database; a server or file store chooses its own."""
        if not self.tracking_uri.startswith("sqlite:///"):
            return None
        db = Path(self.tracking_uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts" / _slug(experiment)).as_uri()

    def start(self, run_dir, flat_config, run_name, experiment_name, tags=None):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        name = self.experiment_name or experiment_name or DEFAULT_EXPERIMENT
        run_dir = str(Path(run_dir).resolve())
        with _store_lock(self.tracking_uri):
            self.client = MlflowClient(self.tracking_uri)
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else \
                self.client.create_experiment(name, self._artifact_location(name))
        # a resumed job continues its own MLflow run
        previous = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir}'",
            max_results=1)
        if previous:
            self.run_id = previous[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING", name=run_name)
            return
        run = self.client.create_run(experiment_id, run_name=run_name,
                                     tags={**(tags or {}), RUN_DIR_TAG: run_dir})
        self.run_id = run.info.run_id
        params = [Param(k, str(v)) for k, v in flat_config.items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_epoch(self, epoch, row):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, v, now, int(epoch)) for k, v in epoch_scalars(row).items()])

    def finish(self, metrics, run_dir, files):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = int(metrics.get("epochs_run") or 0)
        final = [Metric(k, v, now, step) for k, v in final_scalars(metrics).items()]
        if final:
            self.client.log_batch(self.run_id, metrics=final)
        run_dir = Path(run_dir)
        for file in files:
            file = Path(file)
            if file.is_file():  # plots/curves.png keeps its folder: artifacts/plots/
                parent = file.resolve().parent.relative_to(run_dir.resolve()).as_posix() \
                    if file.resolve().is_relative_to(run_dir.resolve()) else "."
                self.client.log_artifact(self.run_id, str(file),
                                         None if parent == "." else parent)
        status = {"completed": "FINISHED", "skipped": "FINISHED",
                  "interrupted": "KILLED"}.get(metrics.get("status"), "FAILED")
        self.client.set_terminated(self.run_id, status=status)


# ---------------------------------------------------------------------- Weights & Biases

WANDB_FILES = "run_files"  # the artifact type of a run's files


def wandb_tags(tags: Mapping[str, str]) -> list[str]:
    """Tags as W&B takes them: "key=value" strings of at most 64 characters (a long
    sweep path keeps its end, the part that tells sweeps apart).

    >>> wandb_tags({"seed": "0", "sweep": ""}), [len(t) for t in wandb_tags({"sweep": "x" * 70})]
    (['seed=0'], [64])
    """
    out = []
    for key, value in tags.items():
        if value == "":
            continue
        tag = f"{key}={value}"
        out.append(tag if len(tag) <= 64 else f"{key}=...{value[-(60 - len(key)):]}")
    return out


class WandbTracker:
    """One W&B run per job (its own Run object: several may live in one process)."""

    name = "wandb"

    def __init__(self, project: str = DEFAULT_EXPERIMENT, entity: str | None = None,
                 mode: str | None = None):
        try:
            import wandb  # noqa: F401
        except ImportError as err:
            raise _missing("wandb", "wandb", err) from None
        self.project, self.entity, self.mode = project, entity, mode
        self.run = None

    def start(self, run_dir, flat_config, run_name, experiment_name, tags=None):
        import wandb

        run_dir = Path(run_dir)
        previous = runs.RunDir(run_dir).tracker_ids().get(self.name)
        self.run = wandb.init(
            project=self.project, entity=self.entity, mode=self.mode, dir=run_dir,
            id=previous, resume="allow" if previous else None, name=run_name,
            group=experiment_name, job_type="train", tags=wandb_tags(tags or {}),
            reinit="create_new",
            # the job's console stays its own (train.log is the record)
            settings=wandb.Settings(console="off", silent=True))
        if previous is None:
            runs.RunDir(run_dir).write_tracker_id(self.name, self.run.id)
        # a resume may change train.epochs: the config is the latest invocation's
        self.run.config.update(dict(flat_config), allow_val_change=True)

    def log_epoch(self, epoch, row):
        self.run.log(epoch_scalars(row), step=int(epoch))

    def finish(self, metrics, run_dir, files):
        import wandb

        self.run.summary.update(final_scalars(metrics))
        self.run.summary["status"] = metrics.get("status")
        run_dir = Path(run_dir).resolve()
        artifact = wandb.Artifact(f"run-{self.run.id}-files", type=WANDB_FILES)
        for file in map(Path, files):
            if file.is_file():  # plots/curves.png keeps its folder
                file = file.resolve()
                name = file.relative_to(run_dir).as_posix() if file.is_relative_to(run_dir) \
                    else file.name
                artifact.add_file(str(file), name=name)
        if artifact.manifest.entries:
            self.run.log_artifact(artifact)
        ok = metrics.get("status") in ("completed", "skipped")
        self.run.finish(exit_code=0 if ok else 1)


# ------------------------------------------------------------------------- the group

def make_trackers(names: Iterable[str], options: Mapping[str, Mapping] | None = None
                  ) -> TrackerGroup:
    """The trackers called `names`, each guarded (see `Guarded`); options: per name, the
    tracker's keyword arguments. A missing library raises TrackerUnavailable and an
    unknown name ValueError, at once: the job calls this before it builds any data."""
    options = options or {}
    group = TrackerGroup()
    for name in names:
        kwargs = dict(options.get(name) or {})
        if name == "tensorboard":
            group.append(Guarded(TensorBoardTracker(**kwargs)))
        elif name == "mlflow":
            group.append(Guarded(MlflowTracker(**kwargs)))
        elif name == "wandb":
            group.append(Guarded(WandbTracker(**kwargs)))
        elif name != "none":
            raise ValueError(f"unknown logger {name!r}; allowed: none, {', '.join(TRACKERS)}")
    return group


def from_config(logger_cfg: LoggerConfig) -> TrackerGroup:
    """The trackers of a `logger` config section: each non-null sub-section (logger.mlflow,
    logger.tensorboard) chooses one, and its keys are that tracker's options."""
    options = {k: v for k, v in asdict(logger_cfg).items() if v is not None}
    return make_trackers(list(options), options)


class Guarded:
    """A tracker whose failures never reach the training loop: the first exception is
    logged once (console and the run's train.log) and the tracker is switched off."""

    def __init__(self, tracker):
        self.tracker = tracker
        self.name = tracker.name
        self.failed = False
        self.run_dir: Path | None = None

    def _call(self, method: str, *args) -> None:
        if self.failed:
            return
        try:
            getattr(self.tracker, method)(*args)
        except Exception as err:
            self.failed = True
            line = (f"warning: logger {self.name} failed in {method} "
                    f"({type(err).__name__}: {err}); training goes on without it")
            logger.warning(line)
            if self.run_dir is not None:
                try:
                    runs.append_log(self.run_dir, line)
                except OSError:
                    pass

    def start(self, run_dir, flat_config, run_name, experiment_name, tags=None):
        self.run_dir = Path(run_dir)
        self._call("start", run_dir, flat_config, run_name, experiment_name, tags or {})

    def log_epoch(self, epoch, row):
        self._call("log_epoch", epoch, row)

    def finish(self, metrics, run_dir, files):
        self._call("finish", metrics, run_dir, files)


class TrackerGroup(list):
    """The chosen trackers, called together; what the training job holds."""

    def start(self, run_dir, flat_config, run_name, experiment_name=None, tags=None):
        for t in self:
            t.start(run_dir, flat_config, run_name, experiment_name, tags)

    def log_epoch(self, epoch, row):
        for t in self:
            t.log_epoch(epoch, row)

    def finish(self, run_dir, metrics: dict | None = None):
        """End every tracker with `metrics` (default: the run's metrics.json)."""
        if not self:
            return
        if metrics is None:
            try:
                metrics = runs.read_metrics(run_dir)
            except Exception:
                metrics = {"status": "failed"}
        # the files a person opens, but history.csv: a tracker has it as its epochs' metrics
        rd = runs.RunDir(run_dir)
        artifacts = [f for f in rd.files() if f != rd.history_file]
        for t in self:
            t.finish(metrics, run_dir, artifacts)
