"""The config: one set of dataclasses that is both Hydra's schema and what the library takes.

Hydra validates every YAML file and command-line override against these types, so a
misspelled key (`model.layer=2`) or a wrong type (`model.layers=two`) fails before any work
starts; the Hydra wing (`rasp_hydra.cli.store.to_config`) turns a composed config into these
same objects, which `train()` takes as they are. The defaults below are the ones of the
original experiments ("Training defaults" in docs/tasks.md) and are written nowhere else
(the library's signatures take them from here, e.g. `LangConfig.max_len`): `conf/` holds
only presets that differ from them (`model=paper`, experiments).

Every task name of the registry is also an option of the `lang` group
(`lang=hist2_26_bos_with_attns`); a user family is reached by overriding
`lang.family=mypkg.tasks:Palindrome`.

Besides the dataclasses: the values derived from them (`resolve_model`, the shape a job
trains; the lengths of the data), and `from_dict`, which turns plain dicts (a run's saved
config.yaml, read back as YAML) into these same objects. The checks of these values are in
`checks.py`.

This module must stay cheap to import (no torch, no hydra at import): `--help`, `--cfg job`,
tab completion and `model.py` import it.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from rasp_hydra.errors import ConfigError  # noqa: F401  (re-exported: the checks raise it)

MISSING = "???"  # OmegaConf's mark of a value that must be given (its MISSING)


class Positions(str, Enum):
    sin = "sin"
    learned = "learned"


class Norm(str, Enum):
    """Where the encoder normalizes: after each residual add (the paper's post-LN), or
    nowhere (compiled models, and models exported to TransformerLens)."""

    post = "post"
    none = "none"


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


class Precision(str, Enum):
    """How the forward and backward passes compute (docs/gpu.md, "Precision")."""

    fp32 = "fp32"  # float32 throughout, as the published figures
    tf32 = "tf32"  # float32 tensors, TF32 matmuls (NVIDIA GPUs of compute capability 8.0 on)
    bf16 = "bf16"  # autocast to bfloat16; float32 master weights and optimizer state


class Checkpoint(str, Enum):
    last = "last"
    best = "best"


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
        return {  # a 0-layer program (no aggregate) trains at the smallest model
            ArchName.predicted: (max(layers, 1), max(heads, 1), 1),
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

    # reverse, hist, hist2, sort, sort_by_freq, dyck_ptf, "module:Class", or rasp (a program)
    family: str = MISSING
    size: int | None = None  # alphabet size k (10, 26, 52, 100); bracket pairs for dyck_ptf
    bos: bool = False
    with_attns: bool = False  # supervise the family's RASP selectors
    # lang=rasp: the task is a RASP program's output, its budget and heads the compiled ones
    program: str | None = None  # a .rasp file, a shipped program's name, or inline source
    output: str | None = None  # the s-op to learn (default: the program file's name)
    name: str | None = None  # the task's base name, which seeds the data (default: OUTPUT_K)
    # the input tokens: a string of characters (abc), a list of ints or strings ([10,20,30],
    # [ab,cd]) or a range of ints (0..99); default the first `size` of the project's tokens,
    # or the ints 0..size-1 for a program that reads tokens_int (tasks/program.py: vocabulary)
    alphabet: Any = None
    sampler: str = "uniform"  # uniform | dyck | module:function
    classes: Any = None  # the output classes in order, a list or a range 0..99 (default: the
    # values the output can take: numbers ascending, then the alphabet's tokens, then strings)
    min_len: int = 1
    max_len: int = 100
    train_size: int = 50_000
    valid_size: int = 1_000
    test_size: int = 1_000
    data_seed: int = 0
    long_test_size: int = 0  # > 0 adds a "test_long" split for length generalization
    long_min_len: int | None = None  # None: max_len + 1
    long_max_len: int | None = None  # None: 2 * max_len


@dataclass
class ModelConfig:
    """The encoder (docs/tasks.md, "Training defaults"); `arch` may rewrite layers/heads/width.

    `resolve_model` turns it into the shape a job trains (no None left), which is what
    `model.Encoder` takes.
    """

    layers: int = 2
    heads: int = 1
    d_model: int = 128
    ff: int | None = None  # None: 2 * d_model
    dropout: float = 0.0
    positions: Positions = Positions.sin
    max_len: int | None = None  # None: the longest sequence of any split (BOS included)
    norm: Norm = Norm.post


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
    eval_batch_size: int = 250
    attn_loss_c: float = 100.0  # total loss = sequence loss + c * attention loss
    reset_patience: int = 10  # epochs without a better validation loss before reloading best
    perfect_acc_epochs: int = 3  # stop after this many epochs of validation accuracy 1.0
    seed: int = 0  # model init and batch order (the data has lang.data_seed)
    device: Device = Device.auto
    precision: Precision = Precision.fp32  # fp32 | tf32 | bf16; a resume keeps it
    # torch's CPU threads. 1 for a single run and a sweep's job alike: torch's CPU results
    # depend on the thread count in their last bits, so a result does not depend on how
    # its job was launched. None: the cores of this job / jobs running in parallel.
    num_threads: int | None = 1
    # Continue from this run directory's checkpoints when it has them. A preempted SLURM job
    # that is requeued into the same directory picks up where it stopped.
    resume: bool = True
    resume_from: Checkpoint = Checkpoint.last  # best: the way out when last.pt is broken
    # A resume on another thread count than the run trained on is refused (torch's CPU
    # results differ in the last bits); true: continue anyway, recorded as `inexact`.
    inexact_resume: bool = False
    # a tqdm bar per epoch: auto (when stderr is a terminal) | true | false. A string, not an
    # enum: Hydra reads `train.progress=true` as a boolean, which a string node keeps.
    progress: str = "auto"
    # Refuse a config whose data, model and one batch's attention cannot fit in the memory
    # this machine has free (rasp_hydra/memory.py); false: try anyway.
    check_memory: bool = True
    # A run directory that holds files other than a run's is refused; true: write there
    # anyway (rasp_hydra/cli/rundir.py).
    into_nonempty_dir: bool = False


@dataclass
class ArchConfig:
    """A model budget relative to the task's RASP-predicted layers L and heads H."""

    name: ArchName = ArchName.predicted


# --- experiment trackers (conf/logger/, rasp_hydra/trackers.py) ---------------
@dataclass
class TensorBoardConfig:
    subdir: str = "tb"  # event files in RUN_DIR/tb


@dataclass
class MlflowConfig:
    tracking_uri: str = "sqlite:///outputs/mlflow.db"
    experiment_name: str | None = None  # None: the sweep directory, or "rasp_hydra"


@dataclass
class WandbConfig:
    project: str = "rasp_hydra"
    entity: str | None = None  # None: the logged-in user's default entity
    mode: str | None = None  # online | offline | disabled; None: WANDB_MODE, else online


@dataclass
class LoggerConfig:
    """A section per chosen tracker (logger=tensorboard, logger=[tensorboard,mlflow])."""

    tensorboard: TensorBoardConfig | None = None
    mlflow: MlflowConfig | None = None
    wandb: WandbConfig | None = None
# --- end of experiment trackers --------------------------------------------------------


@dataclass
class Config:
    lang: LangConfig = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    arch: ArchConfig | None = None
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # experiment trackers


def resolve_model(model: ModelConfig, arch: ArchConfig | None, rasp_budget: tuple[int, int],
                  longest: int) -> ModelConfig:
    """The model a job trains: `model` with ff and max_len filled in and, under `arch`,
    layers and heads relative to the task's RASP budget (L, H) at the variant's width.

    Not checked: a variant may ask for 0 layers or heads (fewer_layers of a 1-layer task);
    the job records such a combination as skipped.

    >>> m = resolve_model(ModelConfig(d_model=64), ArchConfig(ArchName.fewer_layers_wider),
    ...                   (2, 1), longest=17)
    >>> m.layers, m.heads, m.d_model, m.ff, m.max_len
    (1, 2, 128, 256, 17)
    """
    ff = model.ff if model.ff is not None else 2 * model.d_model
    layers, heads, width = model.layers, model.heads, 1
    if arch is not None:
        layers, heads, width = ArchName(arch.name).budget(*rasp_budget)
    return replace(model, layers=layers, heads=heads, d_model=width * model.d_model,
                   ff=width * ff, positions=Positions(model.positions), norm=Norm(model.norm),
                   max_len=model.max_len or longest)


# Keys that may differ when a run is resumed: they change neither the model, the data nor
# the optimizer (docs/run-directory.md, its promises). train.num_threads changes the last
# bits of the results, so a resume on another count also needs train.inexact_resume=true.
RESUME_SAFE_KEYS = ("train.epochs", "train.num_threads", "train.device", "train.resume",
                    "train.resume_from", "train.inexact_resume", "train.progress",
                    "train.eval_batch_size", "train.check_memory", "logger")


def long_test_lengths(max_len: int, long_min_len: int | None,
                      long_max_len: int | None) -> tuple[int, int]:
    """The length range of the "test_long" split: by default max_len + 1 .. 2 * max_len,
    just past what training saw.

    >>> long_test_lengths(16, None, None), long_test_lengths(16, 20, None)
    ((17, 32), (20, 32))
    """
    return (max_len + 1 if long_min_len is None else long_min_len,
            2 * max_len if long_max_len is None else long_max_len)


def longest_sequence(lang: LangConfig, bos: bool) -> int:
    """The longest sequence any split of `lang` holds, BOS included."""
    longest = lang.max_len
    if lang.long_test_size > 0:
        longest = max(longest, long_test_lengths(lang.max_len, lang.long_min_len,
                                                 lang.long_max_len)[1])
    return longest + int(bos)


def from_dict(cls: type, values: Mapping | None):
    """The dataclass `cls` (Config, LangConfig, ...) of plain nested dicts, as a run's saved
    config.yaml holds them: enums from their values, a whole number where a float goes as a
    float, a missing key at its default, a key `cls` does not know left out (a config of
    another version of the code). ValueError for a value that is no member of its enum or
    a section that is not a mapping.

    >>> c = from_dict(Config, {"lang": {"family": "sort", "size": 10},
    ...                        "optimizer": {"name": "sgd", "lr": 1}, "arch": None})
    >>> c.lang.size, c.optimizer.name, c.optimizer.lr, c.model.layers, c.arch
    (10, <OptimizerName.sgd: 'sgd'>, 1.0, 2, None)
    """
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise ValueError(f"{cls.__name__} needs a mapping of its fields, not {values!r}")
    hints = typing.get_type_hints(cls)
    given = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            given[f.name] = _typed(hints[f.name], values[f.name], f.name)
        elif f.default is MISSING and dataclasses.is_dataclass(hints[f.name]):
            given[f.name] = from_dict(hints[f.name], {})  # e.g. a saved config without lang
    return cls(**given)


def _typed(hint, value, name: str):
    """`value` as the type `hint` (a dataclass, an enum, float, or a union with None)."""
    args = typing.get_args(hint)
    if value is None:
        return None
    if type(None) in args:  # X | None
        hint = next(a for a in args if a is not type(None))
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ValueError(f"{name} is {value!r}, not a mapping")
        return from_dict(hint, value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise ValueError(f"{name} is {value!r}, not one of "
                             f"{', '.join(m.value for m in hint)}") from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
