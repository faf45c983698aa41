"""What a sweep's worker imports once, before it forks the processes of its jobs.

Each job of the job-process launcher (hydra_plugins/rasp_hydra_launcher) is a child that a
joblib worker forks; a child inherits what its worker has imported. Importing torch and the
training modules in the worker (3 to 6 s on a busy 2-core machine) is then paid once per
worker, not once per job between its start line and its first batch. Importing torch
starts none of its thread pools, so forking after it is safe.
"""

from __future__ import annotations

import importlib

# torch._dynamo: the first optimizer a process builds imports it (torch/_compile.py), seconds
TRAINING = ("torch", "torch._dynamo", "rasp_hydra.job", "rasp_hydra.data", "rasp_hydra.model",
            "rasp_hydra.train", "rasp_hydra.runs", "rasp_hydra.trackers")


def import_training() -> None:
    """Import what every job needs to train (a no-op after the first call)."""
    for name in TRAINING:
        importlib.import_module(name)
