"""The config schema and every code-defined group option, in Hydra's ConfigStore, and the
way back from a composed DictConfig to the typed Config the library takes."""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore

from rasp_hydra.config import (
    ArchConfig,
    ArchName,
    Config,
    ModelConfig,
    OptimizerConfig,
    OptimizerName,
    ScheduleConfig,
    ScheduleName,
)


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
    cs.store(group="lang", name="rasp", node={"family": "rasp"})
    cs.store(group="model", name="default", node=ModelConfig())
    cs.store(group="optimizer", name="adam", node=OptimizerConfig(name=OptimizerName.adam))
    cs.store(group="optimizer", name="sgd",
             node=OptimizerConfig(name=OptimizerName.sgd, lr=1e-2, momentum=0.9))
    cs.store(group="schedule", name="exponential",
             node=ScheduleConfig(name=ScheduleName.exponential))
    cs.store(group="schedule", name="constant", node=ScheduleConfig(name=ScheduleName.constant))
    for arch in ArchName:
        cs.store(group="arch", name=arch.value, node=ArchConfig(name=arch))


def to_config(cfg: Any) -> Config:
    """The typed Config of a composed DictConfig (or the Config itself); a DictConfig that
    is not of the schema (a config loaded from a file) is merged into it first."""
    if isinstance(cfg, Config):
        return cfg
    from omegaconf import OmegaConf

    if OmegaConf.get_type(cfg) is not Config:
        cfg = OmegaConf.merge(OmegaConf.structured(Config), cfg)
    return OmegaConf.to_object(cfg)
