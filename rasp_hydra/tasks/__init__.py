"""The task suite of "Thinking Like Transformers" as batched tensor functions.

    >>> from rasp_hydra.tasks import get_task
    >>> task = get_task("hist_10_bos")
    >>> tokens, lengths = task.encode(["abca"])
    >>> task.decode_outputs(task.outputs(tokens, lengths), lengths)
    [['§', '2', '1', '1', '2']]

One module per family (reverse, hist, hist2, sort, sort_by_freq, dyck), the shared
RASP primitives in ``rasp``, the ``Family``/``Task`` classes in ``base`` and the name
grammar in ``registry``. ``python -m rasp_hydra.tasks list|peep`` shows them.
"""

import importlib

# Imported on first use (PEP 562), so that `python -m rasp_hydra.tasks list`, which needs
# no torch, can defer it (`_lazytorch`) before the families' modules import it.
_WHERE = {"ALL_TOKENS": "base", "BOS": "base", "IGNORE": "base", "Family": "base",
          "Selector": "base", "Task": "base", "task_name": "base"}


def __getattr__(name: str):
    module = _WHERE.get(name, "registry" if name in __all__ else None)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "ALL_TOKENS",
    "BOS",
    "FAMILIES",
    "IGNORE",
    "Family",
    "Selector",
    "Task",
    "UnknownTaskError",
    "get_task",
    "make_task",
    "register_family",
    "resolve_family",
    "task_name",
    "task_names",
    "task_of_lang",
]
