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

from rasp_hydra import _lazytorch

if __name__ == "__main__":
    _lazytorch.install()  # `--help`, `--cfg` and tab completion never wait for torch
    # Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU spinning
    # threads steal the cores that the other jobs of a sweep train on. Inherited by the
    # sweep's worker processes; set OMP_WAIT_POLICY=ACTIVE to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from rasp_hydra.claim import claim_run_dir  # noqa: E402
from rasp_hydra.config import register_configs  # noqa: E402

register_configs()
OmegaConf.register_new_resolver("rasp_hydra.claim", claim_run_dir, replace=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from rasp_hydra.hydra_job import run_from_hydra

    return run_from_hydra(cfg)


def resume_argv(argv: list[str]) -> list[str]:
    """Rewrite `--resume RUN_DIR [overrides]` into the overrides that recreate that run."""
    if "--resume" not in argv:
        return argv
    i = argv.index("--resume")
    if i + 1 >= len(argv):
        sys.exit("error: --resume needs a run directory, e.g. --resume outputs/runs/DATE/TIME")
    run_dir = Path(argv[i + 1]).resolve()
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        sys.exit(
            f"error: --resume {argv[i + 1]}: that directory holds no run (no "
            f".hydra/overrides.yaml). Give the directory of a run that `python -m rasp_hydra` "
            "started: one with .hydra/, train.log and checkpoints/, e.g. outputs/runs/DATE/TIME "
            "or outputs/multirun/DATE/TIME/N."
        )
    from omegaconf import OmegaConf

    saved = [str(o) for o in OmegaConf.load(overrides_file)]
    extra = argv[1:i] + argv[i + 2:]
    if any(a in ("-m", "--multirun") for a in extra):
        sys.exit("error: --resume continues one run; it cannot be combined with -m/--multirun.")
    # `hydra.run.dir` puts the job back into its own directory; paths with `=` or spaces
    # need quoting in Hydra's override grammar.
    quoted = str(run_dir).replace("\\", "\\\\").replace("'", "\\'")
    return [argv[0], *saved, *extra, f"hydra.run.dir='{quoted}'", "train.resume=true"]


def check_plugins(argv: list[str]) -> None:
    """A sweeper or launcher that is not installed: its install command, before any work."""
    from rasp_hydra.search import missing_plugin

    problem = missing_plugin(argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    sys.argv = resume_argv(sys.argv)
    check_plugins(sys.argv)
    main()
