"""Settings that cannot take effect are refused before any work, on real processes: each case
is one paragraph on stderr, exit code 2 (3 for a sweep whose jobs are held by another), no
traceback, and nothing written: no run directory, no empty outputs/runs/DATE/, no
multirun.yaml. Also: memory that cannot fit, run directories that cannot be created, RASP
programs that fail on some inputs or are not text, and report/drawer destinations that
cannot be written (a read-only bind mount where this machine allows one, else an injected
OSError(EROFS))."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest

from rasp_hydra import job, runs
from rasp_hydra.cli.store import to_config
from tests.conftest import TINY, cli, metrics
from tests.test_cli import compose_cfg, sweep_job_configs

RUN = ["lang=hist_10_bos", "model.layers=1", *TINY]


def refused(proc: subprocess.CompletedProcess, cwd: Path, code: int = 2) -> str:
    """The one-paragraph error of a refused invocation that wrote nothing under cwd."""
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "Traceback" not in err and "\n" not in err, err
    assert "run directory:" not in proc.stdout  # never announced
    assert not (cwd / "outputs").exists(), list((cwd / "outputs").rglob("*"))
    return err


# ---------------------------------------------------------------- settings that would be ignored

@pytest.mark.parametrize("override, says", [
    ("train.seed=-1", "train.seed=-1: a seed is a whole number from 0 to 4294967295"),
    ("lang.data_seed=-1", "lang.data_seed=-1: a seed"),
    ("train.seed=99999999999999999999", "train.seed=99999999999999999999: a seed"),
    ("lang.alphabet=a", "lang.alphabet='a': the task family 'hist' does not use this field"),
    ("lang.sampler=nosuch", "lang.sampler='nosuch': the task family 'hist' does not use"),
    ("lang.long_max_len=40", "long_min_len and long_max_len only with long_test_size > 0"),
])
def test_a_setting_that_cannot_take_effect_is_refused_before_any_directory(
        override, says, tmp_path):
    err = refused(cli(*RUN, override, cwd=tmp_path), tmp_path)
    assert says in err


def test_the_fields_a_family_uses_are_named():
    cfg = to_config(compose_cfg("lang=sort_10", "lang.program=reverse",
                                    "lang.classes=[a,b]"))
    with pytest.raises(job.ConfigError) as err:
        job.check_job(cfg)
    text = str(err.value)
    assert "lang.program='reverse', lang.classes=['a', 'b']" in text
    assert "reads lang.family, size, bos" in text and "RASP program tasks (lang=rasp)" in text
    # a program task takes its tokens from lang.alphabet: a size beside it must agree
    with pytest.raises(job.ConfigError, match="lang.size=26 and lang.alphabet='xyz'"):
        job.check_job(to_config(compose_cfg("lang=rasp/quick/reverse_26",
                                                "lang.alphabet=xyz")))
    job.check_job(to_config(compose_cfg("lang=rasp/quick/reverse_26", "lang.size=3",
                                            "lang.alphabet=xyz")))
    # the largest seed both generators take still passes
    job.check_job(to_config(compose_cfg("lang=sort_10", "train.seed=4294967295",
                                            "lang.data_seed=4294967295")))


@pytest.mark.parametrize("preset", ["quick", "table1_quick_rasp"])
def test_every_preset_still_passes_every_check(preset):
    configs = sweep_job_configs(preset, only=("lang",)) if preset != "quick" else [
        compose_cfg("+experiment=quick")]
    for cfg in configs:  # the fields check, the program's trial inputs and the memory check
        job.check_job(to_config(cfg))


# --------------------------------------------------------------------------------- memory

@pytest.mark.parametrize("override, says", [
    ("lang.train_size=1000000000", "for 1,000,000,100 sequences of up to 7 tokens"),
    ("lang.max_len=100000", "of up to 100,001 tokens"),
])
def test_a_config_that_cannot_fit_in_memory_is_refused_with_the_figures(
        override, says, tmp_path):
    err = refused(cli(*RUN, override, cwd=tmp_path, timeout=60), tmp_path)
    assert "This config needs about" in err and says in err
    assert "available (MemAvailable)" in err and "train.check_memory=false" in err


def test_the_estimate_lets_real_configs_through_and_the_check_can_be_turned_off():
    from rasp_hydra import config, memory

    cfg = to_config(compose_cfg("lang=sort_by_freq_100_bos", "model=paper"))
    task, budget = job.check_job(cfg)
    est = memory.estimate(cfg.lang, budget, cfg.train, vocab_size=task.vocab_size,
                          n_out=task.n_out, longest=101, max_len=101,
                          learned_positions=False, optimizer="adam", momentum=0.0)
    assert 50_000 * 101 * 16 < est.total < 2 * memory.GiB  # the paper's size is small
    huge = to_config(compose_cfg("lang=hist_10", "lang.max_len=100000",
                                     "train.check_memory=false"))
    job.check_job(huge)  # no refusal: the user knows better
    assert "train.check_memory" in config.RESUME_SAFE_KEYS


# ------------------------------------------------------------------------ run directories

@pytest.mark.parametrize("where, says", [
    ("/proc/rasp_hydra_run", "no directory can be created in /proc"),
    ("long/" + "x" * 300 + "/run", "is 300 bytes long"),
])
def test_a_run_directory_that_cannot_be_created_is_refused(where, says, tmp_path):
    err = refused(cli(*RUN, f"hydra.run.dir={where}", cwd=tmp_path), tmp_path)
    assert "cannot be created" in err and says in err
    assert not (tmp_path / "long").exists()


def test_a_sweep_without_workers_is_refused_before_multirun_yaml(tmp_path):
    sweep = tmp_path / "sweep"
    err = refused(cli("-m", *RUN, "train.seed=0,1", "hydra.launcher.n_jobs=0",
                      f"hydra.sweep.dir={sweep}", cwd=tmp_path), tmp_path)
    assert "hydra.launcher.n_jobs=0" in err and "-1 for one job per core" in err
    assert not sweep.exists()


def test_a_sweep_relaunched_into_a_running_one_exits_3_and_says_which_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    with runs.RunDir(sweep / "0").lock():  # job 0 is held, as by the running sweep's worker
        proc = cli("-m", "train.seed=0,1", *RUN, f"hydra.sweep.dir={sweep}",
                   "hydra.launcher.n_jobs=1", cwd=tmp_path)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("error: 1 job of this sweep did not run") and str(sweep / "0") in err
    assert "the same command runs what is left" in err
    assert not (sweep / "0" / ".hydra").exists()  # untouched
    assert metrics(sweep / "1")["status"] == "completed"  # the other ran
    assert not list(sweep.glob(".held.*"))  # the note between processes is gone


# ------------------------------------------------------------------------------ RASP programs

FAILING = {  # programs that fail on some inputs only: "abc" works, "e" or a repeat does not
    "dictmiss": 'd = {"a": 1, "b": 2, "c": 3};\ndictmiss = d[tokens];\n',
    "avgstr": "same = select(tokens, tokens, ==);\navgstr = aggregate(same, tokens);\n",
}


@pytest.mark.parametrize("name, says", [
    ("dictmiss", "is not in the dict (keys: ['a', 'b', 'c'])"),
    ("avgstr", "averages several keys"),
])
def test_a_program_that_fails_on_some_inputs_fails_before_any_directory(name, says, tmp_path):
    (tmp_path / f"{name}.rasp").write_text(FAILING[name])
    ok = cli(f"{name}.rasp", "--eval", name, "abc", cwd=tmp_path, module="rasp_hydra.rasp")
    assert ok.returncode == 0, ok.stderr  # it does work on some inputs
    err = refused(cli("lang=rasp", f"lang.program={name}.rasp", "lang.size=5", *TINY[:5],
                      cwd=tmp_path), tmp_path)
    assert f"'{name}'" in err and "input [" in err and says in err


def test_the_trial_inputs_fail_when_the_task_is_built():
    from rasp_hydra.rasp import RASPError, load
    from rasp_hydra.tasks.program import make_program_task

    program = load(FAILING["dictmiss"])
    make_program_task(program, "dictmiss", alphabet="abc")  # every token has its key
    with pytest.raises(RASPError, match="dictmiss.*input"):
        make_program_task(program, "dictmiss", alphabet="abcd")


@pytest.mark.parametrize("content", [b"x = tokens;\n\xe9t\xe9 = 1;\n",  # Latin-1
                                     b"\x7fELF\x02\x01\x01\x00\xd0\xff\xfe"])  # binary
def test_a_file_that_is_not_text_is_named(content, tmp_path):
    (tmp_path / "prog.rasp").write_bytes(content)
    proc = cli("prog.rasp", cwd=tmp_path, module="rasp_hydra.rasp")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "prog.rasp is not UTF-8 text" in proc.stderr
    err = refused(cli("lang=rasp", "lang.program=prog.rasp", cwd=tmp_path), tmp_path)
    assert "lang.program='prog.rasp'" in err and "prog.rasp is not UTF-8 text" in err


def test_syntax_errors_are_rasp_errors_and_exported():
    import rasp_hydra.rasp as rasp

    assert "RaspSyntaxError" in rasp.__all__ and issubclass(rasp.RaspSyntaxError, rasp.RASPError)
    with pytest.raises(rasp.RASPError, match="line 1, column"):
        rasp.load("x = ;")


# -------------------------------------------------------------------- read-only destinations

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("trained")
    cli(*RUN, f"hydra.run.dir={cwd / 'run'}", cwd=cwd, check=True)
    return cwd / "run"


def _bind_ro(src: Path, dst: Path) -> bool:
    dst.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "--bind", "-o", "ro", str(src), str(dst)],
                          capture_output=True)
    if proc.returncode != 0:
        return False
    if os.access(dst, os.W_OK) and _writable(dst):  # an old kernel ignored "ro"
        subprocess.run(["umount", str(dst)])
        return False
    return True


def _writable(d: Path) -> bool:
    try:
        (d / ".probe").touch()
        (d / ".probe").unlink()
        return True
    except OSError:
        return False


# Where no mount is allowed: the same process with every write below RO raising EROFS.
INJECT = textwrap.dedent("""
    import builtins, errno, io, os, runpy, sys
    ro = os.environ["RO_DIR"]
    def bad(p):
        return os.path.abspath(os.fsdecode(p)).startswith(ro)
    def refuse(p):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(p))
    real_open, real_mkdir = builtins.open, os.mkdir
    def ro_open(file, mode="r", *a, **k):
        if isinstance(file, (str, bytes, os.PathLike)) and bad(file) and set(mode) & set("wax+"):
            refuse(file)
        return real_open(file, mode, *a, **k)
    def ro_mkdir(p, *a, **k):
        if bad(p):
            refuse(p)
        return real_mkdir(p, *a, **k)
    builtins.open = io.open = ro_open
    os.mkdir = ro_mkdir
    sys.argv = [sys.argv[1], *sys.argv[2:]]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
