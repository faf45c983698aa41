"""Every shell command shown in README.md and docs/*.md, run at tiny sizes.

The commands are read from the pages themselves (each ```bash block, continuation lines
joined, comments dropped), so a page cannot drift from the code: a renamed flag, a moved
file or a removed option fails here. A page is walked as a reader would, command after
command in one working directory; the run and sweep directories a page names by example
(`outputs/runs/DATE/TIME`, `outputs/multirun/DATE/TIME`, `RUN`) stand for the newest ones
the page's earlier commands made, or its setup below made. Training commands get the
`+debug=tiny` preset last, so they run in seconds. A command that cannot run here (an
install, a server, a cluster, a GPU, a benchmark that takes minutes) is listed in
NOT_RUN with its reason; any other command must run and exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]

# Commands that are not run, by their first words, and why.
NOT_RUN = {
    "pip install": "an install: CI's own set-up runs the README's",
    "python -m pytest": "the test suite itself",
    "ruff check": "CI runs it beside the tests",
    "lint-imports": "CI runs it beside the tests",
    "tensorboard --logdir": "a server that runs until stopped",
    "mlflow ui": "a server that runs until stopped",
    "jupyter execute": "needs the '.[notebook]' kernel; a slow test in test_notebook.py runs it",
    "python benchmarks/": "a benchmark: minutes of timing, it prints figures and asserts none",
    "bash benchmarks/gpu_check.sh": "the GPU check (its --smoke form runs in test_gpu_check.py)",
    "bash benchmarks/gpu_table1.sh": "the GPU row (its --smoke form runs in its own test)",
}
NOT_RUN_ARGS = {
    "hydra/launcher=submitit_slurm": "needs a SLURM cluster",
}

# A page that uses a run it does not train itself starts from these (tiny) commands.
SETUP = {
    "docs/heatmaps.md": ["python -m rasp_hydra -m lang=reverse_26 arch=predicted,fewer_layers"],
    "docs/probes.md": ["python -m rasp_hydra -m lang=sort_26_bos arch=predicted,fewer_layers",
                       "python -m rasp_hydra lang=rasp lang.program=docs/results/mirror/mirror.rasp"
                       " lang.size=2"],
    "docs/report.md": ["python -m rasp_hydra -m lang=reverse_26 arch=predicted,fewer_layers"],
    "docs/run-directory.md": ["python -m rasp_hydra lang=reverse_26"],
    "docs/programs.md": [],
}
# Sweeps bigger than this many jobs run only with `-m slow`, and so do the pages outside
# DEFAULT_PAGES (each is a minute or more of tiny runs; CI's default suite stays short).
FAST_JOBS = 6
DEFAULT_PAGES = {"README.md", "docs/configuration.md", "docs/compiled.md", "docs/programs.md"}
TINY = ["+debug=tiny", "lang.long_test_size=50"]
SHRINK = {r"hydra\.sweeper\.n_trials=\d+": "hydra.sweeper.n_trials=2"}
# Presets whose sweeps are large: (preset, jobs it adds as a factor).
PRESET_JOBS = {"+experiment=table1": 28 * 4, "+experiment=table1_quick": 32,
               "+seeds=three": 3, "+seeds=five": 5, "+search=optuna_lr": 8}


def page_commands(page: str) -> list[str]:
    """The commands of a page's ```bash blocks, in order, continuations joined."""
    text = (ROOT / page).read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def not_run_reason(command: str) -> str | None:
    for prefix, reason in NOT_RUN.items():
        if command.startswith(prefix):
            return reason
    for arg, reason in NOT_RUN_ARGS.items():
        if arg in shlex.split(command):
            return reason
    return None


def is_training(words: list[str]) -> bool:
    words = [w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)]
    return words[:3] == ["python", "-m", "rasp_hydra"] and "--resume" not in words \
        and "--help" not in words and "--cfg" not in words


def sweep_jobs(words: list[str]) -> int:
    """Jobs a sweep command runs (an estimate from its comma lists and presets)."""
    jobs = 1
    for word in words:
        if word in PRESET_JOBS:
            jobs *= PRESET_JOBS[word]
        elif "=" in word and not word.startswith("hydra."):
            jobs *= len(word.split("=", 1)[1].split(","))
    return jobs


def newest(cwd: Path, kind: str) -> Path:
    """The newest run (`runs`) or sweep (`multirun`) directory under cwd/outputs."""
    found = sorted((p for p in (cwd / "outputs" / kind).glob("*/*") if p.is_dir()),
                   key=lambda p: p.stat().st_mtime)
    assert found, f"the page names an outputs/{kind}/ directory before any exists"
    return found[-1]


def newest_run(cwd: Path) -> Path:
    runs = [p.parent for p in (cwd / "outputs").rglob("metrics.json")]
    assert runs, "the page names a run before any exists"
    return max(runs, key=lambda p: p.stat().st_mtime)


def concrete(command: str, cwd: Path) -> list[str]:
    """The command as the test runs it: placeholders filled, training made tiny."""
    words = shlex.split(command)
    prefix = []
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        prefix.append(words.pop(0))
    out = []
    for word in words:
        if re.fullmatch(r"outputs/runs/[\d-]+/[\d-]+", word) or word in ("RUN", "RUN_DIR"):
            word = str(newest(cwd, "runs") if (cwd / "outputs" / "runs").is_dir()
                       else newest_run(cwd))
        elif re.fullmatch(r"outputs/multirun/[\d-]+/[\d-]+", word):
            word = str(newest(cwd, "multirun"))
        for pattern, replacement in SHRINK.items():
            word = re.sub(pattern, replacement, word)
        out.append(word)
    if is_training(out):
        out += TINY
    if out[:1] == ["python"]:
        out[0] = sys.executable
    return prefix + out


def run(words: list[str], cwd: Path) -> None:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1",
           "MPLBACKEND": "Agg"}
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value command
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    proc = subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, (f"exit {proc.returncode}: {shlex.join(words)}\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def page_cost(page: str) -> int:
    return max([sweep_jobs(shlex.split(c)) for c in page_commands(page)
                if not not_run_reason(c) and is_training(shlex.split(c))] or [0])


def test_every_page_has_commands_that_parse():
    assert any(page_commands(p) for p in PAGES)
    for page in PAGES:
        for command in page_commands(page):
            words = [w for w in shlex.split(command) if not re.fullmatch(r"[A-Z_]+=\S*", w)]
            assert words[0] in ("python", "bash", "pip", "ruff", "lint-imports",
                                "tensorboard", "mlflow", "jupyter", "rasp-hydra", "rasp") \
                or words[0].startswith("rasp-hydra-"), f"{page}: {command}"


@pytest.mark.parametrize("page", [
    pytest.param(p, marks=[pytest.mark.slow] if page_cost(p) > FAST_JOBS or p not in DEFAULT_PAGES
                 else [])
    for p in PAGES if any(not not_run_reason(c) for c in page_commands(p))])
def test_page_commands_run(page, tmp_path):
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    for command in SETUP.get(page, []):
        run(concrete(command, tmp_path), tmp_path)
    for command in page_commands(page):
        if not_run_reason(command):
            continue
        run(concrete(command, tmp_path), tmp_path)
