"""Start-up times of the command line, as whole processes (medians of --repeats runs):

- ``python -m rasp_hydra --help`` (target < 1.5 s);
- ``python -m rasp_hydra.tasks list`` and ``python -m rasp_hydra.rasp FILE --budget NAME``,
  neither of which needs torch (target < 1 s each);
- a refused config, ``python -m rasp_hydra optimizer.lr=-1`` (exit 2; target < 2 s);
- a sweep job's first batch: the seconds from the job's ``[job N] start`` line to the
  trainer's ``start TASK: ...`` line, printed right before the first batch, in a 2-job
  sweep at the quick size (``+experiment=quick``; target < 3 s), and (no target) from the
  sweep's launch to that batch. The sweep is stopped once both jobs have started training.

Run from anywhere: ``python benchmarks/startup.py [--repo CHECKOUT] [--repeats 5]``. Each
command runs in a fresh temporary directory with PYTHONPATH set to the checkout, so
``--repo`` measures another checkout of the project (e.g. an older commit) the same way.
Times are wall clock: a busy machine inflates them; say how busy it was.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
# A job's lines: "[job 3] start ..." (its start, then the trainer's "start TASK: ...
# layers"); "[2/4] start ..." in checkouts before the sweep numbered its jobs one way.
START = re.compile(r"(\[job \d+\]|\[\d+/\d+\]) start ")


def env_for(repo: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(repo), PYTHONUNBUFFERED="1")
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def timed(argv: list[str], repo: Path, expect: int) -> float:
    """Seconds one whole process takes; its exit code must be `expect`."""
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env_for(repo), capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if proc.returncode != expect:
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}, not {expect}:\n{proc.stderr}")
    return seconds


def first_batches(repo: Path, timeout: float = 300.0) -> tuple[list[float], list[float]]:
    """Per job of a 2-job quick sweep: seconds from its start line to its first batch, and
    from the sweep's launch to its first batch."""
    with tempfile.TemporaryDirectory() as cwd:
        argv = [sys.executable, "-m", "rasp_hydra", "-m", "+experiment=quick",
                "train.seed=0,1", "train.progress=false", f"hydra.sweep.dir={cwd}/sweep"]
        proc = subprocess.Popen(argv, cwd=cwd, env=env_for(repo), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        started: dict[str, float] = {}
        gaps: list[float] = []
        launch, since_launch = time.perf_counter(), []
        deadline = time.perf_counter() + timeout
        try:
            for line in proc.stdout:
                now = time.perf_counter()
                start = START.search(line)
                if start:
                    tag = start.group(1)
                    if tag not in started:
                        started[tag] = now
                    elif "layers" in line:  # the trainer's own start
                        gaps.append(now - started[tag])
                        since_launch.append(now - launch)
                if len(gaps) == 2 or now > deadline:
                    break
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if len(gaps) != 2:
        sys.exit("the sweep's jobs did not both reach their first batch")
    return gaps, since_launch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=HERE, help="the checkout to measure")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweeps", type=int, default=2, help="quick sweeps to start")
    args = parser.parse_args()
    repo = args.repo.resolve()
    program = str(repo / "rasp_hydra" / "rasp" / "programs" / "reverse.rasp")
    py = sys.executable
    commands = [
        ("--help", [py, "-m", "rasp_hydra", "--help"], 0, 1.5),
        ("tasks list", [py, "-m", "rasp_hydra.tasks", "list"], 0, 1.0),
        ("rasp --budget", [py, "-m", "rasp_hydra.rasp", program, "--budget", "reverse"], 0, 1.0),
        ("refused config", [py, "-m", "rasp_hydra", "optimizer.lr=-1"], 2, 2.0),
    ]
    print(f"checkout {repo}, {os.cpu_count()} cores, load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    for name, argv, expect, target in commands:
        times = [timed(argv, repo, expect) for _ in range(args.repeats)]
        print(f"{name:>16}: median {statistics.median(times):5.2f} s  (target < {target} s; "
              f"min {min(times):.2f}, max {max(times):.2f}, {len(times)} runs)")
    sweeps = [first_batches(repo) for _ in range(args.sweeps)]
    gaps = [g for s in sweeps for g in s[0]]
    print(f"{'first batch':>16}: median {statistics.median(gaps):5.2f} s  (target < 3.0 s; "
          f"min {min(gaps):.2f}, max {max(gaps):.2f}, {len(gaps)} jobs)")
    whole = [g for s in sweeps for g in s[1]]
    print(f"{'(from launch)':>16}: median {statistics.median(whole):5.2f} s  (no target: the "
          f"sweep's start to a job's first batch; min {min(whole):.2f}, max {max(whole):.2f})")
    print("load average after " + " ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