""")


@contextmanager
def read_only(src: Path):
    """(a directory with src's files that cannot be written, a function running a module's
    command line with it): a read-only bind mount, or the same files with writes below
    them raising OSError(EROFS) in the subprocess."""
    import shutil

    dst = src.parent / f"{src.name}_ro"
    if _bind_ro(src, dst):
        try:
            yield dst, lambda *args, cwd, module: cli(*args, cwd=cwd, module=module)
        finally:
            subprocess.run(["umount", str(dst)])
        return
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)

    def run(*args, cwd, module):
        env = {**os.environ, "RO_DIR": str(dst.resolve())}
        return subprocess.run([sys.executable, "-c", INJECT, module, *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=240)
    yield dst, run


def test_the_drawer_on_a_read_only_run_names_the_folder_and_out_works(trained_run, tmp_path):
    with read_only(trained_run) as (run, cli_ro):
        proc = cli_ro(str(run), "--sequence", "abc", cwd=tmp_path, module="rasp_hydra.draw")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"cannot be written to {run}/maps/abc" in proc.stderr
        assert "read-only file system" in proc.stderr and "--out DIR" in proc.stderr
        proc = cli_ro(str(run), "--sequence", "abc", "--out", str(tmp_path / "maps"),
                      cwd=tmp_path, module="rasp_hydra.draw")
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "maps" / "abc" / "attention_layer0.png").is_file()
        assert not (run / "maps").exists()


def test_the_report_into_a_read_only_folder_names_it(trained_run, tmp_path):
    (tmp_path / "reports").mkdir()
    with read_only(tmp_path / "reports") as (ro, cli_ro):
        proc = cli_ro(str(trained_run), "--out", str(ro / "r"), cwd=tmp_path,
                      module="rasp_hydra.report")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"cannot be written to {ro / 'r'}" in proc.stderr
        assert "read-only file system" in proc.stderr and "--out DIR" in proc.stderr
        # from a read-only working directory: the default folder is named as such
        proc = cli_ro(str(trained_run), cwd=ro, module="rasp_hydra.report")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "the default folder, under multirun_reports/ in the working directory" in (
            proc.stderr)


def test_an_injected_write_error_is_reported_like_a_read_only_mount(trained_run, tmp_path):
    """The fallback that read_only uses where mounting is not allowed, checked here too."""
    dst = tmp_path / "copy"
    import shutil

    shutil.copytree(trained_run, dst)
    env = {**os.environ, "RO_DIR": str(dst.resolve())}
    proc = subprocess.run([sys.executable, "-c", INJECT, "rasp_hydra.draw", str(dst),
                           "--sequence", "ab"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 2 and "read-only file system" in proc.stderr, proc.stderr
    assert not (dst / "maps").exists()
