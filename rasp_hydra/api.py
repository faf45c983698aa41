"""The notebook API: a run directory or a sweep as Python objects, in one place.

    from rasp_hydra.api import load_run, load_sweep

    run = load_run("outputs/runs/2026-11-28/10-00-00-123456")
    run.metrics["final"]["test"]["token_acc"]   # metrics.json as a dict
    run.history                                 # history.csv as a DataFrame, one row per epoch
    run.predict("abcab")                        # the model's output tokens
    heads = run.attention("abcab")              # {(layer, head): Head(attention, selector, ...)}
    run.draw("abcab")                           # the drawer's figures, under RUN/maps/abcab/

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


@dataclass
class Run:
    """A run directory, loaded: config, record, history, task and model."""

    run_dir: Path
    config: object  # the run's composed config (OmegaConf DictConfig), or None
    metrics: dict
    history: pd.DataFrame
    task: object
    model: object
    checkpoint: str  # "best" or "last": which one `model` holds
    _seen: dict = field(default_factory=dict, repr=False)

    @property
    def status(self) -> str:
        """The record's status as the report counts it (runs.run_status: a killed run is
        `crashed`, not `running`)."""
        return runs.run_status(self.run_dir, self.metrics)[0]

    def _run(self, sequence: str) -> dict:
        from rasp_hydra.draw import run_sequence

        if sequence not in self._seen:
            self._seen[sequence] = run_sequence(self.model, self.task, sequence)
        return self._seen[sequence]

    def predict(self, sequence: str) -> list[str]:
        """The model's output tokens for `sequence` (BOS is added for a _bos task).

        The correct ones are `self.task.decode_outputs(...)`, or `self.correct(sequence)`.
        """
        return self._run(sequence)["output"]

    def correct(self, sequence: str) -> list[str]:
        """The task's own output for `sequence`."""
        return self._run(sequence)["correct"]

    def attention(self, sequence: str) -> dict[tuple[int, int], Head]:
        """Every head's attention on `sequence`, with the task's selector where it has one."""
        r = self._run(sequence)
        names = getattr(self.task, "selector_names", {})
        out = {}
        for layer, (probs, scores) in enumerate(zip(r["attention"], r["scores"], strict=True)):
            for head in range(probs.shape[0]):
                h = (layer, head)
                out[h] = Head(probs[head], scores[head], r["selectors"].get(h), names.get(h),
                              r["match"].get(h))
        return out

    def draw(self, sequence: str, numbers: int | None = None, out_dir=None) -> dict:
        """Draw the heatmaps, as `python -m rasp_hydra.draw RUN --sequence ...` does."""
        from rasp_hydra.draw import draw_run

        return draw_run(self.run_dir, sequence, numbers=numbers, which=self.checkpoint,
                        out_dir=out_dir)


def load_run(run_dir, which: str = "auto") -> Run:
    """Load a run directory (any state: completed, interrupted, still running).

    which: "best", "last" or "auto" (best if the run completed, else last).
    Raises FileNotFoundError for a directory without that checkpoint (saying which other
    one it has, or that a diverged run has no model) and runs.CheckpointError, naming the
    file, for one that cannot be read or belongs to another run (another task or shape).
    """
    run_dir = Path(run_dir)
    model, task, run_cfg, used = runs.load_model(run_dir, which)
    history = pd.DataFrame(runs.read_history(run_dir))
    return Run(run_dir, run_cfg, runs.read_metrics(run_dir), history, task, model, used)
