"""A run's saved compositions: the first invocation's ``.hydra/`` (plain YAML, read as
OmegaConf writes it), where a later invocation's goes
(``invocations/NNN/``), and how two compositions differ (``config_differences``, over the
one flat form ``flatten``). This module changes when what a resume may change, or where
compositions are kept, changes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from rasp_hydra.runs.files import CONFIG, HYDRA, INVOCATION_DIRS


class _Loader(yaml.SafeLoader):
    """YAML as OmegaConf reads it: `1e-3` is a float (YAML 1.1 wants `1.0e-3`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+|[0-9][0-9_]*\.[0-9_]*"
               r"|\.[0-9_]+|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def load_yaml(path):
    """A YAML file written by OmegaConf (a run's config, a sweep's multirun.yaml) as plain
    dicts and lists, interpolations left as text.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
    >>> _ = p.write_text("optimizer: {lr: 1e-3, name: adam}\\nx: ${a.b}\\nn: 3\\n")
    >>> load_yaml(p)
    {'optimizer': {'lr': 0.001, 'name': 'adam'}, 'x': '${a.b}', 'n': 3}
    """
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_yaml(text: str):
    """YAML text as `load_yaml` reads a file."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


_INTERPOLATION = re.compile(r"\$\{([^${}]*)\}")


def resolve_interpolations(cfg: dict) -> dict:
    """`cfg` with every ``${a.b}`` (a key of `cfg` itself) replaced by its value, as OmegaConf
    resolves a saved config; ValueError naming the key for one that cannot be resolved (a
    missing key, a resolver such as ``${now:...}``, a cycle).

    >>> resolve_interpolations({"a": {"b": 2}, "c": "${a.b}", "d": "x${a.b}"})
    {'a': {'b': 2}, 'c': 2, 'd': 'x2'}
    """
    def lookup(key: str, seen: tuple) -> object:
        if key in seen:
            raise ValueError(f"{key} refers to itself")
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"no key {key!r}")
            node = node[part]
        return walk(node, key, (*seen, key))

    def walk(node, where: str, seen: tuple = ()):
        if isinstance(node, dict):
            return {k: walk(v, f"{where}.{k}" if where else str(k), seen)
                    for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{where}[{i}]", seen) for i, v in enumerate(node)]
        if not isinstance(node, str) or "${" not in node:
            return node
        try:
            whole = _INTERPOLATION.fullmatch(node)
            if whole:
                return lookup(whole[1], seen)
            text = _INTERPOLATION.sub(lambda m: str(lookup(m[1], seen)), node)
        except ValueError as err:
            raise ValueError(f"{where}: {node!r}: {err}") from None
        if "${" in text:
            raise ValueError(f"{where}: {node!r}: not an interpolation of a key")
        return text

    return walk(cfg, "")


def read_config(run_dir) -> dict | None:
    """The run's resolved config as plain nested dicts, or None if it has none."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return None
    return load_yaml(path)

def read_original_config(run_dir) -> dict:
    """The first invocation's composition as a plain dict ({} if none)."""
    return read_config(run_dir) or {}

def read_config_dict(run_dir) -> dict:
    """The run's config as plain nested dicts (interpolations unresolved); {} if it has
    none or it cannot be read."""
    try:
        cfg = read_config(run_dir) or {}
    except Exception:  # a half-written or foreign file is "no config", not a crash
        return {}
    return cfg if isinstance(cfg, dict) else {}

def original_cwd(run_dir) -> Path | None:
    """The working directory of the run's first invocation (relative paths in its config,
    e.g. lang.program, are relative to it)."""
    path = Path(run_dir) / HYDRA / "hydra.yaml"
    try:
        return Path(load_yaml(path)["hydra"]["runtime"]["cwd"])
    except Exception:  # no hydra.yaml (a library run): the current directory
        return None

def next_invocation_dir(run_dir) -> Path:
    """Where a later invocation's composition goes: invocations/NNN (relative to run_dir)."""
    base = Path(run_dir) / INVOCATION_DIRS
    taken = [int(p.name) for p in base.glob("[0-9]*") if p.name.isdigit()] if base.is_dir() \
        else []
    return INVOCATION_DIRS / f"{max(taken, default=1) + 1:03d}"

def config_differences(original: dict, current: dict, safe=()) -> list[str]:
    """Dotted keys whose values differ between two plain config dicts, except `safe` keys
    (a key or any key below it). Keys the original lacks (added by a newer version of the
    code, with their defaults) are not differences.

    >>> config_differences({"model": {"layers": 2}, "train": {"epochs": 5}},
    ...                    {"model": {"layers": 3}, "train": {"epochs": 9}}, ["train.epochs"])
    ['model.layers']
    """
    flat_o, flat_c = flatten(original), flatten(current)
    def is_safe(k):
        return any(k == s or k.startswith(s + ".") for s in safe)
    return [k for k, v in flat_o.items() if not is_safe(k) and flat_c.get(k, v) != v]

def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}, "c": 2}`` -> ``{"a.b": 1, "c": 2}``, the one flat form of a config
    or a record (report columns, tracker params, config comparison); lists become JSON
    text and an empty dict leaves no key.

    >>> flatten({"a": {"b": 1, "c": {}}, "d": [1, 2]})
    {'a.b': 1, 'd': '[1, 2]'}
    """
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out
