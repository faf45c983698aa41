"""A sweep's progress on the console: one numbering for a job (its number is its directory
name, `[job 3]`), one line per finished job that carries the sweep's count and the time left
(`[4/16] done job 3: completed, ...; about 0:12:30 left`), and one closing line.

The jobs run in other processes (joblib workers, submitit), so the count lives in a file
of the sweep directory, `.progress.PID` (PID: the sweep's own process), one line appended
per finished job; the sweep's start time and that file's path reach the jobs through the
environment, set when the sweep starts (`start_sweep`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

START_ENV = "RASP_HYDRA_SWEEP_START"  # the sweep's start (time.time())
PROGRESS_ENV = "RASP_HYDRA_PROGRESS_FILE"
KEPT = "kept"  # a job the relaunch found final and did not run again
RAN = "ran"


def start_sweep(sweep_dir: Path) -> None:
    """Note the sweep's start and where its jobs count themselves (in the sweep's process,
    before any job starts; workers inherit the environment)."""
    os.environ[START_ENV] = repr(time.time())
    os.environ[PROGRESS_ENV] = str(Path(sweep_dir).absolute() / f".progress.{os.getpid()}")


def end_sweep() -> float | None:
    """The sweep's wall seconds; its progress file goes."""
    path = os.environ.pop(PROGRESS_ENV, None)
    if path:
        Path(path).unlink(missing_ok=True)
    start = os.environ.pop(START_ENV, None)
    return time.time() - float(start) if start else None


def count_done(kind: str = RAN) -> tuple[int, int]:
    """Count one more finished job; (jobs done so far, of which kept). (0, 0) outside a sweep
    started by `start_sweep`."""
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return 0, 0
    try:
        # one short append is atomic on a local file system: parallel jobs never mix lines
        with open(path, "a", encoding="utf-8") as f:
            f.write(kind + "\n")
        lines = Path(path).read_text().split()
    except OSError:  # a count for a progress line, never a reason to fail
        return 0, 0
    return len(lines), lines.count(KEPT)


def clock(seconds: float) -> str:
    """0:04:09 for 249 seconds.

    >>> clock(249.4), clock(3 * 3600 + 61)
    ('0:04:09', '3:01:01')
    """
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def time_left(done: int, kept: int, total: int | None) -> str:
    """"about 0:01:10 left" from the pace of the jobs that ran so far; "" when unknown, or
    "none left" at the end.

    The pace is the sweep's wall time per job that ran (kept jobs cost nothing), so parallel
    workers are counted as they are.
    """
    if not total:
        return ""
    if done >= total:
        return "none left"
    start, ran = os.environ.get(START_ENV), done - kept
    if not start or ran <= 0:
        return ""
    elapsed = time.time() - float(start)
    return f"about {clock(elapsed / ran * (total - done))} left"


def job_tag(num: int) -> str:
    """The tag of every console line of job `num` (its directory's name): "[job 3] "."""
    return f"[job {num}] "


def done_line(num: int, total: int | None, outcome: str, trial: int | None = None,
              kind: str = RAN) -> str:
    """The line a finished job prints: "[4/16] done job 3: <outcome>; about 0:12:30 left"."""
    done, kept = count_done(kind)
    count = f"[{done}/{total}] " if done and total else (f"[{done}] " if done else "")
    who = f"job {num}" + (f" (trial {trial})" if trial is not None else "")
    left = time_left(done, kept, total) if done else ""
    return f"{count}done {who}: {outcome}" + (f"; {left}" if left else "")


def outcome(metrics: dict, search: bool = False) -> str:
    """How a job ended, for its done line: its status, the validation accuracy (what a search
    reports to its study), the test accuracy (not in a search: nothing there is chosen on
    it) and its seconds.

    >>> outcome({"status": "completed", "wall_seconds": 3.2,
    ...          "final": {"valid": {"token_acc": 0.98, "loss": 0.1},
    ...                    "test": {"token_acc": 0.97}}})
    'completed, valid acc 0.9800, test acc 0.9700, 3s'
    >>> outcome({"status": "completed", "final": {"valid": {"token_acc": 0.5, "loss": 1.0}}},
    ...         search=True)
    'completed, objective 0.5000 (valid acc), 0s'
    """
    from rasp_hydra.job import objective

    final = metrics.get("final") or {}
    parts = [str(metrics.get("status") or "no record")]
    if search:
        value = objective(metrics)
        parts.append(f"objective {value:.4f} (valid acc)" if value == value else
                     "objective NaN (a failed trial)")
    else:
        for split, name in (("valid", "valid acc"), ("test", "test acc")):
            acc = (final.get(split) or {}).get("token_acc")
            if isinstance(acc, (int, float)):
                parts.append(f"{name} {acc:.4f}")
    parts.append(f"{float(metrics.get('wall_seconds') or 0):.0f}s")
    return ", ".join(parts)


def report_command(sweep_dir: Path) -> str:
    """The command that makes the sweep's tables, to run next."""
    import shlex

    return f"python -m rasp_hydra.report {shlex.quote(str(sweep_dir))}"


def counts(statuses: list[str]) -> str:
    """"3 completed, 1 failed": each status once, in the order first seen.

    >>> counts(["completed", "failed", "completed"])
    '2 completed, 1 failed'
    """
    return ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))


def closing_line(sweep_dir: Path, statuses: list[str], seconds: float | None) -> str:
    """The last line of a sweep in which every job completed (or was skipped)."""
    took = f" in {clock(seconds)}" if seconds is not None else ""
    jobs = "job" if len(statuses) == 1 else "jobs"
    return (f"sweep done: {len(statuses)} {jobs} ({counts(statuses) or 'none'}){took}, "
            f"{sweep_dir}; next: {report_command(sweep_dir)}")
