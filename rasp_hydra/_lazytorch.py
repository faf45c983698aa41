"""Defer `import torch` (about 3 s) until torch is first used.

The task registry's modules say `import torch` at the top, but listing task names, composing
a config or printing `--help` never computes with it. `install()` puts a stand-in module
under the name "torch"; the first attribute looked up on it imports the real torch, puts it
back in `sys.modules`, and copies its namespace into the stand-in, so modules that imported
the stand-in run at full speed from then on. Used only by the command-line entry point.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types


class _LazyTorch(types.ModuleType):
    def __getattr__(self, name: str):
        real = _load(self)
        return getattr(real, name)


def _load(stub: types.ModuleType) -> types.ModuleType:
    if sys.modules.get("torch") is stub:
        del sys.modules["torch"]
    real = importlib.import_module("torch")
    stub.__dict__.update(real.__dict__)
    return real


def install() -> None:
    """Make the next `import torch` cheap; a no-op if torch is loaded or not installed."""
    if "torch" in sys.modules:
        return
    spec = importlib.util.find_spec("torch")
    if spec is None:
        return
    stub = _LazyTorch("torch")
    stub.__spec__ = spec  # the import system reads it; reading it must not load torch
    sys.modules["torch"] = stub
