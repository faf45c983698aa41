"""The notebook runs: its code cells, in order, in one namespace (as a kernel would)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "tour.ipynb"


@pytest.fixture
def in_tmp(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


def test_the_tour_notebook_runs(in_tmp, one_thread):
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict = {"__name__": "__main__"}
    for i, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
        source = "".join(cell["source"])
        try:
            exec(compile(source, f"cell {i}", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"code cell {i} failed:\n{source}") from err
    run, sweep = namespace["run"], namespace["sweep"]
    assert run.status == "completed" and len(run.history) == 3
    assert len(run.predict("abcab")) == 6  # BOS + 5
    heads = namespace["heads"]
    assert set(heads) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert heads[(1, 0)].selector is not None and heads[(1, 1)].selector is None
    assert abs(heads[(0, 0)].attention.sum(-1) - 1).max() < 1e-5  # rows are distributions
    assert len(sweep) == 4 and set(sweep.status) == {"completed", "skipped"}
    table = namespace["table"]
    assert table.loc["reverse_10", "predicted"] == sweep.query(
        "task == 'reverse_10' and arch == 'predicted'").test_acc.max()
    assert (in_tmp / "outputs/notebook/hist2/maps/abcab/in_out.txt").is_file()
