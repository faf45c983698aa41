"""`python -m rasp_hydra [overrides]`: train one transformer; `-m` runs a sweep.

    python -m rasp_hydra lang=reverse_100 model.layers=2
    python -m rasp_hydra -m lang=hist_10_bos,sort_10 arch=predicted,fewer_layers
    python -m rasp_hydra --resume outputs/runs/2026-11-28/10-00-00-123456

`--resume RUN_DIR [safe overrides]` recomposes the run's own config from
`RUN_DIR/.hydra/overrides.yaml` and continues training in that directory from
`checkpoints/last.pt`; overrides that would change the model, the data or the optimizer are
refused before anything is written (config.RESUME_SAFE_KEYS lists what may change). Torch
is imported inside the job, so `--help`, `--cfg job` and tab completion stay fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from rasp_hydra.cli.claim import claim_run_dir
from rasp_hydra.cli.conf import config_dir
from rasp_hydra.cli.errors import run_command
from rasp_hydra.cli.store import register_configs
from rasp_hydra.errors import ConfigError, UserError

register_configs()
OmegaConf.register_new_resolver("rasp_hydra.claim", claim_run_dir, replace=True)


CONF = config_dir()  # installed or in a checkout


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    from rasp_hydra.cli.hydra_job import run_from_hydra

    return run_from_hydra(cfg)


def resume_argv(argv: list[str]) -> list[str]:
    """Rewrite `--resume RUN_DIR [overrides]` into the overrides that recreate that run."""
    if "--resume" not in argv:
        return argv
    i = argv.index("--resume")
    if i + 1 >= len(argv):
        raise ConfigError("--resume needs a run directory, e.g. --resume outputs/runs/DATE/TIME")
    run_dir = Path(argv[i + 1]).resolve()
    from rasp_hydra.runs import RunDir

    rd = RunDir(run_dir)
    if not rd.overrides_file.is_file():
        raise ConfigError(
            f"--resume {argv[i + 1]}: that directory holds no run (no "
            f".hydra/overrides.yaml). Give the directory of a run that `python -m rasp_hydra` "
            "started: one with .hydra/, train.log and checkpoints/, e.g. outputs/runs/DATE/TIME "
            "or outputs/multirun/DATE/TIME/N."
        )
    saved = rd.overrides()  # BrokenFile (exit 2) if it is not a list of them
    extra = argv[1:i] + argv[i + 2:]
    if any(a in ("-m", "--multirun") for a in extra):
        raise ConfigError("--resume continues one run; it cannot be combined with -m/--multirun.")
    # `hydra.run.dir` puts the job back into its own directory; paths with `=` or spaces
    # need quoting in Hydra's override grammar.
    quoted = str(run_dir).replace("\\", "\\\\").replace("'", "\\'")
    return [argv[0], *saved, *extra, f"hydra.run.dir='{quoted}'", "train.resume=true"]


def check_plugins(argv: list[str]) -> None:
    """A sweeper or launcher that is not installed: its install command, before any work."""
    from rasp_hydra.cli.search import missing_plugin

    problem = missing_plugin(argv[1:])
    if problem:
        raise ConfigError(problem)



def train() -> int:
    """The command: `--resume` rewritten, plugins checked, then Hydra's own main.

    Hydra prints its own errors and exits 1; HYDRA_FULL_ERROR lets them reach this function
    instead, so that a misspelled key or a wrong type exits 2 like every refused value.
    """
    sys.argv = resume_argv(sys.argv)
    check_plugins(sys.argv)
    wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as err:  # Hydra's and OmegaConf's errors: anything else is a bug
        refusal = hydra_refusal(err)
        if refusal is None or wants_traceback:
            raise
        raise refusal from None
    return 0


def hydra_refusal(err: Exception) -> ConfigError | None:
    """Hydra's error for a bad command line or config (a misspelled key, a wrong type, an
    unknown option), with Hydra's message kept; None for any other exception."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(err, (HydraException, MissingConfigException, OverrideParseException,
                            OmegaConfBaseException)):
        return None
    cause = err.__cause__
    text = str(err) if not isinstance(cause, OmegaConfBaseException) else f"{err}\n{cause}"
    return ConfigError(_with_close_names(text, cause))


def _with_close_names(text: str, cause) -> str:
    """A key the schema does not hold: the names close to it, instead of Hydra's advice to
    add it with `+` (which would only store it where nothing reads it)."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    from rasp_hydra.cli.keys import close_names, siblings_of

    key = getattr(cause, "full_key", None)
    if not isinstance(cause, (ConfigKeyError, ConfigAttributeError)) or not key:
        return text
    siblings = siblings_of(str(key))
    if not siblings:
        return text
    import re

    kept = re.sub(r" ?To append to your config use \S+", "", text)  # '+' would store it unread
    return (f"{kept}\n{key} is not a key of the config; {close_names(str(key), siblings)}. "
            "Nothing was written.")


def main() -> None:
    run_command(train)
