"""`rasp-hydra` and `python -m rasp_hydra`: the training command's front door.

What runs before Hydra: torch deferred (`_lazytorch`), idle OpenMP threads set to sleep,
and `--help`, answered here from the config directory and the task registry without
composing a config (Hydra's own help composes one and walks every `lang` option, seconds;
`--hydra-help` is still Hydra's).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rasp_hydra.cli.conf import config_dir

APP = "rasp-hydra"


def train() -> None:
    """The console command `rasp-hydra` (and `python -m rasp_hydra`)."""
    from rasp_hydra import _lazytorch

    _lazytorch.install()  # `--help`, `--cfg` and tab completion never wait for torch
    # Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU spinning
    # threads steal the cores that the other jobs of a sweep train on. Inherited by the
    # sweep's worker processes; set OMP_WAIT_POLICY=ACTIVE to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if wants_help(sys.argv[1:]):
        print(help_text(), end="")
        sys.exit(0)
    from rasp_hydra.cli.train import main

    main()


def wants_help(args: list[str]) -> bool:
    """`-h`/`--help` anywhere before a `--` (Hydra reads them anywhere too)."""
    return any(a in ("-h", "--help") for a in args)


USAGE = f"""\
{APP}: train transformer encoders on the tasks of "Thinking Like Transformers"
(RASP); the same command runs sweeps. `python -m rasp_hydra` is the same command.

usage:
  {APP} [KEY=VALUE ...]                     one run, e.g. lang=reverse_26 model.layers=2
  {APP} -m [KEY=A,B ...]                    a sweep over every combination of the values
  {APP} --resume RUN_DIR [KEY=VALUE ...]    continue a run in its own directory
  {APP} --cfg job [KEY=VALUE ...]           print the composed config and stop

this project's flags:
  --resume RUN_DIR   continue RUN_DIR from checkpoints/last.pt with its own config; only
                     train.epochs, train.num_threads, train.device, train.progress, ... may
                     change (anything else is refused before a byte is written; another
                     thread count needs train.inexact_resume=true)
  -h, --help         this text

Hydra's flags (all of them: --hydra-help):
  -m, --multirun     a sweep: comma-separated values, ranges (range(0,3)), +seeds=three
  --cfg job|hydra|all  print the config (job: the run's own) instead of running
  --info [defaults]  where each config comes from
  -c, --config-name NAME, --config-dir DIR, --shell-completion
"""

GROUP_NOTES = {
    "model": "the encoder's size; paper: the paper's Table 1 size",
    "optimizer": "adam or sgd, with optimizer.lr",
    "schedule": "the learning rate per epoch",
    "arch": "layers and heads relative to the task's RASP budget",
    "logger": "experiment trackers; a list takes several: logger=[tensorboard,mlflow]",
    "experiment": "presets: +experiment=NAME",
    "seeds": "replicates: +seeds=NAME (with -m)",
    "search": "hyperparameter search: +search=NAME (with -m)",
    "debug": "tiny sizes for smoke runs, given last: +debug=tiny",
}


def help_text() -> str:
    """The whole `--help` page."""
    return (USAGE + "\nconfig groups (GROUP=OPTION; the ones marked + take +GROUP=OPTION):\n"
            + lang_lines() + "".join(group_lines()) + "\n"
            "\nthe config's sections: lang, model, optimizer, schedule, train, arch, logger;\n"
            "every key and its default: --cfg job, and docs/configuration.md\n")


def lang_lines() -> str:
    """The `lang` group by family, a few names each: its options number in the hundreds."""
    from rasp_hydra.tasks import task_names

    lines = ["  lang          the task, by family (all names: rasp-hydra-tasks list)\n"]
    for family, names in task_names(grouped=True).items():
        shown = ", ".join(names[:2]) + (", ..." if len(names) > 2 else "")
        lines.append(f"{'':15}{family:<13}{len(names):>3} options: {shown}\n")
    lines.append(f"{'':15}{'rasp':<13}    a RASP program: lang=rasp lang.program=FILE.rasp\n")
    presets = file_options("lang")
    if presets:
        shown = ", ".join(presets[:2])
        lines.append(f"{'':15}{'presets':<13}{len(presets):>3} options: {shown}, ...\n")
    return "".join(lines)


def group_lines() -> list[str]:
    """Every other group: its options, from the schema's names and the config files."""
    from rasp_hydra.config import ArchName, OptimizerName, ScheduleName

    coded = {"model": ["default"], "optimizer": [o.value for o in OptimizerName],
             "schedule": [s.value for s in ScheduleName], "arch": [a.value for a in ArchName]}
    lines = []
    for group, note in GROUP_NOTES.items():
        options = coded.get(group, []) + file_options(group)
        plus = "+" if group not in coded and group != "logger" else " "
        lines.append(f" {plus}{group:<13}{note}\n{'':15}{', '.join(options)}\n")
    return lines


def file_options(group: str) -> list[str]:
    """The options that config files give a group (`conf/GROUP/**.yaml`), sorted."""
    root = Path(config_dir()) / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))
