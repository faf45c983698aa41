"""Helpers shared by the end-to-end tests: run the real command line in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


# Small enough that a run takes a few seconds on one core, big enough to learn hist_10_bos:
# the `+debug=tiny` preset (conf/debug/tiny.yaml) as key=value overrides, in its order.
def _overrides(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _overrides(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={value}")
    return out


TINY = _overrides(yaml.safe_load(
    (Path(__file__).parents[1] / "conf" / "debug" / "tiny.yaml").read_text()))


def cli(*args: str, cwd: Path, timeout: float = 240, module: str = "rasp_hydra",
        check: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m rasp_hydra ARGS` in `cwd`; stdout and stderr captured as text; `env`
    adds to the environment."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


@pytest.fixture(scope="module")
def one_thread():
    """Small tensor ops: one thread is faster, and immune to a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli_cwd(tmp_path: Path) -> Path:
    """A scratch working directory: outputs/ lands inside it."""
    return tmp_path
