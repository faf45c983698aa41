"""The report over a fake sweep that follows the run-directory contract exactly.

The sweep: 2 tasks x 4 arch variants x 2 learning rates, numbered job dirs as Hydra's
basic sweeper makes them, with the partial states a real sweep leaves: `reverse_26`
fewer_heads is skipped (0 heads), one run still running (metrics.json without final), one
failed, one interrupted, one started without metrics.json yet, one job directory deleted.
Each run directory holds the config Hydra composes from conf/ and a record with the keys
train() writes (tests/records.py).
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
import yaml

from rasp_hydra import report, runs
from rasp_hydra.tasks import get_task
from rasp_hydra.tasks.registry import FAMILIES
from tests.records import (
    compose_config,
    model_shape,
    train_record,
    write_config,
    write_multirun,
    write_skipped,
)

TASKS = ("reverse_26", "hist2_26_bos_with_attns")
ARCHS = ("predicted", "fewer_heads", "fewer_layers", "fewer_layers_wider")
LRS = (3e-4, 1e-4)
GAMMA = 0.98


def write_run(job: Path, task, arch, lr, status="completed", *, num, epochs=25,
              with_metrics=True, with_final=True, sweep_overrides=()):
    cfg = write_config(job, f"lang={task}", f"arch={arch}", f"optimizer.lr={lr}",
                       f"schedule.gamma={GAMMA}", "model.d_model=64", *sweep_overrides)
    layers, heads, _ = model_shape(cfg)
    if status == "skipped":
        write_skipped(job, cfg, "0 heads")
        return
    runs.append_log(job, "epoch 1 ...")
    # accuracy that depends on everything, so a wrong grouping changes the numbers
    acc = round(0.5 + 0.04 * num + (0.01 if lr == 3e-4 else 0.0), 4) % 1.0
    n_ep = epochs if status != "running" else 7
    runs.RunDir(job).write_history([
        {"epoch": e, "lr": lr * GAMMA ** (e - 1), "seconds": 1.0, "train_loss": 1.0 / e,
         "train_token_acc": acc * e / n_ep, "train_attn_loss": 0.0, "val_loss": 1.1 / e,
         "val_token_acc": round(acc * e / n_ep - 0.001 * num, 6),
         "val_seq_acc": acc * e / n_ep / 2} for e in range(1, n_ep + 1)])
    if not with_metrics:
        return
    split = {"loss": round(1 - acc, 4), "token_acc": acc, "seq_acc": round(acc ** 3, 4)}
    attn = {f"{l},{h}": round(0.8 + 0.01 * num + 0.05 * l, 4)
            for l in range(layers) for h in range(heads)} if cfg.lang.with_attns else {}
    final = status in ("completed", "interrupted") and with_final
    runs.write_metrics(job, train_record(
        cfg, status=status, reason="SIGINT" if status == "interrupted" else None,
        error="RuntimeError: boom" if status == "failed" else None,
        final={"train": split, "valid": split, "test": split} if final else {},
        attention_match=attn if final else {}, epochs_run=epochs, best_epoch=epochs - 2))


# job num -> special state; others complete. Order = Hydra basic sweeper's product order.
SPECIAL = {9: "running", 12: "failed", 5: "interrupted", 14: "no_metrics", 6: "deleted"}


@pytest.fixture()
def sweep(tmp_path):
    root = tmp_path / "outputs" / "multirun" / "2024-05-01" / "12-00-00"
    root.mkdir(parents=True)
    overrides = [f"lang={','.join(TASKS)}", f"arch={','.join(ARCHS)}",
                 f"optimizer.lr={','.join(map(str, LRS))}"]
    multirun = {
        "hydra": {"run": {"dir": "outputs/${now:%Y-%m-%d}"},
                  "sweep": {"dir": "outputs/multirun/${now:%Y-%m-%d}/${now:%H-%M-%S}",
                            "subdir": "${hydra.job.num}"},
                  "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper."
                              "BasicSweeper", "max_batch_size": None, "params": None},
                  "overrides": {"hydra": ["hydra.mode=MULTIRUN"], "task": overrides}},
        "model": {"layers": 2},
    }
    write_multirun(root, multirun)
    for num, (task, arch, lr) in enumerate(itertools.product(TASKS, ARCHS, LRS)):
        state = SPECIAL.get(num, "completed")
        if state == "deleted":
            continue
        if 0 in model_shape(compose_config(f"lang={task}", f"arch={arch}")):
            state = "skipped"
        write_run(root / str(num), task, arch, lr, num=num,
                  status={"no_metrics": "running"}.get(state, state),
                  with_metrics=state != "no_metrics")
    return root


def direct(root: Path, include_interrupted=False):
    """Table 1 numbers computed straight from the metrics.json files."""
    ok = {"completed", "interrupted"} if include_interrupted else {"completed"}
    by = {}
    for f in root.glob("*/metrics.json"):
        m = json.loads(f.read_text())
        if m["status"] in ok and m["final"]:
            by.setdefault((m["task"], m["arch"]), []).append(m)
    return by


def test_collect_runs_rows_and_statuses(sweep):
    df = report.collect_runs([sweep])
    assert len(df) == 16  # 15 directories + 1 missing
    counts = df["status"].value_counts().to_dict()
    assert counts == {"completed": 9, "skipped": 2, "running": 2, "failed": 1,
                      "interrupted": 1, "missing": 1}
    missing = df[df["status"] == "missing"].iloc[0]
    assert missing["task"] == "reverse_26" and missing["arch"] == "fewer_layers_wider"
    assert "optimizer.lr=0.0003" in missing["reason"]
    # flattened config and metrics, dotted names
    for col in ("model.layers", "optimizer.lr", "arch.name", "lang.family",
                "final.test.token_acc", "attention_match.1,1", "epochs_run"):
        assert col in df.columns, col
    run0 = df[df["run_dir"].str.endswith("/0")].iloc[0]
    assert run0["val_acc_epoch20"] == pd.read_csv(sweep / "0" / "history.csv") \
        .set_index("epoch").loc[20, "val_token_acc"]
    running = df[df["run_dir"].str.endswith("/9")].iloc[0]  # 7 epochs so far
    assert math.isnan(running["test_acc"])


def chosen_on_validation(ms: list[dict]) -> dict:
    """The run a replicate reports: best final validation accuracy, then lower loss."""
    return max(ms, key=lambda m: (m["final"]["valid"]["token_acc"], -m["final"]["valid"]["loss"]))


def test_table1_equals_direct_computation(sweep):
    df = report.collect_runs([sweep])
    t1 = report.table1(df).set_index(["task", "arch"])
    by = direct(sweep)
    tasks = list(dict.fromkeys(t1.index.get_level_values("task")))
    assert tasks == ["reverse_26", "hist2_26_bos_with_attns"]  # paper order
    assert list(t1.loc["reverse_26"].index) == list(ARCHS)
    for (task, arch), ms in by.items():  # one seed: one replicate per cell
        best = chosen_on_validation(ms)["final"]["test"]
        r = t1.loc[(task, arch)]
        assert r["seeds"] == 1 and math.isnan(r["test_acc_ci95"])
        assert r["test_acc_mean"] == r["test_acc_min"] == r["test_acc_max"] == best["token_acc"]
        assert r["test_seq_acc_mean"] == best["seq_acc"]
        assert r["solved"] == f"{int(best['token_acc'] >= 0.99)}/1"
    # variants with nothing counted: NaN, never 0
    assert t1.loc[("reverse_26", "fewer_heads"), "seeds"] == 0
    assert math.isnan(t1.loc[("reverse_26", "fewer_heads"), "test_acc_mean"])
    assert t1.loc[("reverse_26", "fewer_heads"), "solved"] == "0/0"
    # attention match of the chosen predicted hist2 run; these runs record no uniform match
    best = chosen_on_validation(by[("hist2_26_bos_with_attns", "predicted")])
    for head, v in best["attention_match"].items():
        assert t1.loc[("hist2_26_bos_with_attns", "predicted"), f"attn.{head}"] == v
        assert math.isnan(t1.loc[("hist2_26_bos_with_attns", "predicted"), f"attn_above.{head}"])
    assert t1.loc["reverse_26"].filter(like="attn.").isna().all().all()
    # status counts per task, summed over its cells
    per_task = t1.groupby(level="task").sum(numeric_only=True)
    r = per_task.loc["reverse_26"]
    assert (r["runs"], r["completed"], r["skipped"], r["interrupted"], r["running"],
            r["missing"]) == (8, 4, 2, 1, 0, 1)
    h = per_task.loc["hist2_26_bos_with_attns"]
    assert (h["runs"], h["completed"], h["failed"], h["running"]) == (8, 5, 1, 2)


def test_include_interrupted(sweep):
    """reverse_26 fewer_layers: job 4 completed, job 5 (better on validation) interrupted."""
    df = report.collect_runs([sweep])
    accs = {Path(p).name: a for p, a in zip(df["run_dir"], df["test_acc"], strict=True)}
    t1 = report.table1(df).set_index(["task", "arch"])
    assert t1.loc[("reverse_26", "fewer_layers"), "test_acc_mean"] == accs["4"]
    t1 = report.table1(df, include_interrupted=True).set_index(["task", "arch"])
    assert t1.loc[("reverse_26", "fewer_layers"), "seeds"] == 1
    assert t1.loc[("reverse_26", "fewer_layers"), "test_acc_mean"] == accs["5"]


def test_summary_per_layers_heads(sweep):
    df = report.collect_runs([sweep])
    s = report.summary(df)
    row = s[(s["task"] == "hist2_26_bos_with_attns") & (s["layers"] == 1) & (s["heads"] == 4)]
    ms = direct(sweep)[("hist2_26_bos_with_attns", "fewer_layers_wider")]
    assert row["d_model"].item() == 128 and row["n"].item() == len(ms)
    losses = [m["final"]["test"]["loss"] for m in ms]
    assert row["test_loss_best"].item() == min(losses)
    assert row["test_loss_worst"].item() == max(losses)
    assert row["epochs_run_max"].item() == 25
    vals = [pd.read_csv(Path(d) / "history.csv").set_index("epoch").loc[20, "val_token_acc"]
            for d in df[(df["arch"] == "fewer_layers_wider") & (df["status"] == "completed")
                        & (df["task"] == "hist2_26_bos_with_attns")]["run_dir"]]
    assert row["val_acc_epoch20_avg"].item() == pytest.approx(sum(vals) / len(vals))


def test_derive_arch_without_arch_in_config(sweep):
    for d in sweep.iterdir():
        if d.is_dir():
            cfg = yaml.safe_load((d / ".hydra" / "config.yaml").read_text())
            cfg.pop("arch")
            (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
            if (d / "metrics.json").exists():
                m = json.loads((d / "metrics.json").read_text())
                m["arch"] = None
                (d / "metrics.json").write_text(json.dumps(m))
    df = report.collect_runs([sweep])
    assert "arch.name" not in df.columns
    present = df[df["status"] != "missing"]
    by_num = {Path(p).name: a for p, a in zip(present["run_dir"], present["arch"], strict=True)}
    expected = {str(n): a for n, (_, a, _) in enumerate(itertools.product(TASKS, ARCHS, LRS))}
    # the running run without metrics.json has config only: derived from the task registry
    # when available, else a layers/heads label
    del expected["14"], expected["6"]
    assert {k: v for k, v in by_num.items() if k != "14"} == expected


def test_write_report_files(sweep, tmp_path):
    df = report.collect_runs([sweep])
    out = tmp_path / "rep"
    files = report.write_report(df, out, sources=[str(sweep)])
    for name in ("runs.csv", "table1.csv", "summary.csv", "table1.md", "table1.tex",
                 "table1.png", "index.html"):
        assert (out / name).stat().st_size > 0, name
    assert set(files.values()) == set(out.iterdir())
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 16
    t1 = pd.read_csv(out / "table1.csv")
    assert t1.loc[0, "test_acc_mean"] == report.table1(df).loc[0, "test_acc_mean"]
    assert not (out / "table1_long.csv").exists()  # no run has a longer test split
    md = (out / "table1.md").read_text()
    assert "1 failed" in md and "1 missing" in md and "2 skipped" in md
    page = (out / "index.html").read_text()
    assert "data:image/png;base64," in page
    assert 'href="../outputs/multirun/2024-05-01/12-00-00/0/metrics.json"' in page
    assert "\\begin{tabular}" in (out / "table1.tex").read_text()


def test_cli(sweep, tmp_path):
    out = tmp_path / "cli_rep"
    r = subprocess.run([sys.executable, "-m", "rasp_hydra.report", str(sweep), "--out",
                        str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| task" in r.stdout and "hist2_26_bos_with_attns" in r.stdout
    assert (out / "index.html").exists()


def test_default_out_dir(sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert report.main([str(sweep)]) == 0
    assert (tmp_path / "multirun_reports" / "2024-05-01_12-00-00" / "table1.md").exists()
    assert "runs: 9 completed" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["nonexistent", "empty"])
def test_cli_errors(tmp_path, case, capsys):
    path = tmp_path / "nope" if case == "nonexistent" else tmp_path
    (tmp_path / "some" / "dir").mkdir(parents=True)
    assert report.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert ("no such directory" if case == "nonexistent" else "no run directories") in err
    assert not (tmp_path / "multirun_reports").exists()


def test_cli_error_subprocess_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rasp_hydra.report", str(tmp_path / "nope")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no such directory" in r.stderr


def test_nothing_finished_yet_still_reports(tmp_path):
    """Early in a sweep: running runs, a half-written metrics.json, a config-only dir."""
    root = tmp_path / "sweep"
    write_run(root / "0", "reverse_26", "predicted", 3e-4, "running", num=0)
    write_run(root / "1", "reverse_26", "fewer_layers", 3e-4, num=1, with_metrics=False)
    write_run(root / "2", "hist2_26_bos_with_attns", "predicted", 3e-4, num=2)
    (root / "2" / "metrics.json").write_text('{"status": "compl')  # cut mid-write
    write_config(root / "3", "lang=reverse_26")  # Hydra has started the job, nothing else
    df = report.collect_runs([root])
    status = dict(zip(df["run_dir"].map(lambda p: Path(p).name), df["status"], strict=True))
    assert status == {"0": "running", "1": "running", "2": "unreadable", "3": "unknown"}
    assert "unreadable metrics.json" in df.loc[df["status"] == "unreadable", "reason"].iloc[0]
    t1 = report.table1(df).groupby("task").sum(numeric_only=True)
    assert t1.loc["reverse_26", "running"] == 2 and t1.loc["reverse_26", "unknown"] == 1
    assert t1["seeds"].sum() == 0  # nothing counted, nothing is 0 %
    assert report.summary(df).empty
    report.write_report(df, tmp_path / "rep")
    tex = (tmp_path / "rep" / "table1.tex").read_text()
    assert "(\\%)" in tex and "reverse\\_26" in tex


def test_half_written_files(tmp_path):
    """Files caught mid-write by a foreign writer: a config cut short is unreadable (named
    with what is wrong), a history with half a header as started, a record that is not a
    JSON object as unreadable."""
    root = tmp_path / "sweep"
    write_config(root / "0", "lang=sort_26")
    (root / "0" / ".hydra/config.yaml").write_text("lang: {family: so")
    write_config(root / "1", "lang=sort_26", "arch=predicted")
    (root / "1" / "history.csv").write_text("epo")
    write_run(root / "2", "reverse_26", "predicted", 3e-4, num=2)
    (root / "2" / "metrics.json").write_text("[1, 2]")
    df = report.collect_runs([root])
    rows = {Path(r["run_dir"]).name: r for _, r in df.iterrows()}
    assert (rows["0"]["status"], rows["0"]["task"]) == ("unreadable", "(unknown)")
    assert (rows["1"]["status"], rows["1"]["task"], rows["1"]["arch"]) \
        == ("running", "sort_26", "predicted")
    assert math.isnan(rows["1"]["val_acc_epoch20"]) and math.isnan(rows["1"]["epochs_run"])
    assert rows["2"]["status"] == "unreadable" and "not a JSON object" in rows["2"]["reason"]
    assert rows["2"]["val_acc_epoch20"] > 0  # its history is still read
    assert report.table1(df)["runs"].sum() == 3


def test_missing_job_from_sweeper_params(tmp_path):
    """An experiment preset's hydra.sweeper.params come before command-line overrides."""
    root = tmp_path / "sweep"
    root.mkdir()
    multirun = {"hydra": {
        "sweep": {"dir": "x", "subdir": "${hydra.job.num}"},
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                    "max_batch_size": None,
                    "params": {"lang": ",".join(TASKS), "arch": "predicted,fewer_layers"}},
        "overrides": {"task": ["+experiment=table1", "optimizer.lr=3e-4,1e-4"]}}}
    write_multirun(root, multirun)
    jobs = list(itertools.product(TASKS, ("predicted", "fewer_layers"), LRS))
    for num, (task, arch, lr) in enumerate(jobs):
        if num != 5:
            write_run(root / str(num), task, arch, lr, num=num)
    df = report.collect_runs([root])
    missing = df[df["status"] == "missing"]
    assert len(df) == 8 and len(missing) == 1
    assert (missing["task"].item(), missing["arch"].item()) == jobs[5][:2]
    assert missing["lr"].item() == jobs[5][2]


