"""The package as a user installs it: an sdist, a wheel built from it, and that wheel in a
fresh virtual environment outside the checkout, its console commands run from there.

The virtual environment sees the system's packages (torch, hydra, ...) but not the
checkout: no PYTHONPATH, a working directory elsewhere, and `rasp_hydra` imported from the
environment's own site-packages (checked), so a config or plugin that the build leaves out
fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("rasp_hydra", "hydra_plugins", "conf", "pyproject.toml", "setup.py", "README.md")
COMMANDS = ("rasp-hydra", "rasp-hydra-report", "rasp-hydra-draw", "rasp-hydra-probe",
            "rasp-hydra-tasks", "rasp-hydra-export", "rasp")


def run(argv: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env={**env, "PYTHONUNBUFFERED": "1"},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """An sdist of a copy of the checkout, a wheel built from the sdist, and a virtual
    environment with that wheel installed: their paths."""
    top = tmp_path_factory.mktemp("package")
    src = top / "src"  # a copy: the build's egg-info and build/ stay out of the checkout
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                         if (ROOT / name).is_dir() else {}))
    dist = top / "dist"
    run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
         "b.build_sdist(sys.argv[1])", dist], cwd=src)
    (sdist,) = dist.glob("*.tar.gz")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", dist, sdist], cwd=top)
    (wheel,) = dist.glob("*.whl")
    venv = top / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], cwd=top)
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
         "--no-deps", "-q", wheel], cwd=top)
    work = top / "work"
    work.mkdir()
    return {"sdist": sdist, "wheel": wheel, "bin": venv / "bin", "work": work}


def test_sdist_and_wheel_carry_configs_plugins_and_programs(installed):
    conf = sorted(p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml"))
    with tarfile.open(installed["sdist"]) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"conf/{c}" for c in conf} <= in_sdist
    with zipfile.ZipFile(installed["wheel"]) as whl:
        in_wheel = set(whl.namelist())
        entry_points = whl.read(next(n for n in in_wheel if n.endswith("entry_points.txt")))
    assert {f"rasp_hydra/conf/{c}" for c in conf} <= in_wheel
    assert "hydra_plugins/rasp_hydra_launcher/joblib_job_process.py" in in_wheel
    assert "hydra_plugins/rasp_hydra_optuna/optuna_search.py" in in_wheel
    assert "rasp_hydra/rasp/programs/reverse.rasp" in in_wheel
    for command in COMMANDS:
        assert f"\n{command} = ".encode() in entry_points


def test_installed_commands_start_outside_the_checkout(installed):
    bin_, work = installed["bin"], installed["work"]
    where = run([bin_ / "python", "-c", "import rasp_hydra.cli.entry as e; print(e.__file__); "
                 "print(e.config_dir())"], cwd=work).stdout.split()
    assert all(Path(p).is_relative_to(bin_.parent) for p in where), where
    assert "--resume" in run([bin_ / "rasp-hydra", "--help"], cwd=work).stdout
    job = run([bin_ / "rasp-hydra", "--cfg", "job", "+experiment=quick", "+debug=tiny"],
              cwd=work).stdout
    assert "family: sort" in job and "d_model: 16" in job  # a preset and debug from the wheel
    tasks = run([bin_ / "rasp-hydra-tasks", "list"], cwd=work).stdout
    assert "reverse_10" in tasks and "dyck2_ptf" in tasks
    budget = run([bin_ / "rasp", where[0].replace("cli/entry.py", "rasp/programs/reverse.rasp"),
                  "--budget", "reverse"], cwd=work).stdout
    assert budget.startswith("reverse: 2 layers")
    for command in ("rasp-hydra-report", "rasp-hydra-draw", "rasp-hydra-probe"):
        assert "usage:" in run([bin_ / command, "--help"], cwd=work).stdout
    assert not list(work.iterdir())  # nothing of these commands wrote anything


@pytest.mark.slow
def test_installed_commands_train_sweep_report_and_draw(installed):
    bin_, work = installed["bin"], installed["work"]
    one = run([bin_ / "rasp-hydra", "lang=hist_10_bos", *TINY, "hydra.run.dir=run"], cwd=work)
    assert "test" in one.stdout + one.stderr
    assert '"status": "completed"' in (work / "run" / "metrics.json").read_text()
    run([bin_ / "rasp-hydra", "-m", "lang=hist_10_bos", *TINY, "train.seed=0,1",
         "hydra.sweep.dir=sweep"], cwd=work)
    for job in ("0", "1"):
        assert '"status": "completed"' in (work / "sweep" / job / "metrics.json").read_text()
    report = run([bin_ / "rasp-hydra-report", "sweep"], cwd=work).stdout
    assert "hist_10_bos" in report
    drawn = run([bin_ / "rasp-hydra-draw", "run", "--sequence", "abca"], cwd=work).stdout
    assert "figures:" in drawn
    assert list((work / "run" / "maps").rglob("*.png"))
