"""Linear probes of a RASP program's values in a trained model:
``python -m rasp_hydra.probe RUN_DIR`` (``--all SWEEP_DIR`` for every completed run).

Does the model hold the program's intermediate values where the program computes them?
For a run whose task has a RASP program (``lang=rasp``, or a built-in Table 1 family
through its shipped program in ``rasp_hydra/rasp/programs/``):

- features: the residual stream after the embedding (layer 0) and after each layer l
  (``Encoder.hidden_states``), at every real position except BOS (the model's BOS slot
  holds no program value; the program's values there are placeholders such as "§");
- labels: the value, at the same positions, of every named s-op the program's output
  depends on (``tokens``, ``indices`` and library ones such as ``length`` included;
  constants left out), from the program evaluated on the same ids (``rasp.evaluate``);
- sequences: the first ``--sequences`` of the run's train split to fit on and of its
  test split to score on (the run's own data, rebuilt from its config), then at most
  ``MAX_POSITIONS`` positions of each, drawn with a fixed seed;
- one probe per (s-op, layer), features standardised on the train positions (scikit-learn):
  an s-op of numbers with more than ``MANY_VALUES`` distinct values is *numerical* and
  gets a ridge regression, scored by R^2 (baseline 0: the train mean); every other s-op is
  *categorical* and gets a multinomial logistic regression, scored by accuracy beside the
  baseline of always guessing the train split's most common value;
- a control: the same probes on the untrained model of the same config and seed (the
  weights training started from), so what the architecture gives for free (tokens are
  decodable from any embedding) is told apart from what training put there;
- each s-op's compiled layer: the residual stream index where the compiled program first
  holds it (0 for values of tokens and indices alone; l when it needs layer l's
  aggregate), from ``rasp.compile``.

Decodable: skill = (score - baseline) / (1 - baseline) (R^2 itself for numerical s-ops) is
at least ``DECODABLE`` (0.8: accuracy 0.9 on a 50/50 value, R^2 0.8). Over the control:
the trained skill exceeds the control's by at least ``OVER_CONTROL`` (0.2).

Writes ``RUN_DIR/probes/probes.csv`` (one row per s-op and layer), ``probes.png``
(s-op x layer heatmap of trained minus control, the compiled layer outlined) and prints a
line per s-op. From Python: ``probe_run(run_dir)`` or ``load_run(run_dir).probe()``.
"""

from __future__ import annotations

from collections.abc import Sequence

from rasp_hydra.probe.fit import (
    COLUMNS,
    DECODABLE,
    MANY_VALUES,
    MAX_ITER,
    OVER_CONTROL,
    encode_labels,
    fit_probe,
    initial_model,
    probe_matrix,
    residual_streams,
    skill,
)
from rasp_hydra.probe.output import draw_matrix, summary_lines, write_outputs
from rasp_hydra.probe.program import (
    SHIPPED,
    Positions,
    ProbeError,
    compiled_layers,
    program_labels,
    program_sops,
    program_task,
    sample_positions,
)
from rasp_hydra.probe.run import (
    DEFAULT_SEQUENCES,
    MAX_POSITIONS,
    PROBES,
    prepare,
    probe_all,
    probe_run,
    run_probes,
)

__all__ = [
    "COLUMNS", "DECODABLE", "DEFAULT_SEQUENCES", "MANY_VALUES", "MAX_ITER", "MAX_POSITIONS",
    "OVER_CONTROL", "PROBES", "SHIPPED", "Positions", "ProbeError", "compiled_layers",
    "draw_matrix", "encode_labels", "fit_probe", "initial_model", "main", "prepare",
    "probe_all", "probe_matrix", "probe_run", "program_labels", "program_sops", "program_task",
    "residual_streams", "run_probes", "sample_positions", "skill", "summary_lines",
    "write_outputs",
]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``python -m rasp_hydra.probe --help``); returns the exit code."""
    # imported here: importing __main__ with the package would make `python -m` warn
    from rasp_hydra.probe.__main__ import main as cli_main

    return cli_main(argv)
