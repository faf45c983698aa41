"""One run's probes: load its model, rebuild its program and data from its config, check
them (ProbeError) before any long work, label, fit and write; or every completed run below
a sweep directory. Its one reason to change: how a run is read for probing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rasp_hydra import runs
from rasp_hydra.errors import BrokenFile
from rasp_hydra.probe.fit import initial_model, probe_matrix, residual_streams
from rasp_hydra.probe.output import OUTPUT_FILES, summary_lines, write_outputs
from rasp_hydra.probe.program import (
    ProbeError,
    compiled_layers,
    program_labels,
    program_sops,
    program_task,
    sample_positions,
)

PROBES = runs.PROBES  # the folder under the run directory
DEFAULT_SEQUENCES = 500  # sequences of each split
MAX_POSITIONS = 4000  # positions per split at most (fit cost grows with them)


# ----------------------------------------------------------------------- a run

def _load(run_dir: Path, which: str):
    try:
        return runs.open_model(run_dir, which, "probe", "add --all to probe every completed one")
    except runs.NoModelError as e:
        raise ProbeError(str(e)) from None


def _seed(run_dir: Path, run_cfg) -> int:
    seed = None if run_cfg is None else run_cfg.train.seed
    return int(seed if seed is not None else runs.RunDir(run_dir).record().get("seed") or 0)


def prepare(run_dir, sequences: int = DEFAULT_SEQUENCES, sops: Sequence[str] | None = None,
            which: str = "auto", positions: int = MAX_POSITIONS) -> dict:
    """Everything a probe needs, checked (ProbeError) before any long work: the models,
    tasks, s-ops and the sampled positions of both splits."""
    from rasp_hydra.config import LangConfig

    run_dir = Path(run_dir)
    if int(sequences) < 1:
        raise ProbeError(f"--sequences is the number of sequences of each split to probe, at "
                         f"least 1; got {sequences}.")
    if int(positions) < 2:
        raise ProbeError(f"--positions is the most train positions to fit on (test: half), "
                         f"at least 2; got {positions}.")
    model, task, run_cfg, used = _load(run_dir, which)
    lang = LangConfig(family="?") if run_cfg is None else run_cfg.lang  # no config: defaults
    get = lambda key: getattr(lang, key)  # noqa: E731
    prog_task = program_task(task, max_len=int(get("max_len")))
    known = program_sops(prog_task)
    if sops:
        unknown = [s for s in sops if s not in known]
        if unknown:
            raise ProbeError(
                f"The program of {task.name!r} has no s-op {', '.join(map(repr, unknown))}; "
                f"the s-ops its output depends on are: {', '.join(known)}.")
        known = {s: known[s] for s in known if s in sops}
    data = {}
    for split, size_key in (("train", "train_size"), ("test", "test_size")):
        count = min(int(sequences), int(get(size_key)))
        tokens, lengths = task.sample(count, seed=int(get("data_seed")), split=split,
                                      min_len=int(get("min_len")), max_len=int(get("max_len")))
        limit = int(positions) if split == "train" else int(positions) // 2
        data[split] = sample_positions(task, prog_task, tokens, lengths, limit, seed=0)
    control = initial_model(model, _seed(run_dir, run_cfg))
    return {"run_dir": run_dir, "model": model, "control": control, "task": task,
            "prog_task": prog_task, "sops": known, "data": data, "checkpoint": used,
            "run_cfg": run_cfg}


def run_probes(prep: dict):
    """The probes' DataFrame for a prepared run (see ``prepare``)."""
    labels = {split: program_labels(prep["prog_task"], prep["sops"], pos)
              for split, pos in prep["data"].items()}
    _check_output(prep, labels)
    streams = {which: {split: residual_streams(prep[which], pos)
                       for split, pos in prep["data"].items()}
               for which in ("model", "control")}
    compiled = compiled_layers(prep["prog_task"], prep["sops"])
    return probe_matrix(streams["model"], streams["control"], labels, compiled,
                        prep["model"].cfg.layers)


