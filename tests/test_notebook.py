"""The notebook runs: its code cells, in order, in one namespace (as a kernel would)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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


def test_the_notebooks_helper_shows_a_failed_commands_error_output(in_tmp):
    """A refused command raises with the command's own paragraph, not a bare exit status."""
    helper = next(c for c in json.loads(NOTEBOOK.read_text())["cells"]
                  if c["cell_type"] == "code")
    namespace: dict = {"__name__": "__main__"}
    exec(compile("".join(helper["source"]), "cell 0", "exec"), namespace)
    with pytest.raises(RuntimeError) as err:
        namespace["rasp_hydra"]("lang=hist_10_bos", "optimizer.lr=-1")
    assert str(err.value) == (
        "python -m rasp_hydra lang=hist_10_bos optimizer.lr=-1 failed (exit 2):\n"
        "error: optimizer.lr=-1.0: it must be a finite number above 0 (the paper uses 3e-4 "
        "and 1e-4).")
    assert not (in_tmp / "outputs").exists()  # refused before any work


@pytest.mark.slow
def test_the_notebook_runs_headless_on_a_kernel(tmp_path):
    """docs/notebook.md's `jupyter execute notebooks/tour.ipynb` ('.[notebook]'): a real
    kernel runs every cell; its files land beside the notebook."""
    pytest.importorskip("nbclient", reason="the notebook's runtime: pip install -e '.[notebook]'")
    pytest.importorskip("ipykernel", reason="the notebook's runtime: pip install -e '.[notebook]'")
    (tmp_path / "notebooks").mkdir()
    shutil.copy(NOTEBOOK, tmp_path / "notebooks")
    root = str(NOTEBOOK.parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "jupyter", "execute", "notebooks/tour.ipynb"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_dir = tmp_path / "notebooks" / "outputs" / "notebook" / "hist2"
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    assert len(list((tmp_path / "notebooks/outputs/notebook/sweep").glob("*/metrics.json"))) == 4
