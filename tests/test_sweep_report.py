"""Sweeps that report themselves: one numbering (`[job N]` is directory N), a progress line
per finished job (`[k/N] done job N: ...; about H:MM:SS left`), one closing line, and a
relaunch that decides from each job's record in the sweep's own process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import TINY, cli, metrics

# 4 jobs that complete at the tiny size
FOUR = ["-m", "lang=sort_10", *TINY, "train.num_threads=1", "train.seed=0,1",
        "optimizer.lr=1e-3,3e-3", "hydra.launcher.n_jobs=2"]
# job 0 fails (hist's BOS makes 7 tokens, more than model.max_len), job 1 completes
ONE_FAILS = ["-m", "lang=hist_10_bos,sort_10", "model.max_len=6", *TINY,
             "train.num_threads=1", "hydra.launcher.n_jobs=2"]


def snapshot(sweep: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under the sweep's job directories: its mtime and bytes."""
    return {str(p.relative_to(sweep)): (p.stat().st_mtime_ns, p.read_bytes())
            for d in sweep.iterdir() if d.name.isdigit()
            for p in sorted(d.rglob("*")) if p.is_file()}


def closing(out: str) -> str:
    return out.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, str]:
    cwd = tmp_path_factory.mktemp("finished")
    sweep = cwd / "sweep"
    proc = cli(*FOUR, f"hydra.sweep.dir={sweep}", cwd=cwd, check=True)
    return cwd, sweep, proc.stdout + proc.stderr


def test_a_finished_sweep_says_so_with_its_counts_time_dir_and_report_command(finished):
    cwd, sweep, out = finished
    line = closing(out)
    assert re.fullmatch(
        rf".*sweep done: 4 jobs \(4 completed\) in 0:\d\d:\d\d, {re.escape(str(sweep))}; "
        rf"next: python -m rasp_hydra\.report {re.escape(str(sweep))}", line), line
    # the job's tag, its number and its directory are one number
    for n in range(4):
        assert f"[job {n}] start lang=sort_10" in out
        assert re.search(rf"\[job {n}\] epoch +1/2 ", out)
        (done,) = re.findall(rf"\[\d/4\] done job {n}: [^\n]*", out)
        m = metrics(sweep / str(n))
        assert f"completed, valid acc {m['final']['valid']['token_acc']:.4f}, " \
               f"test acc {m['final']['test']['token_acc']:.4f}" in done
    # the count runs 1..4 in the order the jobs finish; every line but the last says the
    # time left, the last that none is
    counts = re.findall(r"\[(\d)/4\] done job \d: [^\n]*?; (about \d:\d\d:\d\d left|none left)",
                        out)
    assert [c for c, _ in counts] == ["1", "2", "3", "4"]
    assert [left for _, left in counts][-1] == "none left"
    assert all(left.startswith("about ") for _, left in counts[:-1])
    # the report command it names runs as it is
    cmd = line.split("next: ")[1].split()
    assert cli(*cmd[3:], "--out", str(cwd / "report"), cwd=cwd,
               module="rasp_hydra.report").returncode == 0


def test_relaunching_a_finished_sweep_starts_no_job_and_changes_no_byte(finished):
    cwd, sweep, _ = finished
    before = snapshot(sweep)
    proc = cli(*FOUR, f"hydra.sweep.dir={sweep}", cwd=cwd)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert snapshot(sweep) == before  # no history line, no invocations/NNN/, no re-evaluation
    assert " start " not in out and "Joblib.Parallel" not in out  # no job reached a worker
    assert re.findall(r"\[(\d)/4\] done job (\d): completed, .*\(kept: its record is final",
                      out) == [("1", "0"), ("2", "1"), ("3", "2"), ("4", "3")]
    assert "sweep done: 4 jobs (4 completed) in " in closing(out)


def test_a_relaunch_with_other_overrides_is_refused_with_the_differences(finished):
    cwd, sweep, _ = finished
    multirun = (sweep / "multirun.yaml").read_bytes()
    before = snapshot(sweep)
    other = [a.replace("optimizer.lr=1e-3,3e-3", "optimizer.lr=1e-2") for a in FOUR]
    proc = cli(*other, f"hydra.sweep.dir={sweep}", cwd=cwd)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "not given now: optimizer.lr=1e-3,3e-3; new: optimizer.lr=1e-2" in err
    assert (sweep / "multirun.yaml").read_bytes() == multirun and snapshot(sweep) == before
    # hydra.* settings may differ: a relaunch on one worker is the same sweep
    same = [a.replace("hydra.launcher.n_jobs=2", "hydra.launcher.n_jobs=1") for a in FOUR]
    assert cli(*same, f"hydra.sweep.dir={sweep}", cwd=cwd).returncode == 0
    assert snapshot(sweep) == before


def test_a_sweep_with_a_failed_job_ends_with_its_counts_and_a_relaunch_reruns_only_it(
        cli_cwd):
    sweep = cli_cwd / "sweep"
    proc = cli(*ONE_FAILS, f"hydra.sweep.dir={sweep}", cwd=cli_cwd)
    assert proc.returncode == 1, proc.stderr
    line = closing(proc.stderr)
    assert re.fullmatch(
        rf"error: 1 of 2 jobs of {re.escape(str(sweep))} did not complete \(1 failed\) "
        r"in 0:\d\d:\d\d, the others ended 1 completed; each one's metrics.json and "
        r"train.log say why\. "
        rf"Run the same command with hydra\.sweep\.dir={re.escape(str(sweep))} to finish them "
        r"\(completed jobs are kept\); next: python -m rasp_hydra\.report "
        rf"{re.escape(str(sweep))}", line), line
    out = proc.stdout + proc.stderr
    assert re.search(r"\[\d/2\] done job 0: failed, ", out)
    assert re.search(r"\[\d/2\] done job 1: completed, valid acc ", out)

    kept = snapshot(sweep)
    kept = {k: v for k, v in kept.items() if k.startswith("1/")}
    failed_history = (sweep / "0" / "invocations.jsonl").read_text().splitlines()
    proc = cli(*ONE_FAILS, f"hydra.sweep.dir={sweep}", cwd=cli_cwd)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "[job 0] start " in out and "[job 1] start" not in out
    assert {k: v for k, v in snapshot(sweep).items() if k.startswith("1/")} == kept
    assert len((sweep / "0" / "invocations.jsonl").read_text().splitlines()) > len(
        failed_history)  # the failed job ran again, as before
