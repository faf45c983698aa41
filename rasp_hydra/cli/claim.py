"""Claiming a run directory before Hydra writes anything into it.

To claim a directory is to take its lock (`RunDir.lock`), compare this invocation's config
with the run's own if the directory already holds one, and decide where Hydra saves this
invocation's composition: `.hydra/` for the first, `invocations/NNN/` for every later one,
nowhere when the claim is refused (the directory is then left untouched).

Why in a resolver: Hydra 1.3's `run_job` (hydra/core/utils.py) creates the job's
directory, then saves the composition into `hydra.output_subdir`, and only then calls the
callbacks' `on_job_start` and the task function. The one thing of ours that runs between
the two, for a single run and under every launcher (joblib, the job-process launcher of
hydra_plugins/, submitit), is the resolution of `hydra.output_subdir` itself, so
conf/config.yaml sets it to `${rasp_hydra.claim:${hydra.runtime.output_dir}}`, the resolver
`claim_run_dir`. A resolver answers only a string: the claim itself (the lock held, or why
it was refused) waits in `CLAIMS`, this process's one `Claims`, until the job takes it
(`CLAIMS.take`); a sweep's job resolves and runs in one process (a worker, or the child the
job-process launcher forks), so it finds its claim there. The resolver is a plain function
of this module, not a method, because the launchers send Hydra's resolvers to their
workers by pickling, and a function is sent by name, so it reaches the workers' `CLAIMS`
rather than a copy.
"""

from __future__ import annotations

import errno
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rasp_hydra.config import RESUME_SAFE_KEYS, Checkpoint
from rasp_hydra.errors import UserError

MIN_FREE_BYTES = 1 << 20  # a claim refuses a file system with less free space than this


@dataclass
class Claim:
    """This process's hold on one run directory, from Hydra's first look until the job ends."""

    run_dir: Path
    subdir: str | None = None  # where Hydra saves this invocation's composition
    lock: Any = None
    refusal: str | None = None  # why this invocation may not touch the directory
    locked: bool = False
    existing: bool = False  # the directory held a run before this invocation
    before: frozenset | None = None  # the names in the directory when it was claimed
    overrides: list = field(default_factory=list)
    # a resume: how it continues the run (runs.resume.continuation), and the run's thread
    # count before it when that differs from this invocation's
    continuation: str | None = None
    threads_before: int | None = None


class Claims:
    """This process's claims, by run directory: made by the resolver, taken by the job."""

    def __init__(self):
        self._made: dict[str, Claim] = {}
        # the outermost directory Hydra creates for a single run, if any (noted by
        # hydra_job.RunDirCheck before Hydra creates it): a refused config removes it
        self.new_since_start: Path | None = None

    def resolve(self, output_dir: str, root) -> str | None:
        """Claim `output_dir` and say where Hydra saves the composition (None: nowhere).

        Never raises (an exception here would surface as an interpolation error): the
        outcome is kept for the job, which reports it. Hydra resolves the key twice, so
        the first answer is remembered.
        """
        if output_dir in self._made:
            return self._made[output_dir].subdir
        claim = self._made[output_dir] = Claim(Path(output_dir))
        try:
            _claim(claim, root)
        except UserError as err:  # a broken file of the run (BrokenFile): its paragraph
            claim.refusal, claim.subdir = str(err), None
        except OSError as err:  # a full disk or a read-only file system: leave nothing behind
            claim.refusal = _unwritable(output_dir, err)
            claim.subdir = None
        except Exception as err:  # pragma: no cover - reported by the job
            claim.refusal = f"could not claim {output_dir}: {type(err).__name__}: {err}"
            claim.subdir = None
        return claim.subdir

    def take(self, run_dir: Path) -> Claim:
        """The claim the resolver made for run_dir, or one made now (a user who set
        hydra.output_subdir themselves, or a launcher that never resolved it)."""
        from rasp_hydra import runs

        claim = self._made.pop(str(run_dir), None)
        if claim is None:
            rd = runs.RunDir(run_dir)
            claim = Claim(run_dir, existing=rd.has_run(), before=rd.names())
            try:
                claim.lock = rd.lock().acquire().announce()
            except runs.RunLocked as err:
                claim.refusal, claim.locked = str(err), True
        return claim


