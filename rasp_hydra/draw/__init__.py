"""Attention heatmaps from a run directory: ``python -m rasp_hydra.draw RUN_DIR --sequence abcde``.

Loads the run's best checkpoint (or the last one when the run is unfinished or was cut
short, and says which), runs one input sequence (BOS added when the task has it) and
writes, under ``RUN_DIR/maps/<sequence>/``:

- ``attention_layer{L}.png``: one heatmap per head of the attention probabilities (query
  rows, key columns, both labelled with the tokens, colorbar). Heads with a target or
  reference selector (``task.selector_heads``) get the selector drawn below them, so a
  trained head and the RASP selector it should follow sit in one column;
- ``scores_layer{L}.png``: the same for the pre-softmax scores (scaled q.k);
- ``in_out.txt``: the run, its config in one line, epochs run, test accuracy (or "not
  finished"), the input, the model's output, the task's correct output and each selector
  head's attention match on this sequence, raw and above chance (``runs.match_above_chance``;
  "-" for a select that picks every key), also printed.

``--numbers 2`` overlays the values with two decimals; ``--all`` draws every run below a
sweep directory. A task whose vocabulary is numbers or words (a RASP program over
``tokens_int``, ``tasks.program``) takes its tokens separated by spaces or commas
(``--sequence "10 2 33"``), labels the axes with them and draws under ``maps/10_2_33/``.
Directory names escape every character outside ``[A-Za-z0-9_-]`` as
``%XX`` (the 100-token alphabet holds ``/``, ``\\``, whitespace, ...), and names that
could collide on a case-insensitive file system (upper-case letters) or are too long get a
short hash suffix. Figures stay readable up to length 100: they grow with the sequence
and tick labels thin out to every k-th token; whitespace tokens are shown escaped
(``␣``, ``\\t``, ``\\n``, ...).

From Python::

    from rasp_hydra.draw import draw_run
    out = draw_run("outputs/runs/DATE/TIME", "abcde", numbers=2)
    out["files"]["attention"], out["record"]["output"]
"""

from __future__ import annotations

from collections.abc import Sequence

from rasp_hydra.draw.figures import draw_layer
from rasp_hydra.draw.names import safe_name, token_label, visible
from rasp_hydra.draw.run import (
    IN_OUT,
    DrawError,
    config_summary,
    draw_all,
    draw_run,
    in_out_text,
    input_tokens,
    run_sequence,
)

__all__ = ["IN_OUT", "DrawError", "config_summary", "draw_all", "draw_layer", "draw_run",
           "in_out_text", "input_tokens", "main", "run_sequence", "safe_name", "token_label",
           "visible"]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``python -m rasp_hydra.draw --help``); returns the exit code."""
    # imported here: importing __main__ with the package would make `python -m` warn
    from rasp_hydra.draw.__main__ import main as cli_main

    return cli_main(argv)
