"""A run's model and task, read back from its directory for the drawer, the probes and
the notebook API: ``load_model`` (the model in eval mode, checked against the run), and
``open_model``, the same with every refusal one ``NoModelError`` paragraph. This module
changes when how a run's model is rebuilt changes.
"""

from __future__ import annotations

from rasp_hydra.errors import BrokenFile, UserError
from rasp_hydra.runs.checkpoints import check_fits, config_shape, record_shape
from rasp_hydra.runs.rundir import RunDir
from rasp_hydra.runs.sweeps import find_runs


class NoModelError(UserError):
    """A run directory that gives no model to read back; the message is one paragraph."""

def open_model(run_dir, which: str, verb: str, all_hint: str):
    """``load_model`` for a command that reads one run back (``verb``: "draw", "probe"),
    every refusal a NoModelError with one paragraph: not a directory, no run in it (with
    ``all_hint``, e.g. "add --all to draw every one", when runs lie below), no checkpoint
    (a diverged run that kept none says so), a checkpoint that cannot be read or is
    another run's."""
    rd = RunDir(run_dir)
    run_dir = rd.path
    if which not in ("auto", "best", "last"):
        raise NoModelError(f"--which must be auto, best or last, not {which!r}.")
    if not run_dir.is_dir():
        raise NoModelError(f"{run_dir} is not a directory. Give the directory of a run "
                           "(the one holding .hydra/, metrics.json and checkpoints/).")
    if not rd.is_run():
        below = [p for p in find_runs(run_dir) if p != run_dir]
        hint = (f" It holds {len(below)} runs below it (e.g. {below[0]}): give one of them, "
                f"or {all_hint}." if below else
                " Give the directory of a run: the one holding .hydra/, metrics.json and "
                "checkpoints/ (e.g. outputs/runs/DATE/TIME or outputs/multirun/DATE/TIME/N).")
        raise NoModelError(f"{run_dir} holds no run (no .hydra/config.yaml or metrics.json)."
                           + hint)
    if not any(rd.checkpoints().values()):
        try:
            m = rd.read_record()
        except BrokenFile as e:
            raise NoModelError(str(e)) from None
        status, reason = rd.status(m)
        if status == "diverged" and m.get("best_epoch") is None:
            raise NoModelError(f"{run_dir} has no model to {verb}: it diverged before any "
                               f"epoch ended with a finite loss ({reason}), so it kept no "
                               "checkpoint.")
        why = f": {reason}" if reason else (f": {m['error']}" if m.get("error") else "")
        raise NoModelError(f"{run_dir} holds no model to {verb}: no checkpoint (status "
                           f"{status}{why}); a run saves checkpoints/last.pt and best.pt after "
                           "its first epoch.")
    try:
        return load_model(run_dir, which)
    except (BrokenFile, FileNotFoundError) as e:  # names the file and the way out
        raise NoModelError(str(e)) from None
    except Exception as e:  # a checkpoint that does not load is the user's to know about
        raise NoModelError(f"cannot load the model of {run_dir}: {type(e).__name__}: "
                           f"{e}") from None

def load_model(run_dir, which: str = "auto", map_location="cpu"):
    """(model in eval mode, task, run config (a typed config.Config) or None, which_used)
    from a run directory.

    which: "best", "last", or "auto" (best if the run completed, else last if it exists,
    else best). A checkpoint that cannot be read raises CheckpointError naming it.
    """
    from rasp_hydra.model import Encoder

    rd = RunDir(run_dir)
    record = rd.read_record()
    if which == "auto":
        status = record.get("status")
        if status == "completed" or not rd.checkpoints()["last"]:
            which = "best"
        else:
            which = "last"
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best', 'last' or 'auto', got {which!r}")
    if not rd.checkpoints()[which]:
        raise FileNotFoundError(_no_checkpoint(rd, which, record))
    ckpt = rd.load_checkpoint(which, map_location)
    run_cfg = rd.config()
    task = _task_from(rd, run_cfg, ckpt)
    check_fits(rd.checkpoint_file(which), ckpt, task.name, record_shape(record))
    # metrics.json may be gone: the run's own config says the shape too
    check_fits(rd.checkpoint_file(which), ckpt, task.name,
               config_shape(rd.config_dict(), task))
    model = Encoder.from_config_dict(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, task, run_cfg, which

def _no_checkpoint(rd: RunDir, which: str, record: dict) -> str:
    """Why a run has no `which` checkpoint, and what to use instead."""
    run_dir, path = rd.path, rd.checkpoint_file(which)
    if record.get("status") == "diverged" and record.get("best_epoch") is None:
        return (f"{run_dir} has no model: it diverged before any epoch ended with a finite "
                f"loss ({record.get('reason')}), so it kept no checkpoint. Start a new run "
                "with a smaller optimizer.lr.")
    other = "last" if which == "best" else "best"
    if rd.checkpoints()[other]:
        return (f"{run_dir} has no {which} checkpoint ({path} does not exist), but it has "
                f"the {other} one: use it (--which {other} when drawing, which='{other}' in "
                "load_run).")
    return (f"{path} does not exist: the run has no checkpoint (status "
            f"{record.get('status', 'unknown')}); a run saves checkpoints/last.pt and "
            "best.pt after its first epoch.")

def _task_from(rd: RunDir, run_cfg, ckpt: dict):
    from rasp_hydra.config import MISSING
    from rasp_hydra.tasks import get_task, make_task, task_of_lang

    if run_cfg is not None and run_cfg.lang.family not in (None, MISSING):
        return task_of_lang(run_cfg.lang, rd.original_cwd())
    spec = ckpt.get("task_spec")
    if spec:
        return make_task(spec["family"], spec["size"], spec["bos"], spec["with_attns"])
    return get_task(ckpt["task"])
