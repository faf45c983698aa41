"""No leftovers and no unbounded asks, on real processes: `tasks peep` refuses a range it
cannot print (it used to grow past 6 GB on `--stop 100000000000`), a sweep job refused for
lack of space leaves nothing in its directory (it used to leave an empty run.lock and
train.log while saying nothing was written), the clean-up of a killed writer's temporary
files removes only the project's own (`.rasp_hydra-NAME.PID.tmp`), never a user's file
that happens to end in `.N.tmp`, and the drawer on a full disk leaves no temporary file,
no partial set of figures and no empty folder in maps/ (a real tiny tmpfs where this
machine lets the test mount one, else an injected ENOSPC)."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import TINY, cli, metrics
from tests.test_run_dir_guarantees import faulty

RUN = ["lang=hist_10_bos", "model.layers=1", *TINY]


def one_paragraph(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "Traceback" not in err and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("trained")
    cli(*RUN, f"hydra.run.dir={cwd / 'run'}", cwd=cwd, check=True)
    return cwd / "run"


# ------------------------------------------------------------------------- tasks peep

def _limited():  # a runaway allocation fails here instead of filling the machine
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("args, says", [
    (["--stop", "100000000000"], "asks for 100,000,000,000 samples: peep shows at most 1,000"),
    (["--start", "5", "--stop", "1006"], "asks for 1,001 samples"),
    (["--stop", "2", "--max-len", "100000000"], "1 <= --min-len <= --max-len <= 1,000"),
])
def test_peep_refuses_a_range_it_cannot_print(args, says, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rasp_hydra.tasks", "peep", "hist_10_bos",
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          preexec_fn=_limited)
    assert says in one_paragraph(proc)


def test_peep_shows_the_last_thousand_samples_of_a_far_range(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rasp_hydra.tasks", "peep", "hist_10_bos",
                           "--start", "99999999000", "--stop", "100000000000", "--max-len",
                           "5"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          preexec_fn=_limited)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n[") == 1000 and "[99999999999] length" in proc.stdout


# -------------------------------------------------------------- a sweep job, no space

def test_a_sweep_job_refused_for_lack_of_space_leaves_nothing_in_its_directory(tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli("-m", *RUN, "train.seed=0,1", "hydra.launcher.n_jobs=2",
               f"hydra.sweep.dir={sweep}", cwd=tmp_path,
               env=faulty(sweep / "1", full=True))  # job 1's directory: no space at all
    err = one_paragraph(proc, 1)
    assert "1 of 2 jobs" in err and "Traceback" not in proc.stdout
    assert f"job not run: {sweep / '1'} cannot be written" in proc.stdout
    assert "so nothing was written there" in proc.stdout
    assert not (sweep / "1").exists(), sorted(p.name for p in (sweep / "1").iterdir())
    assert metrics(sweep / "0")["status"] == "completed"  # the other job ran


# ---------------------------------------------------------------------- temporary files

def test_the_clean_up_removes_only_the_projects_own_temporary_files(trained, tmp_path):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    users = [run / ".notes.123.tmp", run / "checkpoints/.mine.7.tmp",
             run / "plots/.sketch.4.tmp.png", run / ".metrics.json.99999.tmp"]
    stale = [run / ".rasp_hydra-metrics.json.99999.tmp",
             run / "checkpoints/.rasp_hydra-last.pt.99999.tmp",
             run / "plots/.rasp_hydra-curves.png.99999.tmp"]
    for p in users + stale:
        p.write_bytes(b"kept" if p in users else b"half")
    cli("--resume", str(run), "train.epochs=3", cwd=tmp_path, check=True)
    assert [p.read_bytes() for p in users] == [b"kept"] * len(users)
    assert not any(p.exists() for p in stale)
    assert metrics(run)["epochs_run"] == 3


# ---------------------------------------------------------------- the drawer, disk full

@contextmanager
def tiny_disk(where: Path, size: str):
    """A tmpfs of `size` mounted at `where` (True), or nothing if this machine does not
    allow it (False)."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                  str(where)], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        mounted = False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], capture_output=True, timeout=30)


def test_the_drawer_on_a_full_disk_leaves_nothing_in_maps(trained, tmp_path):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    maps = run / "maps"
    # room for the first figure (about 34 kB) but not the second: a real full disk, or the
    # same from an injected ENOSPC at the second figure
    with tiny_disk(maps, "40k") as mounted:
        proc = cli("--sequence", "abcde", str(run), module="rasp_hydra.draw", cwd=tmp_path,
                   env=None if mounted else faulty(maps, "*scores*"))
        err = one_paragraph(proc)
        assert "the figures cannot be written to" in err and "--out DIR" in err
        left = sorted(str(p.relative_to(maps)) for p in maps.rglob("*"))
        assert left == [], left  # no .tmp, no attention_layer0.png, no empty abcde/
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    # with space, the same command draws every figure
    proc = cli("--sequence", "abcde", str(run), module="rasp_hydra.draw", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (maps / "abcde").iterdir()) == [
        "attention_layer0.png", "in_out.txt", "scores_layer0.png"]