def _check_output(prep: dict, labels: dict) -> None:
    """The program must compute the run's task: its output equals the targets at the
    probed positions (guards the alignment of program and model positions)."""
    task, prog_task = prep["task"], prep["prog_task"]
    output = prog_task.family_impl.output
    pos = prep["data"]["test"]
    values = program_labels(prog_task, {"_": output}, pos)["_"]
    targets = task.outputs(pos.tokens, pos.lengths)[pos.b, pos.i].tolist()
    want = [task.out_classes[t] for t in targets]
    if [str(v) for v in values] != want:
        raise ProbeError(f"The program {output.name!r} does not compute the task "
                         f"{task.name!r} on its test sequences, so its values cannot label "
                         "the model's positions.")


def probe_run(run_dir, sequences: int = DEFAULT_SEQUENCES, sops: Sequence[str] | None = None,
              which: str = "auto", write: bool = True, positions: int = MAX_POSITIONS) -> dict:
    """Probe one run; returns {"frame": DataFrame, "lines": summary, "files": {...}}."""
    if write:
        _refuse_links(runs.RunDir(run_dir))
    prep = prepare(run_dir, sequences, sops, which, positions)
    df = run_probes(prep)
    model, task = prep["model"], prep["task"]
    lines = summary_lines(df, model.cfg.layers)
    files = {}
    if write:
        c = model.cfg
        title = (f"{task.name}: {c.layers} layer{'s' * (c.layers != 1)}, {c.heads} "
                 f"head{'s' * (c.heads != 1)}, d_model {c.d_model} ({prep['checkpoint']} "
                 "checkpoint)")
        files = write_outputs(df, runs.RunDir(run_dir).probes, title)
    return {"frame": df, "lines": lines, "files": files, "checkpoint": prep["checkpoint"]}


def _refuse_links(rd) -> None:
    """ProbeError if probes/ or one of its files is a symlink: the table written there
    would land elsewhere (another run's probes). Asked first, so nothing is written."""
    links = rd.links_among(rd.probes / name for name in OUTPUT_FILES)
    if links:
        raise ProbeError(
            f"{rd.path} holds symlinks where the probes write their table and figure "
            f"({rd.links_text(links)}): the probes write only inside the run directory, and "
            "through a link they would change files elsewhere, so nothing was written. "
            "Replace each link by a copy of what it points to or remove it, then probe "
            "again.")


def probe_all(root, sequences: int = DEFAULT_SEQUENCES, sops: Sequence[str] | None = None,
              which: str = "auto", echo=print, positions: int = MAX_POSITIONS) -> dict:
    """Probe every completed run below root; the others are passed over, with why."""
    root = Path(root)
    if not root.is_dir():
        raise ProbeError(f"{root} is not a directory. Give a sweep directory (e.g. "
                         "outputs/multirun/DATE/TIME).")
    found = runs.find_runs(root)
    if not found:
        raise ProbeError(f"{root} holds no run: no directory below it has .hydra/config.yaml "
                         "or metrics.json.")
    probed, passed = [], []
    for run_dir in found:
        try:
            status = runs.RunDir(run_dir).read_record().get("status", "unknown")
        except BrokenFile as e:
            status = f"unreadable ({e.reason})"
        if status != "completed":
            passed.append((run_dir, f"status {status}"))
            echo(f"passed over {run_dir}: status {status}")
            continue
        try:
            res = probe_run(run_dir, sequences, sops, which, positions=positions)
        except ProbeError as e:
            passed.append((run_dir, str(e)))
            echo(f"passed over {run_dir}: {e}")
            continue
        probed.append((run_dir, res))
        echo(f"{run_dir}:\n" + "\n".join(res["lines"]) + f"\nwrote {res['files']['csv']}, "
             f"{res['files']['png'].name}\n")
    return {"probed": probed, "passed": passed}
