"""Keys that do not exist: `+model.layerz=3` (the form Hydra's own error suggests for a
misspelled key) adds a key that the schema does not hold, and nothing would ever read it.
The composed config is checked against the schema's dataclasses (rasp_hydra.config), so a
key added to a dataclass is known here at once."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from rasp_hydra.errors import ConfigError


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass a field holds (`X` or `X | None`), or None (a value, Any, a dict)."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def unknown_keys(values: dict, schema: type, prefix: str = "") -> list[tuple[str, list[str]]]:
    """(key as a.b.c, the keys that exist beside it) for each key of `values` that `schema`
    does not have, depth first.

    >>> from rasp_hydra.config import Config
    >>> unknown_keys({"model": {"layerz": 3, "heads": 1}, "lang": {}}, Config)[0][0]
    'model.layerz'
    """
    hints = typing.get_type_hints(schema)
    found = []
    for key, value in values.items():
        if key not in hints:
            found.append((prefix + str(key), [prefix + k for k in hints]))
            continue
        inner = _dataclass_of(hints[key])
        if inner is not None and isinstance(value, dict):
            found += unknown_keys(value, inner, f"{prefix}{key}.")
    return found


def refuse_unknown_keys(values: dict, overrides: list[str]) -> None:
    """One paragraph naming each unknown key, the override that gave it and the close names
    that exist; nothing when every key is the schema's."""
    from rasp_hydra.config import Config

    found = unknown_keys(values, Config)
    if not found:
        return
    parts = []
    for key, siblings in found:
        given = next((o for o in overrides if o.lstrip("+~").split("=")[0] == key), None)
        parts.append(f"{key}" + (f" (from {given})" if given else "") + " is not a key of "
                     f"the config; {close_names(key, siblings)}")
    raise ConfigError(
        f"{'; '.join(parts)}. Nothing would read "
        f"{'it' if len(found) == 1 else 'them'}: the run would train as if "
        f"{'it' if len(found) == 1 else 'they'} were not there, so it is refused before any "
        "work. Give "
        "a key that exists (python -m rasp_hydra --cfg job lists them), without +.")


def close_names(key: str, siblings: list[str]) -> str:
    """"close names that exist: model.layers, model.heads" (or all of them, if none is close).

    >>> close_names("model.layerz", ["model.layers", "model.heads"])
    'close names that exist: model.layers'
    """
    close = difflib.get_close_matches(key, siblings, n=3, cutoff=0.75)
    return (f"close names that exist: {', '.join(close)}" if close else
            f"the keys there are {', '.join(siblings)}")


def siblings_of(key: str) -> list[str] | None:
    """The schema's keys beside `key` (a.b.c) (model.layerz -> model.layers, ...), or None
    where the schema does not say (a free-form value)."""
    from rasp_hydra.config import Config

    schema, prefix = Config, ""
    *parents, _ = key.split(".")
    for part in parents:
        hints = typing.get_type_hints(schema)
        inner = _dataclass_of(hints.get(part))
        if inner is None:
            return None
        schema, prefix = inner, f"{prefix}{part}."
    return [prefix + k for k in typing.get_type_hints(schema)]