def test_task_name_from_lang_parts(tmp_path):
    """A job that has not written metrics.json yet: its task from the config's lang parts."""
    run = tmp_path / "0"
    write_config(run, "lang=hist2_26_bos", "arch=predicted")
    runs.append_log(run, "start")
    df = report.collect_runs([tmp_path])
    assert df.loc[0, "task"] == "hist2_26_bos" and df.loc[0, "status"] == "running"
    assert df.loc[0, "arch"] == "predicted"


def test_table1_orders_tasks_by_the_registry(tmp_path):
    """Families in the task registry's order (Dyck by its family `dyck`), then names."""
    tasks = ["dyck1_ptf", "sort_by_freq_26", "hist_26", "reverse_26", "sort_26", "hist2_26",
             "dyck2_ptf", "hist_10"]
    for num, task in enumerate(tasks):
        write_run(tmp_path / str(num), task, "predicted", 3e-4, num=num)
    order = list(report.table1(report.collect_runs([tmp_path]))["task"])
    families = list(FAMILIES)
    assert order == sorted(tasks, key=lambda t: (families.index(get_task(t).family), t))
    assert order[-2:] == ["dyck1_ptf", "dyck2_ptf"] and order[0] == "reverse_26"


def optuna_sweep(root: Path, finished: bool) -> dict[int, float]:
    """A sweep laid out as hydra-optuna-sweeper leaves it: numbered trial directories, its
    multirun.yaml, and optimization_results.yaml once the study has ended. The search
    space is a `choice`, which the basic sweeper could enumerate too; trial 1's directory
    was deleted, trial 3 failed. Returns the completed trials' test accuracies."""
    root.mkdir(parents=True)
    lrs = {0: 1e-3, 1: 3e-4, 2: 3e-4, 3: 1e-2, 4: 1e-4}
    multirun = {"hydra": {
        "sweep": {"dir": str(root), "subdir": "${hydra.job.num}"},
        "sweeper": {
            "_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
            "sampler": {"_target_": "optuna.samplers.TPESampler", "seed": 123},
            "direction": "maximize", "study_name": "lr", "storage": None, "n_trials": 5,
            "n_jobs": 1, "max_failure_rate": 0.0,
            "params": {"optimizer.lr": "choice(1e-4,3e-4,1e-3,1e-2)"}},
        "overrides": {"hydra": ["hydra.mode=MULTIRUN"],
                      "task": ["hydra/sweeper=optuna", "lang=reverse_26"]}}}
    (root / "multirun.yaml").write_text(yaml.safe_dump(multirun, sort_keys=False))
    for trial, lr in lrs.items():
        write_run(root / str(trial), "reverse_26", "predicted", lr, num=trial,
                  status="failed" if trial == 3 else "completed")
    shutil.rmtree(root / "1")
    if finished:
        (root / "optimization_results.yaml").write_text(yaml.safe_dump(
            {"name": "optuna", "best_params": {"optimizer.lr": 1e-4}, "best_value": 0.9}))
    return {t: runs.read_metrics(root / str(t))["final"]["test"]["token_acc"]
            for t in lrs if t not in (1, 3)}