CLAIMS = Claims()


def claim_run_dir(output_dir: str, *, _root_) -> str | None:
    """The `rasp_hydra.claim` resolver of `hydra.output_subdir` (registered by __main__):
    claim `output_dir` before Hydra writes into it."""
    return CLAIMS.resolve(output_dir, _root_)


def _claim(claim: Claim, root) -> None:
    """Take the lock, then decide where the composition goes (`claim.subdir`) or why this
    invocation may not touch the directory (`claim.refusal`, the lock released)."""
    from omegaconf import OmegaConf

    from rasp_hydra import runs

    rd = runs.RunDir(claim.run_dir)
    # noted first: whatever goes wrong below, a refusal removes only what this one created
    claim.before = rd.names()
    rd.refuse_symlinks()  # before run.lock is opened: it may be one of them
    try:
        claim.lock = rd.lock().acquire()
    except runs.RunLocked as err:
        claim.refusal, claim.locked = str(err), True
        return
    claim.overrides = list(OmegaConf.to_container(root.hydra.overrides.task))
    original = rd.original_config()
    claim.existing = bool(original) or rd.has_run()
    free = shutil.disk_usage(claim.run_dir).free
    if free < MIN_FREE_BYTES:  # Hydra's own writes would fail next, with a traceback
        raise OSError(errno.ENOSPC, f"{free} bytes free, less than {MIN_FREE_BYTES} needed")
    if not claim.existing:
        claim.lock.announce()
        claim.subdir = rd.hydra_subdir
        return
    current = OmegaConf.to_container(root, resolve=False, enum_to_str=True)
    current.pop("hydra", None)
    differ = runs.config_differences(original, current, RESUME_SAFE_KEYS)
    torn = _torn_config(rd, original, current, differ, claim.overrides)
    if torn:
        claim.refusal = torn
    elif differ:
        shown = "; ".join(f"{k}: {_value_at(original, k)!r} -> {_value_at(current, k)!r}"
                          for k in differ)
        claim.refusal = (
            f"{claim.run_dir} already holds a run whose config differs from this one in "
            f"{shown}. A run directory keeps one config for its whole history, so nothing was "
            "written. To train with the new values, start a new run (leave out hydra.run.dir "
            f"or --resume); to continue this run, use --resume {claim.run_dir} without those "
            f"overrides. On resume only these may change: {', '.join(RESUME_SAFE_KEYS)}.")
    elif not root.train.resume and rd.has_run():
        claim.refusal = (
            f"{claim.run_dir} already holds a run and train.resume=false would train it again "
            "from scratch over its checkpoints, so nothing was written. Start a new run "
            "directory, or continue this one with --resume.")
    elif root.train.resume:  # never train finished epochs again from nothing
        resume_from = Checkpoint(root.train.resume_from).value
        claim.refusal = rd.resume_problem(resume_from) or _threads_refusal(claim, root, rd,
                                                                            resume_from)
    if claim.refusal:
        claim.lock.release()
        return
    claim.lock.announce()
    rd.remove_stale_tmp()  # of a writer that was killed mid-write
    claim.subdir = rd.next_invocation_dir()


