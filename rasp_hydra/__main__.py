"""`python -m rasp_hydra [overrides]`: train one transformer (`-m`: a sweep); the command
itself is `rasp_hydra.cli.train`."""

import os

from rasp_hydra import _lazytorch

if __name__ == "__main__":
    _lazytorch.install()  # `--help`, `--cfg` and tab completion never wait for torch
    # Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU spinning
    # threads steal the cores that the other jobs of a sweep train on. Inherited by the
    # sweep's worker processes; set OMP_WAIT_POLICY=ACTIVE to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from rasp_hydra.cli.train import main

    main()