@pytest.mark.parametrize("finished", [False, True])
def test_optuna_sweep_trials_are_runs(tmp_path, finished):
    root = tmp_path / "optuna"
    accs = optuna_sweep(root, finished)
    assert runs.sweeper_kind(root) == "optuna"
    df = report.collect_runs([root])
    assert "missing" not in set(df["status"])  # nothing rebuilt for an Optuna study
    assert list(df["trial"]) == [0, 2, 3, 4]
    assert [Path(p).name for p in df["run_dir"]] == ["0", "2", "3", "4"]
    assert list(df["status"]) == ["completed", "completed", "failed", "completed"]
    t1 = report.table1(df).set_index("task")  # validation and test agree here
    assert t1.loc["reverse_26", "test_acc_mean"] == max(accs.values())
    assert t1.loc["reverse_26", "seeds"] == 1 and t1.loc["reverse_26", "completed"] == 3
    assert t1.loc["reverse_26", "failed"] == 1
    page = report.write_report(df, tmp_path / "rep")["html"].read_text()
    assert "<th>trial</th>" in page


def test_basic_sweep_has_no_trial_column(sweep):
    assert runs.sweeper_kind(sweep) == "basic"
    assert "trial" not in report.collect_runs([sweep]).columns


def test_load_sweep_is_the_runs_table(sweep, tmp_path):
    df = report.load_sweep(sweep)
    pd.testing.assert_frame_equal(df, report.collect_runs([sweep]))
    assert report.load_sweep([str(sweep)]).shape == df.shape
    report.write_report(df, tmp_path / "rep")
    assert list(pd.read_csv(tmp_path / "rep" / "runs.csv").columns) == list(df.columns)
    assert len(df) == 16 and df["run_dir"].is_unique


