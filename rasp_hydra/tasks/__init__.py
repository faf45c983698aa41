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

from .base import ALL_TOKENS, BOS, IGNORE, Family, Selector, Task, task_name
from .registry import (
    FAMILIES,
    UnknownTaskError,
    get_task,
    make_task,
    register_family,
    resolve_family,
    task_names,
    task_of_lang,
)

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
