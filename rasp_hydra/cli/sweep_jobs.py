"""A basic sweep's job list, computed once when the sweep is launched and written into its
root (`runs.sweeps.write_sweep_jobs`), so that readers (the progress tag, the sweep summary, the
report's missing jobs) read it back instead of rebuilding it through Hydra."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from omegaconf import OmegaConf


def expand(params: dict | None, overrides: list[str]) -> list[list[str]] | None:
    """Every job's overrides, in the basic sweeper's order: the sweeper's params first, then
    the command line; a key given twice keeps its first place and its last value. None for
    a sweep whose list only the sweeper can make: a glob over a group's options (it needs
    Hydra's config loader) or a shuffled choice.

    >>> expand({"train.seed": "1,2"}, ["lang=sort_10", "optimizer.lr=0.1,0.2"])[:3]
    [['train.seed=1', 'lang=sort_10', 'optimizer.lr=0.1'], \
['train.seed=1', 'lang=sort_10', 'optimizer.lr=0.2'], \
['train.seed=2', 'lang=sort_10', 'optimizer.lr=0.1']]
    """
    args = [f"{k}={v}" for k, v in (params or {}).items()] + list(overrides)
    choices: dict[str, list[str]] = {}
    for o in OverridesParser.create().parse_overrides(args):
        key = o.get_key_element()
        if o.is_sweep_override() and (not o.is_discrete_sweep()
                                      or o.value_type == ValueType.GLOB_CHOICE_SWEEP
                                      or getattr(o.value(), "shuffle", False)):
            return None
        choices[key] = ([f"{key}={v}" for v in o.sweep_string_iterator()]
                        if o.is_sweep_override() else [f"{key}={o.get_value_element_as_str()}"])
    return [list(job) for job in itertools.product(*choices.values())]


def basic_jobs(hydra_cfg: Any) -> list[list[str]] | None:
    """The job list of a sweep's `hydra` config section if the basic sweeper runs it and
    numbers its jobs; None for another sweeper, whose jobs are whatever it asks for."""
    hydra_cfg = OmegaConf.to_container(hydra_cfg, resolve=False)
    target = str((hydra_cfg.get("sweeper") or {}).get("_target_", ""))
    subdir = str((hydra_cfg.get("sweep") or {}).get("subdir", ""))
    if not target.endswith("BasicSweeper") or subdir.replace(" ", "") != "${hydra.job.num}":
        return None
    params = hydra_cfg["sweeper"].get("params") or {}
    return expand(params, list((hydra_cfg.get("overrides") or {}).get("task") or []))


def write_if_basic(config: Any) -> None:
    """At a sweep's start (RunDirCheck.on_multirun_start): write its job list into its root
    when it has one (`basic_jobs`)."""
    from rasp_hydra.runs.sweeps import write_sweep_jobs

    jobs = basic_jobs(config.hydra)
    if jobs is not None:
        write_sweep_jobs(Path(str(config.hydra.sweep.dir)), jobs)