def _threads_refusal(claim: Claim, root, rd, resume_from: str) -> str | None:
    """Note how this resume continues the run; a resume from last.pt on another thread
    count than the run's is refused (one paragraph) unless train.inexact_resume=true."""
    from hydra.types import RunMode

    from rasp_hydra.job import job_threads

    given = root.train.num_threads
    threads = job_threads(given, root.hydra.mode == RunMode.MULTIRUN, root.hydra.get("launcher"))
    claim.continuation = rd.continuation(threads, resume_from)
    if claim.continuation != "inexact" or resume_from != "last":
        return None
    claim.threads_before = before = rd.threads_before()
    if root.train.inexact_resume:
        return None
    now = (f"train.num_threads={given}" if given else
           "train.num_threads=null, this job's share of the cores")
    return (f"{claim.run_dir} trained on {before} torch thread{'s' if before != 1 else ''}, "
            f"and this resume would train on {threads} ({now}). Torch's CPU results depend "
            "on the thread count in their last bits, so the run would not end bit for bit as "
            "an uninterrupted one, and nothing was written. To continue it exactly, add "
            f"train.num_threads={before}; to continue on {threads} anyway, add "
            "train.inexact_resume=true (the run is then recorded as an inexact "
            "continuation).")


def remove_traces(claim: Claim) -> None:
    """A refused new run leaves nothing (RunDir.remove_refused_traces)."""
    from rasp_hydra import runs

    runs.RunDir(claim.run_dir).remove_refused_traces(claim.lock, claim.before)


def _unwritable(output_dir, err: OSError) -> str:
    """The claim's paragraph for a file of the run directory it cannot write."""
    import errno as codes

    where = err.filename or output_dir
    if err.errno in (codes.EISDIR, codes.ENOTDIR):
        fix = (f"{where} is in the way of a file the run keeps there (a folder where a file "
               "goes, or a file where a folder goes): move it away")
    elif err.errno in (codes.EROFS, codes.EACCES, codes.EPERM):
        fix = "Give a writable hydra.run.dir (or make this one writable)"
    else:
        fix = "Free some space (or give a writable hydra.run.dir)"
    return (f"{where} cannot be written ({err.strerror or err}), so nothing was written "
            f"there. {fix}, then run again.")


# the groups every composition holds: a saved config without one was cut short or edited
SAVED_GROUPS = ("lang", "model", "optimizer", "schedule", "train")


def _torn_config(rd, original: dict, current: dict, differ: list[str],
                 overrides: list[str]) -> str | None:
    """Why the saved config cannot be the run's own, as one paragraph: a group it lacks, or
    (when this invocation gives the run's own overrides, as --resume does) values that
    differ from what they compose where this invocation changes nothing; None if it can
    be."""
    config = rd.config_file
    way_out = (f"Put the run's own config back (a resume's copy is in {rd.path}/invocations/"
               "NNN/.hydra/config.yaml, if it was ever resumed), or start a new run.")
    missing = [g for g in SAVED_GROUPS if g not in original]
    if missing:
        return (f"{config} lacks {', '.join(missing)}, which every saved config holds: it was "
                "cut short (a full disk?) or edited, so the run's config is not known and "
                f"nothing was written. {way_out}")
    saved = set(rd.overrides() or ())
    if not saved <= set(overrides):  # not the run's own command (--resume gives it): the
        return None                  # usual paragraph names what this one changes
    given = [o.lstrip("+~").split("=", 1)[0] for o in overrides if o not in saved]
    unexplained = [k for k in differ
                   if not any(k == g or k.startswith(g + ".") for g in given)]
    if not differ or unexplained != differ:
        return None  # this invocation's own overrides: the usual paragraph names them
    shown = "; ".join(f"{k}: {_value_at(original, k)!r} where they compose "
                      f"{_value_at(current, k)!r}" for k in differ)
    keep = " ".join(f"{k}={_value_at(original, k)}" for k in differ)
    return (f"{config} disagrees with the run's own overrides (.hydra/overrides.yaml) in "
            f"{shown}, and this invocation changes none of them: the file was edited or cut "
            "short, or this version's defaults differ from those that wrote it, so nothing was "
            f"written. {way_out} If the file is right, give its values: --resume {rd.path} "
            f"{keep}.")


def _value_at(config: dict, key: str):
    """config["a"]["b"] for key "a.b"; None where a key is missing."""
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config
