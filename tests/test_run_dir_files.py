"""A run directory's broken files and its lock, on real processes (docs/run-directory.md):
a refused invocation removes no file it did not create; every reader names a broken file
and carries on (the report, load_sweep) or refuses with one paragraph (load_run, the
drawer, the probes, --resume); ownership survives a deleted or replaced run.lock."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY, cli

RUN = ["lang=hist_10_bos", "model.layers=1", *TINY]


def snapshot(run_dir: Path) -> dict:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def one_paragraph(proc, code: int = 2) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("completed")
    cli(*RUN, f"hydra.run.dir={cwd / 'run'}", cwd=cwd, check=True)
    return cwd / "run"


def copy_of(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


# ------------------------------------------------ a refusal removes only what it created

@pytest.mark.parametrize("damage", ["garbled", "cut short"])
def test_a_refused_resume_keeps_run_lock_and_every_file(completed_run, tmp_path, damage):
    run = copy_of(completed_run, tmp_path / "run")
    config = run / ".hydra/config.yaml"
    text = config.read_text()
    lines = text.splitlines(keepends=True)
    middle = lines[len(lines) // 2]  # cut inside a key: YAML that does not parse
    cut = "".join(lines[: len(lines) // 2]) + middle[: len(middle) - len(middle.lstrip()) + 3]
    config.write_text("lang: [unclosed\n  : ][" if damage == "garbled" else cut)
    before = snapshot(run)
    assert "run.lock" in before
    one_paragraph(cli("--resume", str(run), cwd=tmp_path))
    assert snapshot(run) == before  # run.lock, train.log and the rest: not a byte changed
