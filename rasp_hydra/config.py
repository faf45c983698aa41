"""The config schema: dataclasses registered in Hydra's ConfigStore.

Hydra validates every YAML file and command-line override against these types, so a
misspelled key (`model.layer=2`) or a wrong type (`model.layers=two`) fails before any work
starts. Defaults live in `conf/`; the dataclass defaults below are the ones of the original
experiments ("Training defaults" in TASKS.md) so that a YAML file only states what differs.

Every task name of the registry is also an option of the `lang` group
(`lang=hist2_26_bos_with_attns`); a user family is reached by overriding
`lang.family=mypkg.tasks:Palindrome`.

This module must stay cheap to import (no torch): `--help`, `--cfg job` and tab completion
import it. That is why the optimizer, schedule and train sections mirror the plain
dataclasses of `train.py` instead of importing them; here they add enums, so that Hydra
rejects `optimizer=adamw` or `train.device=gpu` while composing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Positions(str, Enum):
    sin = "sin"
    learned = "learned"


class OptimizerName(str, Enum):
    adam = "adam"
    sgd = "sgd"


class ScheduleName(str, Enum):
    exponential = "exponential"
    constant = "constant"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class ArchName(str, Enum):
    """A model budget relative to a task's RASP-predicted L layers and H heads (Table 1)."""

    predicted = "predicted"  # (L, H)
    fewer_heads = "fewer_heads"  # (L, H - 1)
    fewer_layers = "fewer_layers"  # (L - 1, H)
    # (L - 1, 2H) at twice the width: checks that the missing layer, not the missing head
    # capacity, is what hurts
    fewer_layers_wider = "fewer_layers_wider"

    def budget(self, layers: int, heads: int) -> tuple[int, int, int]:
        """(layers, heads, width factor) of this variant for a RASP budget of L, H.

        >>> ArchName.fewer_layers_wider.budget(2, 1)
        (1, 2, 2)
        """
        return {
            ArchName.predicted: (layers, heads, 1),
            ArchName.fewer_heads: (layers, heads - 1, 1),
            ArchName.fewer_layers: (layers - 1, heads, 1),
            ArchName.fewer_layers_wider: (layers - 1, 2 * heads, 2),
        }[self]

    @classmethod
    def of(cls, layers: int, heads: int, rasp_layers: int, rasp_heads: int) -> ArchName | None:
        """The variant whose budget for (rasp_layers, rasp_heads) is (layers, heads), if any.

        >>> ArchName.of(1, 1, 2, 1).value
        'fewer_layers'
        >>> ArchName.of(3, 3, 2, 1) is None
        True
        """
        for arch in cls:
            if arch.budget(rasp_layers, rasp_heads)[:2] == (layers, heads):
                return arch
        return None


@dataclass
class LangConfig:
    """Which task, and how its data is sampled. Lengths exclude BOS."""

    family: str = MISSING  # reverse, hist, hist2, sort, sort_by_freq, dyck_ptf or "module:Class"
    size: int | None = None  # alphabet size k (10, 26, 52, 100); bracket pairs for dyck_ptf
    bos: bool = False
    with_attns: bool = False  # supervise the family's RASP selectors
    min_len: int = 1
    max_len: int = 100
    train_size: int = 50_000
    valid_size: int = 1_000
    test_size: int = 1_000
    data_seed: int = 0
    long_test_size: int = 0  # > 0 adds a "test_long" split for length generalization
    long_min_len: int = 101
    long_max_len: int = 150


@dataclass
class ModelConfig:
    layers: int = 2
    heads: int = 1
    d_model: int = 128
    ff: int | None = None  # None: 2 * d_model
    dropout: float = 0.0
    positions: Positions = Positions.sin
    max_len: int | None = None  # None: the longest sequence of any split (BOS included)


@dataclass
class OptimizerConfig:
    name: OptimizerName = OptimizerName.adam
    lr: float = 3e-4
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0


@dataclass
class ScheduleConfig:
    name: ScheduleName = ScheduleName.exponential
    gamma: float = 0.98  # per-epoch decay; ignored by `constant`


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 50
    attn_loss_c: float = 100.0
    reset_patience: int = 10
    perfect_acc_epochs: int = 3
    seed: int = 0
    device: Device = Device.auto
    num_threads: int | None = None  # None: the cores of this job / jobs running in parallel
    # Resume from this run directory's checkpoints/last.pt when it exists. A preempted SLURM
    # job that is requeued into the same directory picks up where it stopped.
    resume: bool = True


@dataclass
class ArchConfig:
    """A model budget relative to the task's RASP-predicted layers L and heads H."""

    name: ArchName = ArchName.predicted


# --- experiment trackers (issue 14; conf/logger/, rasp_hydra/trackers.py) ---------------
@dataclass
class TensorBoardConfig:
    subdir: str = "tb"  # event files in RUN_DIR/tb


@dataclass
class MlflowConfig:
    tracking_uri: str = "sqlite:///outputs/mlflow.db"
    experiment_name: str | None = None  # None: the sweep directory, or "rasp_hydra"


@dataclass
class LoggerConfig:
    """A section per chosen tracker (logger=tensorboard, logger=[tensorboard,mlflow])."""

    tensorboard: TensorBoardConfig | None = None
    mlflow: MlflowConfig | None = None
# --- end of experiment trackers --------------------------------------------------------


@dataclass
class Config:
    lang: LangConfig = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    arch: ArchConfig | None = None
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # issue 14: trackers


def register_configs() -> None:
    """Put the schema and every code-defined group option into Hydra's ConfigStore."""
    from rasp_hydra.tasks import get_task, task_names

    cs = ConfigStore.instance()
    cs.store(name="rasp_hydra_schema", node=Config)
    for name in task_names():
        task = get_task(name)
        # Plain dicts: the schema validates them when they merge, and storing 80
        # dataclass instances would cost a second at every start.
        cs.store(group="lang", name=name, node={
            "family": task.family, "size": task.size, "bos": task.bos,
            "with_attns": task.with_attns})
    cs.store(group="optimizer", name="adam", node=OptimizerConfig(name=OptimizerName.adam))
    cs.store(group="optimizer", name="sgd",
             node=OptimizerConfig(name=OptimizerName.sgd, lr=1e-2, momentum=0.9))
    cs.store(group="schedule", name="exponential",
             node=ScheduleConfig(name=ScheduleName.exponential))
    cs.store(group="schedule", name="constant", node=ScheduleConfig(name=ScheduleName.constant))
    for arch in ArchName:
        cs.store(group="arch", name=arch.value, node=ArchConfig(name=arch))
