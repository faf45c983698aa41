"""A run directory's broken files and its lock, on real processes (docs/run-directory.md):
a refused invocation removes no file it did not create; every reader names a broken file
and carries on (the report, load_sweep) or refuses with one paragraph (load_run, the
drawer, the probes, --resume); ownership survives a deleted or replaced run.lock."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TINY, cli, metrics

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


def _cut_at_line(text: str, key: str) -> str:
    """The config cut at a line boundary just before the top-level `key:`: valid YAML."""
    return text[:text.index(f"\n{key}:") + 1]


def _cut_in_value(text: str, key: str, value: str) -> str:
    """The config cut inside `key: value` after its first character: valid YAML too."""
    at = text.index(f"{key}: {value}")
    return text[:at + len(key) + 3]


@pytest.mark.parametrize("damage, says", [
    ("a group gone", "lacks optimizer, schedule, train, which every saved config holds"),
    ("a value cut", "lacks schedule, train, which every saved config holds"),
    ("a value edited", "disagrees with the run's own overrides (.hydra/overrides.yaml) in "
                       "optimizer.lr: 0.5 where they compose 0.0003"),
])
def test_a_saved_config_cut_short_into_valid_yaml_is_refused(completed_run, tmp_path, damage,
                                                             says):
    # it used to be accepted (a group gone: the resume trained with the defaults) or blamed
    # on overrides the command never gave (a value cut or edited)
    run = copy_of(completed_run, tmp_path / "run")
    config = run / ".hydra/config.yaml"
    text = config.read_text()
    assert "\noptimizer:" in text and "  lr: 0.0003\n" in text  # the default's
    config.write_text(_cut_at_line(text, "optimizer") if damage == "a group gone" else
                      _cut_in_value(text, "lr", "0.0003") if damage == "a value cut" else
                      text.replace("  lr: 0.0003\n", "  lr: 0.5\n"))
    before = snapshot(run)
    err = one_paragraph(cli("--resume", str(run), "train.epochs=3", cwd=tmp_path))
    assert says in err and str(config) in err and "nothing was written" in err
    assert snapshot(run) == before
    # the way out: the run's own config back
    config.write_text(text)
    cli("--resume", str(run), "train.epochs=3", cwd=tmp_path, check=True)
    assert metrics(run)["epochs_run"] == 3


def test_a_folder_where_run_lock_goes_is_named(completed_run, tmp_path):
    run = copy_of(completed_run, tmp_path / "run")
    (run / "run.lock").unlink()
    (run / "run.lock").mkdir()
    before = snapshot(run)
    err = one_paragraph(cli("--resume", str(run), cwd=tmp_path))
    assert f"{run / 'run.lock'} cannot be written (Is a directory)" in err
    assert "is in the way of a file the run keeps there" in err and "space" not in err
    assert snapshot(run) == before and (run / "run.lock").is_dir()


# ------------------------------------------------ the lock does not depend on run.lock

SLOW = ["lang=sort_10", "model.d_model=32", "lang.max_len=8", "lang.train_size=3000",
        "lang.valid_size=100", "lang.test_size=100", "train.num_threads=1",
        "train.perfect_acc_epochs=100"]


def _hold(run: Path) -> subprocess.Popen:
    """A process that claims `run`, writes a `running` record and waits (to be killed)."""
    code = ("import sys, time; from rasp_hydra import runs; rd = runs.RunDir(sys.argv[1]); "
            "lock = rd.lock().acquire().announce(); "
            "rd.write_record({**rd.record(), 'status': 'running', 'final': {}}); "
            "print('ready', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _damage_lock(run: Path, how: str) -> None:
    lock = run / "run.lock"
    data = lock.read_bytes()
    lock.unlink()
    if how == "replaced":
        lock.write_bytes(data)  # the same bytes, a new inode


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_no_second_writer_while_the_holder_lives_whatever_became_of_run_lock(
        completed_run, tmp_path, how):
    from rasp_hydra import report, runs

    run = copy_of(completed_run, tmp_path / "run")
    holder = _hold(run)
    try:
        _damage_lock(run, how)
        status = report.collect_runs([run])["status"].tolist()
        before = snapshot(run)
        err = one_paragraph(cli("--resume", str(run), "train.epochs=4", cwd=tmp_path), 3)
        after = snapshot(run)
    finally:
        holder.kill()
        holder.wait()
    assert status == ["running"]  # not `crashed`: its holder lives
    assert "is in use by" in err
    if how == "replaced":
        assert f"process {holder.pid}" in err
    assert after == before  # the second process wrote nothing, created nothing
    assert [i["event"] for i in runs.RunDir(run).invocations()] == ["start", "end"]
    if how == "replaced":  # once the holder is dead, the report says so
        assert report.collect_runs([run])["status"].tolist() == ["crashed"]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_writer_whose_run_lock_is_deleted_or_replaced_stops_before_its_next_epoch(
        tmp_path, how):
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "rasp_hydra", *SLOW, "train.epochs=80", f"hydra.run.dir={run}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "history.csv").exists():
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.02)
    _damage_lock(run, how)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 1 and "Traceback" not in err, err
    assert f"run.lock was {how}" in err and "--resume" in err
    m = metrics(run)
    assert m["status"] == "failed" and 1 <= m["epochs_run"] < 80
    epochs = [int(e) for e in pd.read_csv(run / "history.csv")["epoch"]]
    assert epochs == list(range(1, m["epochs_run"] + 1))  # the record and files agree
    # the way on that the error gives
    cli("--resume", str(run), f"train.epochs={m['epochs_run'] + 1}", cwd=tmp_path, check=True)
    assert metrics(run)["status"] == "completed"


# ------------------------------------------------ every reader names a broken file

def _edit_json(key, value):
    def damage(path: Path) -> None:
        import json

        record = json.loads(path.read_text())
        record[key] = value
        path.write_text(json.dumps(record))
    return damage


def _replace(text: str):
    return lambda path: path.write_text(text)


def _bad_config(kind: str):
    def damage(path: Path) -> None:
        lines = path.read_text().splitlines()
        if kind == "interpolation":  # the first key of model: a value that cannot resolve
            i = lines.index("model:") + 1
            lines[i] = lines[i].split(":")[0] + ": ${nothing.here}"
        else:  # lang: a number where its group should be
            i = lines.index("lang:")
            end = next(j for j in range(i + 1, len(lines)) if not lines[j].startswith(" "))
            lines[i:end] = ["lang: 3"]
        path.write_text("\n".join(lines) + "\n")
    return damage


BROKEN = {  # name: (file, damage, what the error says about it)
    "history garbage row": ("history.csv", lambda p: p.write_text(p.read_text() + "garbage\n"),
                            "fields where the header has"),
    "history binary": ("history.csv", lambda p: p.write_bytes(b"\x00\xff\xfe" + p.read_bytes()),
                       "it is not text (binary bytes at byte 1)"),
    "epochs_run many": ("metrics.json", _edit_json("epochs_run", "many"),
                        'epochs_run is "many", not a whole number'),
    "final a string": ("metrics.json", _edit_json("final", "great"),
                       "final is a string, not an object of splits"),
    "record a list": ("metrics.json", _replace("[1, 2]"), "not a JSON object but a list"),
    "record cut short": ("metrics.json", lambda p: p.write_text(p.read_text()[:40]),
                         "it is not valid JSON, e.g. cut short"),
    "status null": ("metrics.json", _edit_json("status", None), "status is null"),
    "config interpolation": (".hydra/config.yaml", _bad_config("interpolation"),
                             "an interpolation cannot be resolved"),
    "config shape": (".hydra/config.yaml", _bad_config("shape"), "lang is 3, not a mapping"),
    "overrides garbled": (".hydra/overrides.yaml", _replace("- lang=hist_10_bos\n  x: [y\n"),
                          "not valid YAML"),
}
REPORT_READS = [k for k, v in BROKEN.items() if v[0] != ".hydra/overrides.yaml"]
MODEL_READS = [k for k, v in BROKEN.items() if v[0] in ("metrics.json", ".hydra/config.yaml")]


def broken_copy(completed_run: Path, tmp_path: Path, case: str) -> tuple[Path, str, str]:
    run = copy_of(completed_run, tmp_path / "sweep" / "0")
    name, damage, what = BROKEN[case]
    damage(run / name)
    return run, name, what


@pytest.mark.parametrize("case", REPORT_READS)
def test_the_report_and_load_sweep_show_a_broken_file_as_unreadable(completed_run, tmp_path,
                                                                    case):
    from rasp_hydra import api, report

    run, name, what = broken_copy(completed_run, tmp_path, case)
    copy_of(completed_run, tmp_path / "sweep" / "1")  # an intact neighbour
    for df in (report.collect_runs([tmp_path / "sweep"]), api.load_sweep(tmp_path / "sweep")):
        rows = {Path(d).name: (s, r) for d, s, r in zip(df["run_dir"], df["status"],
                                                        df["reason"], strict=True)}
        assert rows["1"][0] == "completed"
        status, reason = rows["0"]
        assert status == "unreadable" and reason.startswith(f"unreadable {name}: ")
        assert what in reason, reason


@pytest.mark.parametrize("case", MODEL_READS + ["history garbage row", "history binary"])
def test_load_run_names_the_broken_file(completed_run, tmp_path, case):
    from rasp_hydra import api
    from rasp_hydra.errors import BrokenFile

    run, name, what = broken_copy(completed_run, tmp_path, case)
    with pytest.raises(BrokenFile) as err:
        api.load_run(run)
    assert str(run / name) in str(err.value) and what in str(err.value)
    assert err.value.exit_code == 2


def _cli_cases(cases, fast):
    return [c if c in fast else pytest.param(c, marks=pytest.mark.slow) for c in cases]


@pytest.mark.parametrize("module", ["rasp_hydra.draw", "rasp_hydra.probe"])
@pytest.mark.parametrize("case", _cli_cases(MODEL_READS, ("record a list",
                                                          "config interpolation")))
def test_the_drawer_and_the_probes_name_the_broken_file(completed_run, tmp_path, case,
                                                        module):
    run, name, what = broken_copy(completed_run, tmp_path, case)
    args = ["--sequence", "abc"] if module == "rasp_hydra.draw" else ["--sequences", "5"]
    err = one_paragraph(cli(str(run), *args, cwd=tmp_path, module=module))
    assert str(run / name) in err and what in err


@pytest.mark.parametrize("case", _cli_cases(list(BROKEN), (
    "history binary", "epochs_run many", "config shape", "overrides garbled")))
def test_resume_names_the_broken_file_and_changes_nothing(completed_run, tmp_path, case):
    run, name, what = broken_copy(completed_run, tmp_path, case)
    before = snapshot(run)
    err = one_paragraph(cli("--resume", str(run), "train.epochs=4", cwd=tmp_path))
    assert str(run / name) in err and what in err
    assert snapshot(run) == before
