"""The Hydra app end to end: `python -m rasp_hydra ...` in a subprocess, on tiny configs."""

from __future__ import annotations

import functools
import itertools
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rasp_hydra import job, runs
from rasp_hydra.cli.store import register_configs, to_config
from tests.conftest import TINY, cli, metrics

CONF = str(Path(__file__).resolve().parents[1] / "conf")
CONTRACT_FILES = ["train.log", "history.csv", "metrics.json", "checkpoints/best.pt",
                  "checkpoints/last.pt", "plots/curves.png", ".hydra/config.yaml",
                  ".hydra/overrides.yaml"]


def compose_cfg(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def only_run_dir(cwd: Path) -> Path:
    runs = [p.parent for p in (cwd / "outputs").rglob("metrics.json")]
    assert len(runs) == 1, runs
    return runs[0]


# ----------------------------------------------------------------------------- composing

def test_help_names_the_app_its_flags_groups_and_task_families(cli_cwd):
    from rasp_hydra.tasks import FAMILIES, task_names

    out = cli("--help", cwd=cli_cwd, check=True).stdout
    assert out.startswith("rasp-hydra: ") and "`python -m rasp_hydra` is the same" in out
    assert "--resume RUN_DIR" in out and "--hydra-help" in out
    lines = out.splitlines()
    for family in FAMILIES:  # one line per family, with its count of task names
        assert any(line.split()[:2] == [family, str(len(task_names(family)))]
                   for line in lines if line.strip()), family
    for group in ("lang", "model", "optimizer", "schedule", "arch", "logger", "+experiment",
                  "+seeds", "+search", "+debug"):
        assert any(line.split()[:1] == [group] for line in lines), group
    for option in ("fewer_layers_wider", "paper", "sgd", "table1_quick", "tiny", "lang=rasp"):
        assert option in out
    # the families, not every task: at most a few names of each
    words = set(re.findall(r"[a-z0-9_]+", out))
    assert len(words & set(task_names())) <= 2 * len(FAMILIES) + 2  # (two lang presets)
    assert not (cli_cwd / "outputs").exists()


def test_cfg_job_composes_defaults_of_the_original(cli_cwd):
    out = cli("lang=sort_52_bos", "--cfg", "job", cwd=cli_cwd, check=True).stdout
    cfg = OmegaConf.create(out)
    assert (cfg.lang.family, cfg.lang.size, cfg.lang.bos) == ("sort", 52, True)
    assert (cfg.model.d_model, cfg.model.dropout, cfg.train.batch_size) == (128, 0.0, 50)
    assert (cfg.optimizer.lr, cfg.schedule.gamma, cfg.train.epochs) == (3e-4, 0.98, 50)
    assert (cfg.train.attn_loss_c, cfg.train.reset_patience, cfg.train.perfect_acc_epochs) \
        == (100.0, 10, 3)
    assert not (cli_cwd / "outputs").exists()


def test_misspelled_key_and_wrong_type_fail_before_work(cli_cwd):
    bad_key = cli("model.layer=3", "--cfg", "job", cwd=cli_cwd)
    assert bad_key.returncode != 0 and "layer" in bad_key.stderr
    bad_type = cli("model.layers=two", "--cfg", "job", cwd=cli_cwd)
    assert bad_type.returncode != 0 and "layers" in bad_type.stderr
    bad_device = cli("train.device=gpu", "--cfg", "job", cwd=cli_cwd)
    assert bad_device.returncode != 0 and "cuda" in bad_device.stderr


def test_model_paper_preset():
    cfg = compose_cfg("model=paper")
    assert (cfg.model.d_model, cfg.model.ff, cfg.model.dropout, cfg.train.epochs) \
        == (256, 512, 0.0, 100)


@pytest.mark.parametrize("arch, expect", [
    ("predicted", (2, 2, 64, 128)), ("fewer_heads", (2, 1, 64, 128)),
    ("fewer_layers", (1, 2, 64, 128)), ("fewer_layers_wider", (1, 4, 128, 256)),
])
def test_arch_is_relative_to_the_rasp_budget(arch, expect):
    cfg = compose_cfg("lang=hist2_10_bos", f"arch={arch}", "model.d_model=64")
    task = job.resolve_task(cfg.lang)
    b = job.resolve_shape(to_config(cfg), task)
    assert (b.layers, b.heads, b.d_model, b.ff) == expect
    assert job.skip_reason(task, cfg.arch, b) is None


def test_arch_that_cannot_exist_is_skipped():
    cfg = compose_cfg("lang=hist_10_bos", "arch=fewer_layers")
    task = job.resolve_task(cfg.lang)
    skipped = job.skip_reason(task, cfg.arch, job.resolve_shape(to_config(cfg), task))
    assert skipped and "0 layers" in skipped


@functools.cache
def sweep_job_configs(preset: str, only: tuple[str, ...] | None = None) -> list:
    """The composed config of every job that a preset's `-m` sweep launches (the basic
    sweeper's grid over its hydra.sweeper.params); with `only`, the other swept keys keep
    their first value."""

    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        params = compose(config_name="config", overrides=[f"+experiment={preset}"],
                         return_hydra_config=True).hydra.sweeper.params
        axes = [[f"{key}={v}" for v in str(values).split(",")] for key, values in params.items()]
        axes = [a if only is None or a[0].split("=")[0] in only else a[:1] for a in axes]
        return [compose(config_name="config", overrides=[f"+experiment={preset}", *job])
                for job in itertools.product(*axes)]


def test_quick_preset_sets_each_tasks_length():
    jobs = sweep_job_configs("table1_quick", only=("lang", "arch"))
    assert len(jobs) == 32
    lengths = {(cfg.lang.family, cfg.lang.size, cfg.lang.bos): cfg.lang.max_len for cfg in jobs}
    assert lengths == {("reverse", 26, False): 16, ("hist", 26, True): 16,
                       ("hist2", 26, True): 16, ("sort", 26, True): 16,
                       ("sort", 100, True): 16, ("sort_by_freq", 26, True): 16,
                       ("dyck", 1, False): 48, ("dyck", 2, False): 48}
    assert {(c.model.d_model, c.optimizer.lr, c.schedule.gamma, c.train.epochs)
            for c in jobs} == {(64, 1e-3, 0.9, 20)}


@pytest.mark.parametrize("preset", ["table1", "table1_quick"])
def test_every_job_of_a_preset_passes_the_config_checks(preset):
    skipped = 0
    # lr and gamma do not change what is checked: one value each keeps this test fast
    for cfg in sweep_job_configs(preset, only=("lang", "arch")):
        task = job.resolve_task(cfg.lang)
        shape = job.resolve_shape(to_config(cfg), task)
        job.check_config(cfg, task, shape, lambda: False)
        skipped += job.skip_reason(task, cfg.arch, shape) is not None
    assert skipped > 0  # the variants with 0 layers or heads are skipped, not failed


# ------------------------------------------------------------------------- config errors

@pytest.mark.parametrize("overrides, words", [
    (["lang.family=hsit"], ["Unknown", "hist"]),
    (["lang=reverse_10", "lang.with_attns=true"], ["hist2", "sort"]),  # reverse: no targets
    (["lang=sort_by_freq_10_with_attns", "model.layers=2", "model.heads=2"],
     ["layer 2 head 0", "3 layers"]),
    (["lang=hist2_10", "model.heads=3"], ["divisible", "128"]),
    (["lang=sort_10_bos", "lang.max_len=20", "model.max_len=20"], ["21", "max_len"]),
    (["lang.min_len=5", "lang.max_len=3"], ["min_len"]),
])
def test_config_errors_name_the_problem(overrides, words):
    cfg = compose_cfg(*overrides)
    with pytest.raises(job.ConfigError) as err:
        task = job.resolve_task(cfg.lang)
        job.check_config(cfg, task, job.resolve_shape(to_config(cfg), task),
                         lambda: True)
    for word in words:
        assert word in str(err.value)


def test_cuda_asked_where_none_exists():
    cfg = compose_cfg("train.device=cuda")
    task = job.resolve_task(cfg.lang)
    with pytest.raises(job.ConfigError, match="no CUDA device"):
        job.check_config(cfg, task, job.resolve_shape(to_config(cfg), task),
                         lambda: False)


def test_cli_error_is_one_paragraph_and_leaves_nothing(cli_cwd):
    proc = cli("lang=hist2_10", "model.heads=3", cwd=cli_cwd)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "divisible" in proc.stderr
    assert not list((cli_cwd / "outputs").rglob("*.json"))
    assert not list((cli_cwd / "outputs").rglob(".hydra"))


def test_resume_from_a_directory_without_a_run(cli_cwd):
    (cli_cwd / "empty").mkdir()
    proc = cli("--resume", "empty", cwd=cli_cwd)
    assert proc.returncode != 0 and "holds no run" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------ one run

def test_single_run_writes_the_whole_contract(cli_cwd):
    proc = cli("lang=hist_10_bos", "model.layers=1", *TINY, cwd=cli_cwd, check=True)
    run = only_run_dir(cli_cwd)
    for name in CONTRACT_FILES:
        assert (run / name).is_file(), name
    m = metrics(run)
    assert m["status"] == "completed" and m["task"] == "hist_10_bos"
    assert (m["layers"], m["heads"], m["d_model"]) == (1, 1, 16)
    assert (m["predicted_layers"], m["predicted_heads"]) == (1, 1)
    assert m["epochs_run"] == 2 and 1 <= m["best_epoch"] <= 2
    assert m["params"] > 0 and m["wall_seconds"] > 0 and m["tokens_per_second"] > 0
    for split in ("train", "valid", "test"):
        for key in ("loss", "token_acc", "seq_acc"):
            assert key in m["final"][split]
        assert 0 <= m["final"][split]["seq_acc"] <= m["final"][split]["token_acc"] <= 1
    assert set(m["attention_match"]) == {"0,0"}  # hist's reference selector
    assert m["num_threads"] == 1  # the default, as a sweep job's
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 3 and history[0].startswith("epoch")
    log = (run / "train.log").read_text()
    assert "epoch" in log and "final" in log
    assert "final" in proc.stdout
    best = torch.load(run / "checkpoints/best.pt", weights_only=True)
    assert best["task"] == "hist_10_bos" and "model" in best


def _wait_for_epochs(run_parent: Path, proc: subprocess.Popen, epochs: int) -> Path:
    deadline = time.time() + 120
    while time.time() < deadline:
        for hist in run_parent.rglob("history.csv"):
            if len(hist.read_text().splitlines()) > epochs:
                return hist.parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("training did not reach the epoch in time")


SLOW_ENOUGH = ["lang=sort_10", "model.d_model=32", "lang.max_len=8", "lang.train_size=3000",
               "lang.valid_size=100", "lang.test_size=100", "train.num_threads=1"]


def _popen(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "rasp_hydra", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigint_stops_cleanly_with_a_loadable_best_checkpoint(cli_cwd):
    proc = _popen([*SLOW_ENOUGH, "train.epochs=200"], cli_cwd)
    run = _wait_for_epochs(cli_cwd / "outputs", proc, 1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out  # 128 + SIGINT, after the record
    m = metrics(run)
    assert m["status"] == "interrupted" and 1 <= m["epochs_run"] < 200
    assert m["final"]["test"]["token_acc"] > 0
    best = torch.load(run / "checkpoints/best.pt", weights_only=True)
    assert best["epoch"] == m["best_epoch"]


@pytest.mark.slow  # ~20 s; test_write_window kills at every write boundary in the default suite
def test_kill_9_then_resume_ends_like_an_uninterrupted_run(cli_cwd):
    epochs = ["train.epochs=5", "train.perfect_acc_epochs=100"]
    straight = cli_cwd / "straight"
    cli(*SLOW_ENOUGH, *epochs, f"hydra.run.dir={straight}", cwd=cli_cwd, check=True)

    proc = _popen([*SLOW_ENOUGH, *epochs, f"hydra.run.dir={cli_cwd / 'killed'}"], cli_cwd)
    killed = _wait_for_epochs(cli_cwd / "killed", proc, 2)
    proc.kill()
    proc.wait()
    assert metrics(killed)["status"] == "running"
    cli("--resume", str(killed), cwd=cli_cwd, check=True)

    a, b = metrics(straight), metrics(killed)
    assert b["status"] == "completed" and b["resumes"] == 1
    assert a["final"] == b["final"] and a["best_epoch"] == b["best_epoch"]
    assert a["epochs_run"] == b["epochs_run"] == 5
    hist_a, hist_b = (pd.read_csv(d / "history.csv").drop(columns="seconds")
                      for d in (straight, killed))
    pd.testing.assert_frame_equal(hist_a, hist_b)  # bit for bit, every epoch


# ---------------------------------------------------------------------------------- sweeps

# 2 tasks x 2 arch variants: hist_10_bos has no 0-layer model (skipped); with
# model.max_len=6 its BOS makes 7 tokens, so its predicted job fails on purpose.
GRID = ["lang=hist_10_bos,sort_10", "arch=predicted,fewer_layers", "model.max_len=6", *TINY]
EXPECTED = {("hist_10_bos", "predicted"): "failed", ("hist_10_bos", "fewer_layers"): "skipped",
            ("sort_10", "predicted"): "completed", ("sort_10", "fewer_layers"): "completed"}


def check_sweep(sweep: Path, threads: int) -> None:
    assert (sweep / "multirun.yaml").is_file()
    # the job list written at launch is what each job ran (Hydra's own record of it)
    assert runs.sweep_jobs(sweep) == [
        list(OmegaConf.load(sweep / str(n) / ".hydra/overrides.yaml")) for n in range(4)]
    seen = {}
    for n in range(4):
        run = sweep / str(n)
        cfg = OmegaConf.load(run / ".hydra/config.yaml")
        task = job.resolve_task(cfg.lang)
        m = metrics(run)
        seen[(task.name, cfg.arch.name)] = m["status"]
        if m["status"] == "completed":
            for name in CONTRACT_FILES:
                assert (run / name).is_file(), (run, name)
            assert m["num_threads"] == threads
            assert (m["layers"], m["heads"]) == ((2, 1) if cfg.arch.name == "predicted"
                                                 else (1, 1))
        elif m["status"] == "failed":
            assert "max_len" in m["error"]
        else:
            assert "0 layers" in m["reason"]
    assert seen == EXPECTED


def test_sweep_on_joblib(cli_cwd):
    sweep = cli_cwd / "sweep"
    proc = cli("-m", *GRID, "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}",
               cwd=cli_cwd)
    assert_one_job_failed(proc, sweep)
    out = proc.stdout + proc.stderr
    assert "Joblib" in out
    for n in range(4):  # one line when each job starts and ends, named by its directory
        assert f"[job {n}] start lang=" in out and f" done job {n}: " in out
    assert re.findall(r"\[(\d)/4\] done job \d: ", out) == ["1", "2", "3", "4"]
    check_sweep(sweep, threads=1)  # the default, as a single run's
    check_report(sweep, cli_cwd)


def assert_one_job_failed(proc, sweep: Path) -> None:
    """The grid's failed job makes the sweep's exit code 1, and its last line says so."""
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: 1 of 4 jobs of {sweep} did not complete (1 failed)")


def check_report(sweep: Path, cwd: Path) -> None:
    """The report of a real sweep: its numbers are the run directories' own; then the
    same sweep made partial (a run still going, one deleted) says so."""
    out = cwd / "report"
    proc = cli(str(sweep), "--out", str(out), cwd=cwd, check=True, module="rasp_hydra.report")
    for name in ("table1.md", "table1.csv", "table1.tex", "runs.csv", "table1.png",
                 "index.html"):
        assert (out / name).is_file(), name
    md = (out / "table1.md").read_text()
    first_table = md[md.index("\n|"):].split("\n\n")[0].strip()
    assert first_table.count("\n") == 3 and first_table in proc.stdout  # header, rule, 2 tasks
    t1 = pd.read_csv(out / "table1.csv").set_index(["task", "arch"])
    for n in range(4):
        m = metrics(sweep / str(n))
        if m["status"] == "completed":  # one run per cell: its own figures
            arch = OmegaConf.load(sweep / str(n) / ".hydra/config.yaml").arch.name
            assert t1.loc[(m["task"], arch), "test_acc_mean"] == pytest.approx(
                m["final"]["test"]["token_acc"])
            assert t1.loc[(m["task"], arch), "test_seq_acc_mean"] == pytest.approx(
                m["final"]["test"]["seq_acc"])
    hist = t1.loc["hist_10_bos"]
    assert hist["failed"].sum() == 1 and hist["skipped"].sum() == 1
    # a failure is not accuracy 0
    assert pd.isna(t1.loc[("hist_10_bos", "predicted"), "test_acc_mean"])
    for head, value in metrics(sweep / "2")["attention_match"].items():
        assert t1.loc[("sort_10", "predicted"), f"attn.{head}"] == pytest.approx(value)

    # partial: job 3 deleted, job 2 "still running" by its record, but no process holds it
    import shutil

    shutil.rmtree(sweep / "3")
    m2 = metrics(sweep / "2")
    m2.update(status="running", final={}, attention_match={})
    (sweep / "2" / "metrics.json").write_text(json.dumps(m2))
    proc = cli(str(sweep), "--out", str(cwd / "partial"), cwd=cwd, check=True,
               module="rasp_hydra.report")
    t1 = pd.read_csv(cwd / "partial" / "table1.csv").set_index(["task", "arch"])
    assert t1.loc["sort_10", "crashed"].sum() == 1 and t1.loc["sort_10", "missing"].sum() == 1
    assert t1.loc["sort_10", "running"].sum() == 0
    assert pd.isna(t1.loc[("sort_10", "predicted"), "test_acc_mean"])
    assert "1 crashed" in proc.stdout and "1 missing" in proc.stdout


def test_sweep_on_submitit_local(cli_cwd):
    sweep = cli_cwd / "sweep"
    proc = cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1", *GRID,
               f"hydra.sweep.dir={sweep}", cwd=cli_cwd)
    assert_one_job_failed(proc, sweep)
    assert (sweep / ".submitit").is_dir()
    assert not (sweep / ".submitit" / "%j").exists()  # submitit's empty template folder
    check_sweep(sweep, threads=1)


def test_sweep_dir_layout_by_default(cli_cwd):
    cli("-m", "lang=hist_10_bos", "arch=fewer_heads", cwd=cli_cwd, check=True)
    (sweep,) = (cli_cwd / "outputs" / "multirun").glob("*/*")
    assert json.loads((sweep / "0" / "metrics.json").read_text())["status"] == "skipped"
