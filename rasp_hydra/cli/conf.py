"""Where the configs are: `config_dir`, for the front door (`entry`) and Hydra's main
(`train`)."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> str:
    """The configs: `rasp_hydra/conf/` in an installed package (the build copies the
    checkout's top-level `conf/` there), else the checkout's `conf/` (an editable install).
    Absolute: Hydra reads a relative config_path as relative to the calling module."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "conf"
    return str(installed if installed.is_dir() else package.parent / "conf")
