"""The notebook API: a run directory or a sweep as Python objects, in one place.

    from rasp_hydra.api import load_run, load_sweep

    run = load_run("outputs/runs/2026-11-28/10-00-00-123456")
    run.metrics["final"]["test"]["token_acc"]   # metrics.json as a dict
    run.history                                 # history.csv as a DataFrame, one row per epoch
    run.predict("abcab")                        # the model's output tokens
    heads = run.attention("abcab")              # {(layer, head): Head(attention, selector, ...)}
    run.draw("abcab")                           # the drawer's figures, under RUN/maps/abcab/
    run.probe()                                 # linear probes of the program's s-ops per layer

    sweep = load_sweep("outputs/multirun/2026-11-28/10-00-00-123456")  # one row per run
    sweep.groupby(["task", "arch"]).test_acc.max()

Everything reads the run directory through `runs`; nothing here writes into it except
`draw`, which writes the same files as `python -m rasp_hydra.draw`. A run that is still
training or was cut short loads from its last checkpoint (`which="auto"`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rasp_hydra import runs
from rasp_hydra.report import load_sweep

__all__ = ["Head", "Run", "load_run", "load_sweep"]


@dataclass
class Head:
    """One attention head on one input: its probabilities and, where the task has one,
    the RASP selector it is measured (or supervised) against."""

    attention: np.ndarray  # [n, n] probabilities, rows are queries (BOS included)
    scores: np.ndarray  # [n, n] pre-softmax scores
    selector: np.ndarray | None = None  # [n, n] bool
    selector_name: str | None = None
    match: float | None = None  # attention mass on the selected keys, averaged over queries
    uniform: float | None = None  # the match uniform attention over the real keys scores

    @property
    def above_chance(self) -> float | None:
        """(match - uniform) / (1 - uniform); None without a selector or when it picks
        every key (runs.match_above_chance)."""
        if self.match is None or self.uniform is None:
            return None
        from rasp_hydra.runs import match_above_chance

        return match_above_chance(self.match, self.uniform)


@dataclass
class Run:
    """A run directory, loaded: config, record, history, task and model."""

    run_dir: Path
    config: object  # the run's saved config (the typed config.Config), or None
    metrics: dict
    history: pd.DataFrame
    task: object
    model: object
    checkpoint: str  # "best" or "last": which one `model` holds
    _seen: dict = field(default_factory=dict, repr=False)

    @property
    def status(self) -> str:
        """The record's status as the report counts it (RunDir.status: a killed run is
        `crashed`, not `running`)."""
        return runs.RunDir(self.run_dir).status(self.metrics)[0]

    def _run(self, sequence) -> dict:
        from rasp_hydra.draw import run_sequence

        key = sequence if isinstance(sequence, str) else tuple(sequence)
        if key not in self._seen:
            self._seen[key] = run_sequence(self.model, self.task, sequence)
        return self._seen[key]

    def predict(self, sequence) -> list:
        """The model's output for `sequence` (BOS is added for a _bos task): a string of
        the task's tokens ("abcab"), or for a vocabulary of numbers or words the tokens
        separated by spaces or commas ("10 2 33"), or a list ([10, 2, 33]).

        The outputs are values: a RASP program's as it computes them (ints, floats,
        bools, strings: what `prog.eval` gives), a hand-written task's class names. The
        correct ones are `self.correct(sequence)`.
        """
        return self._run(sequence)["output_values"]

    def correct(self, sequence) -> list:
        """The task's own output for `sequence`, as `predict` gives it."""
        return self._run(sequence)["correct_values"]

    def attention(self, sequence) -> dict[tuple[int, int], Head]:
        """Every head's attention on `sequence`, with the task's selector where it has one."""
        r = self._run(sequence)
        names = getattr(self.task, "selector_names", {})
        out = {}
        for layer, (probs, scores) in enumerate(zip(r["attention"], r["scores"], strict=True)):
            for head in range(probs.shape[0]):
                h = (layer, head)
                out[h] = Head(probs[head], scores[head], r["selectors"].get(h), names.get(h),
                              r["match"].get(h), r["uniform"].get(h))
        return out

    def draw(self, sequence, numbers: int | None = None, out_dir=None) -> dict:
        """Draw the heatmaps, as `python -m rasp_hydra.draw RUN --sequence ...` does."""
        from rasp_hydra.draw import draw_run

        return draw_run(self.run_dir, sequence, numbers=numbers, which=self.checkpoint,
                        out_dir=out_dir)


    def probe(self, sequences: int | None = None, sops=None, positions: int | None = None,
              write: bool = False) -> pd.DataFrame:
        """Linear probes of every s-op of the task's RASP program at every layer, beside
        the untrained model's (one row per s-op and layer; see `rasp_hydra.probe`).
        `write=True` also writes RUN/probes/probes.csv and probes.png, as
        `python -m rasp_hydra.probe RUN` does."""
        from rasp_hydra import probe

        res = probe.probe_run(
            self.run_dir, sequences or probe.DEFAULT_SEQUENCES, sops, which=self.checkpoint,
            write=write, positions=positions or probe.MAX_POSITIONS)
        return res["frame"]


def load_run(run_dir, which: str = "auto") -> Run:
    """Load a run directory (any state: completed, interrupted, still running).

    which: "best", "last" or "auto" (best if the run completed, else last).
    Raises FileNotFoundError for a directory without that checkpoint (saying which other
    one it has, or that a diverged run has no model) and runs.CheckpointError, naming the
    file, for one that cannot be read or belongs to another run (another task or shape);
    rasp_hydra.errors.BrokenFile, naming the file and what is wrong, for a metrics.json,
    history.csv or .hydra/config.yaml that cannot be read as one.
    """
    rd = runs.RunDir(run_dir)
    model, task, run_cfg, used = runs.load_model(rd, which)
    history = pd.DataFrame(rd.history())
    return Run(rd.path, run_cfg, rd.record(), history, task, model, used)
