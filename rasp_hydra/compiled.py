"""A compiled model (``rasp_hydra.rasp.weights``) written as a run: the run directory of a
program task whose model was built, not trained. Its config is the program task a trained
run of the same task has (``lang=rasp``, the same data sizes and seed), its record has
status ``compiled``, arch ``compiled`` (so the report shows it as a cell of its own, never
among a trained cell's replicates), the budget, the residual width, the parameters, the
check against the evaluator, and the final figures on the task's splits computed by the
ordinary evaluation (``train.trainer.final_evaluation``, as a trained run's best model).
It sits outside ``rasp/`` so that the language package imports nothing of runs/ or train/.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

ARCH = "compiled"  # the arch label of a compiled run in metrics.json and the report


def lang_config(program_path, output_name: str, vocab, max_len: int, bos: bool, **sizes):
    """The LangConfig of the program task the compiled model computes (``sizes``: any
    other LangConfig field, e.g. ``train_size=2000``)."""
    from rasp_hydra.config import LangConfig

    alphabet = vocab if isinstance(vocab, str) else vocab if isinstance(vocab, int) \
        else list(vocab)
    fields = {"family": "rasp", "program": str(Path(program_path).resolve()),
              "output": output_name, "bos": bool(bos), "max_len": int(max_len),
              "with_attns": False, **sizes}
    if isinstance(alphabet, int):
        fields["size"] = alphabet
    else:
        fields["alphabet"] = alphabet
    return LangConfig(**fields)


def evaluate_compiled(model, lang) -> tuple[object, dict, dict, dict]:
    """(task, final, attention_match, attention_uniform) of ``model`` on the splits of
    ``lang`` that a trained run builds (``job.build_data``), scored by the final
    evaluation of training with every compiled head measured."""
    import torch

    from rasp_hydra.config import TrainConfig
    from rasp_hydra.job import build_data, resolve_task
    from rasp_hydra.train.losses import present_heads
    from rasp_hydra.train.trainer import final_evaluation

    task = resolve_task(lang)
    splits, _ = build_data(task, lang)
    measured = present_heads(task.selector_heads, model.cfg)
    final, match, uniform = final_evaluation(model, task, splits,
                                             TrainConfig().eval_batch_size,
                                             torch.device("cpu"), (), measured)
    return task, final, match, uniform


def write_compiled_run(w, check, out, program_path, output_name: str, vocab, max_len: int,
                       bos: bool, seconds: float, **sizes) -> dict:
    """Evaluate the compiled model ``w`` (a ``weights.Weights``) on its task's splits and
    write its run directory beside ``out``, renamed into place (a reader never sees half
    of it); ``out`` must not exist or be empty. Returns the record."""
    from rasp_hydra import runs
    from rasp_hydra.rasp.weights import CompileError

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CompileError(f"--out {out} exists and is not empty; give a new directory "
                           "(nothing was written).")
    lang = lang_config(program_path, output_name, vocab, max_len, bos, **sizes)
    model = w.model.eval()
    task, final, match, uniform = evaluate_compiled(model, lang)
    if task.name != w.task.name:  # pragma: no cover - the two builds of one task
        raise CompileError(f"the compiled task {w.task.name!r} is not the config's "
                           f"{task.name!r}")
    cfg = model.cfg
    params = sum(p.numel() for p in model.parameters())
    record = runs.RunRecord(
        status="compiled", task=task.name, family=task.family, bos=bool(task.bos),
        with_attns=False, arch=ARCH, layers=cfg.layers, heads=cfg.heads,
        d_model=cfg.d_model, ff=cfg.ff, dropout=0.0, positions="learned",
        predicted_layers=task.predicted_layers, predicted_heads=task.predicted_heads,
        params=params, device="cpu", precision="fp32", final=final, attention_match=match,
        attention_uniform=uniform).to_dict()
    record.update({
        "budget": {"layers": w.compiled.layers, "heads": list(w.compiled.heads)},
        "residual_width": w.residual_width, "checked_inputs": check.inputs,
        "checked_positions": check.positions, "checked_exhaustive": check.exhaustive,
        "mismatches": check.mismatches, "compile_seconds": round(seconds, 3)})
    config = {"lang": dataclasses.asdict(lang),
              "model": {"layers": cfg.layers, "heads": cfg.heads, "d_model": cfg.d_model,
                        "ff": cfg.ff, "dropout": 0.0, "positions": "learned",
                        "max_len": cfg.max_len, "norm": "none"}}
    ckpt = {"model": model.state_dict(), "model_config": model.config_dict(),
            "task": task.name,
            "task_spec": {"family": task.family, "size": int(task.size),
                          "bos": bool(task.bos), "with_attns": False},
            "epoch": 0}
    _write(out, config, record, ckpt)
    return record


def _write(out: Path, config: dict, record: dict, ckpt: dict) -> None:
    import yaml

    from rasp_hydra import runs

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a run directory is for every reader
    try:
        rd = runs.RunDir(tmp)
        rd.config_file.parent.mkdir(parents=True, exist_ok=True)
        rd.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        rd.write_record(record)
        rd.save_checkpoint("best", ckpt)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
