"""Linear probes of a program's s-ops (rasp_hydra/probe/) on a real tiny run: the labels
are the program's own values, tokens are decodable at layer 0, the control is the run's
untrained model; the command line's outputs and its errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rasp_hydra import probe, runs
from rasp_hydra.tasks import get_task
from tests.conftest import cli

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT / "docs" / "results" / "mirror" / "mirror.rasp"
FAST = ["--sequences", "40", "--positions", "300"]  # a few hundred positions: seconds


@pytest.fixture(scope="module")
def mirror_run(tmp_path_factory) -> Path:
    """mirror_2 (docs/results/mirror/mirror.rasp), 2 layers, trained a few epochs."""
    run_dir = tmp_path_factory.mktemp("probe") / "mirror"
    cli("lang=rasp", f"lang.program={MIRROR}", "lang.size=2", "model.layers=2",
        "model.d_model=16", "lang.max_len=8", "lang.train_size=400", "lang.valid_size=50",
        "lang.test_size=60", "train.epochs=3", "optimizer.lr=0.01", "train.seed=3",
        f"hydra.run.dir={run_dir}", cwd=run_dir.parent, check=True, timeout=600)
    return run_dir


def test_the_cli_writes_the_matrix_and_a_line_per_sop(mirror_run):
    proc = cli(str(mirror_run), *FAST, module="rasp_hydra.probe", cwd=mirror_run.parent,
               timeout=600)
    assert proc.returncode == 0, proc.stderr
    header, *lines = proc.stdout.splitlines()
    assert header.split() == ["s-op", "layer", "0", "1", "2", "|", "layer", "0", "1", "2",
                              "(layer", "0:", "the", "embedding)"]
    assert [ln.split()[0] for ln in lines[:4]] == ["tokens", "indices", "length", "mirror"]
    assert "tokens   compiled 0" in lines[0] and "decodable from layer 0" in lines[0]
    first, second = header.index("layer"), header.index("layer", header.index("|"))
    for line in lines[:4]:  # "trained"/"control" end where "layer" ends: scores under columns
        assert (line.index("trained"), line.index("control")) == (first - 2, second - 2)
    import pandas as pd

    df = pd.read_csv(mirror_run / "probes" / "probes.csv")
    assert list(df.columns) == probe.COLUMNS
    assert (mirror_run / "probes" / "probes.png").stat().st_size > 0
    assert len(df) == 4 * 3  # 4 s-ops x (embedding + 2 layers)
    compiled = df.groupby("sop").compiled_layer.first().to_dict()
    assert compiled == {"tokens": 0, "indices": 0, "length": 1, "mirror": 2}
    tokens0 = df[(df.sop == "tokens") & (df.layer == 0)].iloc[0]
    assert tokens0.kind == "categorical" and tokens0.metric == "accuracy"
    assert tokens0.trained == 1.0 and tokens0.decodable
    assert (df.n_train <= 300).all() and (df.n_test <= 150).all()
    assert (df.difference - (df.trained - df.control)).abs().max() < 1e-3


def test_labels_are_the_programs_own_values(mirror_run):
    from rasp_hydra.rasp import load

    prep = probe.prepare(mirror_run, sequences=30, positions=200)
    prog = load(MIRROR)
    task = prep["task"]
    for split, pos in prep["data"].items():
        labels = probe.program_labels(prep["prog_task"], prep["sops"], pos)
        words = task.decode_inputs(pos.tokens, pos.lengths)
        for k, (b, i) in enumerate(zip(pos.b.tolist(), pos.i.tolist(), strict=True)):
            for name, values in labels.items():
                assert values[k] == prog.eval(name, words[b])[i], (split, name, words[b], i)
    assert set(labels) == {"tokens", "indices", "length", "mirror"}


def test_the_control_is_the_runs_untrained_model(mirror_run):
    from rasp_hydra.config import OptimizerConfig, ScheduleConfig, TrainConfig
    from rasp_hydra.data import build_splits
    from rasp_hydra.train import Trainer

    prep = probe.prepare(mirror_run, sequences=30, positions=200)
    model, control = prep["model"], prep["control"]
    # the weights training started from: the Trainer builds its model the same way
    task = prep["task"]
    splits = build_splits(task, sizes={"train": 10, "valid": 2, "test": 2}, max_len=8)
    trainer = Trainer(task, splits, model.cfg, OptimizerConfig(), ScheduleConfig(),
                      TrainConfig(seed=3), torch.device("cpu"), mirror_run / "unused")
    start = trainer.model.state_dict()
    for name, tensor in control.state_dict().items():
        assert torch.equal(tensor, start[name]), name
    trained = model.state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in control.state_dict().items())
    df = probe.run_probes(prep)
    assert (df.trained - df.control).abs().max() > 0.01


def test_hidden_states_are_the_forward_passes(mirror_run):
    model = runs.load_model(mirror_run)[0]
    tokens = torch.tensor([[0, 1, 1, 0, 3], [1, 0, 1, 3, 3]])
    lengths = torch.tensor([4, 3])
    hs = model.hidden_states(tokens, lengths)
    assert len(hs) == model.cfg.layers + 1
    logits = model(tokens, lengths)[0]
    assert torch.allclose(model.classifier(hs[-1]), logits, atol=1e-6)


def test_run_probe_in_the_notebook_api(mirror_run):
    from rasp_hydra.api import load_run

    df = load_run(mirror_run).probe(sequences=20, positions=150, sops=["length"])
    assert set(df.sop) == {"length"} and list(df.layer) == [0, 1, 2]


@pytest.mark.parametrize("name", ["reverse_10", "reverse_10_bos", "hist_10_bos", "hist2_10",
                                  "sort_26_bos", "sort_by_freq_10_bos", "dyck1_ptf",
                                  "dyck2_ptf_bos"])
def test_built_in_tasks_are_probed_through_their_shipped_programs(name):
    task = get_task(name)
    prog_task = probe.program_task(task, max_len=12)
    tokens, lengths = task.sample(50, seed=1, split="test", max_len=12)
    pos = probe.sample_positions(task, prog_task, tokens, lengths, limit=10_000, seed=0)
    assert not bool((pos.i == 0).any()) if task.bos else len(pos.b) == int(lengths.sum())
    out = prog_task.family_impl.output
    values = probe.program_labels(prog_task, {"out": out}, pos)["out"]
    targets = task.outputs(tokens, lengths)[pos.b, pos.i].tolist()
    assert [str(v) for v in values] == [task.out_classes[t] for t in targets]
    assert "tokens" in probe.program_sops(prog_task)


def test_a_family_without_program_is_refused():
    with pytest.raises(probe.ProbeError, match="no RASP program"):
        probe.program_task(get_task("dyck3_ptf"))


# ----------------------------------------------------------------------------- errors

def _copy(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("probes"))
    return dest


def test_an_unknown_sop_is_refused_by_the_cli_listing_the_known_ones(mirror_run, tmp_path):
    run = _copy(mirror_run, tmp_path / "run")
    proc = cli(str(run), "--sops", "length,flipped", module="rasp_hydra.probe", cwd=tmp_path,
               timeout=600)
    assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
    assert "no s-op 'flipped'" in proc.stderr and "Traceback" not in proc.stderr
    assert "tokens, indices, length, mirror" in proc.stderr
    assert not (run / "probes").exists()


def test_errors_are_one_paragraph_exit_2_and_write_nothing(mirror_run, tmp_path, capsys):
    def refused(*args, match):
        assert probe.main(list(args)) == 2
        err = capsys.readouterr().err
        assert match in err and err.startswith("error: ") and err.count("\n") == 1, err
        return err

    run = _copy(mirror_run, tmp_path / "run")
    refused(str(run), "--sequences", "0", match="--sequences")
    # a run with no model: it never finished an epoch
    empty = _copy(mirror_run, tmp_path / "empty")
    shutil.rmtree(empty / "checkpoints")
    refused(str(empty), match="holds no model to probe")
    # a run whose config was changed after training (to Dyck-3, which has no program):
    # its checkpoint is refused as another run's (test_a_family_without_program_is_refused
    # checks the program rule itself)
    other = _copy(mirror_run, tmp_path / "other")
    cfg = OmegaConf.load(other / ".hydra" / "config.yaml")
    cfg.lang = {**OmegaConf.to_container(cfg.lang), "family": "dyck", "size": 3,
                "program": None}
    OmegaConf.save(cfg, other / ".hydra" / "config.yaml")
    refused(str(other), match="is not a checkpoint of this run")
    refused(str(tmp_path / "nowhere"), match="is not a directory")
    assert not any((tmp_path / d / "probes").exists() for d in ("run", "empty", "other"))


@pytest.mark.parametrize("link", ["probes", "probes/probes.csv"])
def test_a_linked_probes_folder_or_table_is_refused_before_probing(mirror_run, tmp_path, link):
    # through the link the table of another run would be overwritten
    run = _copy(mirror_run, tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "probes.csv").write_text("another run's probes\n")
    target = elsewhere if link == "probes" else elsewhere / "probes.csv"
    (run / link).parent.mkdir(exist_ok=True)
    (run / link).symlink_to(target)
    proc = cli(str(run), *FAST, module="rasp_hydra.probe", cwd=tmp_path, timeout=600)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{link} -> {target}" in proc.stderr and "nothing was written" in proc.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["probes.csv"]
    assert (elsewhere / "probes.csv").read_text() == "another run's probes\n"
    # the way out: the link removed, then the probes write inside the run
    (run / link).unlink()
    cli(str(run), *FAST, module="rasp_hydra.probe", cwd=tmp_path, timeout=600, check=True)
    assert (run / "probes" / "probes.csv").is_file() and not (run / "probes").is_symlink()


def test_all_probes_every_completed_run_and_passes_over_the_rest(mirror_run, tmp_path):
    sweep = tmp_path / "sweep"
    _copy(mirror_run, sweep / "0")
    broken = _copy(mirror_run, sweep / "1")
    shutil.rmtree(broken / "checkpoints")
    running = _copy(mirror_run, sweep / "2")
    record = runs.read_metrics(running)
    runs.write_metrics(running, {**record, "status": "running"})
    proc = cli(str(sweep), "--all", "--sops", "tokens", *FAST, module="rasp_hydra.probe",
               cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "probed 1 runs, passed over 2" in proc.stdout
    assert "status running" in proc.stdout and "holds no model" in proc.stdout
    assert (sweep / "0" / "probes" / "probes.csv").is_file()
    assert not (sweep / "2" / "probes").exists()


def test_summary_lines_name_the_layers_above_their_scores():
    import pandas as pd

    rows = [dict(sop=sop, kind=kind, metric=metric, baseline=base, compiled_layer=compiled,
                 layer=layer, trained=[-0.25, 1.0][layer], control=0.5, decodable=layer == 1,
                 over_control=True)
            for sop, kind, metric, base, compiled in [
                ("tokens", "categorical", "accuracy", 0.5, 0), ("length", "numeric", "r2", 0.0, 1),
                ("k", "constant", "accuracy", 1.0, 1)]
            for layer in (0, 1)]
    assert probe.summary_lines(pd.DataFrame(rows), layers=1) == [
        "s-op                                       layer     0     1 |   layer     0     1"
        "  (layer 0: the embedding)",
        "tokens  compiled 0  acc (baseline 0.50): trained -0.25  1.00 | control  0.50  0.50"
        "  decodable from layer 1",
        "length  compiled 1  R2:                  trained -0.25  1.00 | control  0.50  0.50"
        "  decodable from layer 1",
        "k       compiled 1  one value on the train sequences: not probed"]


def test_a_test_value_never_seen_in_train_is_left_out_and_counted():
    # a categorical probe cannot name a value its train positions never show: such test
    # positions are left out of the score (column "unseen"), not scored as errors (they
    # capped a compiled model, which holds every value exactly, below 1)
    import numpy as np

    from rasp_hydra.probe.fit import probe_matrix
    train = [0, 1, 2] * 10
    test = [0, 1, 2] * 5 + [3, 3]  # 3: never at a train position
    onehot = lambda ys: np.eye(4, dtype=np.float32)[ys]  # noqa: E731  an exact residual
    streams = {"train": [onehot(train)], "test": [onehot(test)]}
    df = probe_matrix(streams, streams, {"train": {"s": train}, "test": {"s": test}},
                      {"s": 0}, layers=0)
    row = df.iloc[0]
    assert (row["unseen"], row["n_test"], row["values"]) == (2, 15, 4)
    assert row.trained == 1.0 and row.baseline == pytest.approx(1 / 3)
