"""Values and storages that cannot be what they say, on real processes: an empty program
alphabet (it used to train on the default tokens while the config recorded the empty
value) and an Optuna storage that is not a database or whose driver is missing (they used
to end in SQLAlchemy or import tracebacks). Each is one paragraph on stderr, exit code 2,
before anything runs: no run directory, no trial, the storage file untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.conftest import TINY, cli

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ["lang=rasp", "lang.program=reverse", "model.layers=1", *TINY]
SEARCH = ["-m", "+search=optuna_lr", "hydra/launcher=basic", "lang=hist_10_bos", *TINY,
          "train.num_threads=1", "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1"]


def one_paragraph(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "Traceback" not in err and "\n" not in err, err
    return err


@pytest.mark.parametrize("value", ["''", "[]", "true"])
def test_an_empty_program_alphabet_is_refused_before_anything_is_written(value, tmp_path):
    proc = cli(*PROGRAM, f"lang.alphabet={value}", f"hydra.run.dir={tmp_path / 'run'}",
               cwd=tmp_path)
    err = one_paragraph(proc)
    assert "lang.alphabet=" in err and "at least one token" in err
    assert "run directory:" not in proc.stdout
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


def test_a_number_alphabet_beside_a_size_is_compared_as_its_characters(tmp_path):
    err = one_paragraph(cli(*PROGRAM, "lang.alphabet=123", "lang.size=2",
                            f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path))
    assert "a size that matches (3)" in err and not (tmp_path / "run").exists()


def _storages(folder: Path) -> dict[str, str]:
    folder.mkdir()
    (folder / "random.db").write_bytes(os.urandom(4096))
    good = folder / "good.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{good}")
    (folder / "cut.db").write_bytes(good.read_bytes()[:3000])  # a database cut short
    (folder / "dir.db").mkdir()
    return {"random": "random.db", "cut": "cut.db", "directory": "dir.db"}


@pytest.mark.parametrize("kind, says", [
    ("random", "is not a SQLite database Optuna can read (file is not a database)"),
    ("cut", "is not a SQLite database Optuna can read"),
    ("directory", "is a directory, not a database file"),
])
def test_a_storage_that_is_not_a_database_stops_before_any_trial(kind, says, tmp_path):
    files = _storages(tmp_path / "st")
    db = tmp_path / "st" / files[kind]
    before = hashlib.sha256(db.read_bytes()).hexdigest() if db.is_file() else None
    sweep = tmp_path / "sweep"
    err = one_paragraph(cli(*SEARCH, f"hydra.sweeper.storage=sqlite:///{db}",
                            f"hydra.sweep.dir={sweep}", cwd=tmp_path))
    assert f"hydra.sweeper.storage=sqlite:///{db}: the Optuna study's storage cannot be " \
           "opened" in err and says in err and "No trial was run" in err
    assert not sweep.exists()  # no multirun.yaml, no job directory
    if before:
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before


BLOCK_AND_RUN = """
import runpy, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # `import name` now raises ImportError, as if not installed
sys.argv = ["rasp_hydra", *sys.argv[2:]]
runpy.run_module("rasp_hydra", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("url, blocked", [
    ("postgresql://someone@localhost/studies", "psycopg2"),
    ("mysql+pymysql://someone@localhost/studies", "pymysql"),
    ("nosuchdialect://somewhere/studies", "nothing"),
    ("not-a-url", "nothing"),
])
def test_a_storage_whose_driver_is_missing_or_url_unreadable_stops_before_any_trial(
        url, blocked, tmp_path):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(ROOT)}
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-c", BLOCK_AND_RUN, blocked, *SEARCH,
                           f"hydra.sweeper.storage={url}", f"hydra.sweep.dir={sweep}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    err = one_paragraph(proc)
    assert f"hydra.sweeper.storage={url}: the Optuna study's storage cannot be opened" in err
    assert ("not a database URL" if url == "not-a-url" else "driver") in err
    assert not sweep.exists() and not (tmp_path / "outputs").exists()