class Links(HTMLParser):
    """Every tag's attributes, to find where a page links."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def attr(self, name: str) -> list[tuple[str, str]]:
        return [(t, a[name]) for t, a in self.tags if name in a]


def draw_curves(run_dirs) -> dict[str, bytes]:
    """plots/curves.png for these runs, drawn by RunDir.plot_curves from their history."""
    pngs = {}
    for d in run_dirs:
        path = runs.RunDir(d).plot_curves(runs.RunDir(d).history())
        pngs[d.name] = path.read_bytes()
    return pngs


def test_html_links_resolve_from_the_report_folder_when_moved(sweep, tmp_path):
    """A sweep (in a folder whose name has a space and a `#`) and its report, moved
    together elsewhere: every link of the page, taken relative to the page's folder, is a
    file or run directory of the moved sweep; each present run is linked, the deleted one
    is not; links are URL-quoted."""
    shared = tmp_path / "shared"
    shutil.copytree(sweep, shared / "sweep #1")
    draw_curves([shared / "sweep #1" / "0", shared / "sweep #1" / "4"])
    report.main([str(shared / "sweep #1"), "--out", str(shared / "report")])
    moved = tmp_path / "elsewhere" / "moved"
    shutil.move(shared, moved)
    page = moved / "report" / "index.html"
    hrefs = [h for _, h in Links(page.read_text()).attr("href")]
    assert not [h for h in hrefs if " " in h or "#" in h]
    targets = [(page.parent / unquote(h)).resolve() for h in hrefs]
    assert targets and [t for t in targets if not t.exists()] == []
    moved_sweep = (moved / "sweep #1").resolve()
    assert all(t.is_relative_to(moved_sweep) for t in targets)
    linked_runs = {t.name for h, t in zip(hrefs, targets, strict=True) if h.endswith("/")}
    assert linked_runs == {str(n) for n in range(16)} - {"6"}
    assert moved_sweep / "0" / "plots/curves.png" in targets
    assert moved_sweep / "1" / "plots/curves.png" not in targets  # not drawn


def test_html_self_contained(sweep, tmp_path, capsys):
    """--self-contained: nothing leaves the page; every table link is an anchor of the page;
    each drawn run's curves are embedded, byte for byte."""
    pngs = draw_curves([sweep / "0", sweep / "4", sweep / "12"])
    out = tmp_path / "rep"
    assert report.main([str(sweep), "--out", str(out), "--self-contained"]) == 0
    shutil.rmtree(tmp_path / "outputs")
    links = Links((out / "index.html").read_text())
    ids = {a["id"] for _, a in links.tags if "id" in a}
    hrefs = [h for _, h in links.attr("href")]
    assert len(hrefs) == 16 and all(h.startswith("#") and h[1:] in ids for h in hrefs)
    srcs = links.attr("src")
    assert all(t == "img" and s.startswith("data:image/png;base64,") for t, s in srcs)
    assert len(srcs) == 1 + len(pngs)  # the table's figure, then one per drawn run
    import base64

    embedded = sorted(base64.b64decode(s.split(",", 1)[1]) for _, s in srcs[1:])
    assert embedded == sorted(pngs.values())
