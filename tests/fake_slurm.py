"""A one-machine SLURM, just enough for submitit's SlurmExecutor, for
tests/test_submitit_slurm.py: `install(bin_dir)` writes `sbatch`, `srun`, `sacct` and
`scancel` there (put bin_dir first on PATH); each runs this file with its state folder
(bin_dir/slurm) as first argument.

What submitit calls, and what this answers (submitit/slurm/slurm.py):

- `sbatch FILE` -> "Submitted batch job N". The script is copied at once (submitit moves
  the file after sbatch returns) and run by `bash`, in the background, once per index of
  its `#SBATCH --array=0-K%P` (all at once: no throttling) or once, with SLURM_JOB_ID,
  SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID, SLURM_NTASKS, SLURM_JOB_NUM_NODES and
  SLURM_JOB_NODELIST set, in the submitting environment (sbatch's default
  `--export=ALL`), its own output into `#SBATCH --output/--error`. One task per job only.
  A job starts once the folder of its output exists (submitit makes it after sbatch
  answers), or ends FAILED after START_PATIENCE seconds; the fake's own errors go to
  bin_dir/slurm/JOB.log.
- `srun --unbuffered --output OUT --error ERR CMD...` (the script's command line) ->
  CMD with SLURM_PROCID, SLURM_LOCALID and SLURM_NODEID set and its streams appended to
  OUT and ERR, `%A %a %j %t` expanded as SLURM does.
- `sacct -o FIELDS --parsable2 -j N ...` -> a header and one line per job (`N_I` for an
  array's index I): PENDING, RUNNING, then COMPLETED (exit 0), FAILED (another exit code or
  a signal) or CANCELLED (after scancel).
- `scancel ID [--signal SIG]` -> SIG (SIGTERM by default) to the process group of the
  job's `bash`; without --signal the job ends CANCELLED.

`processes(bin_dir)` lists the process groups still running, for a test's clean-up.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ("sbatch", "srun", "sacct", "scancel")
FIRST_ID = 4100
START_PATIENCE = 60  # seconds a job waits in the queue for its output's folder


def install(bin_dir: Path) -> Path:
    """The four commands in `bin_dir` (made if need be); returns it."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state = bin_dir / "slurm"
    (state / "jobs").mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        path = bin_dir / name
        path.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in (
            sys.executable, str(Path(__file__).resolve()), str(state), name)) + ' "$@"\n')
        path.chmod(0o755)
    return bin_dir


def processes(bin_dir: Path) -> list[int]:
    """The process groups of the jobs not ended yet."""
    return [job["pgid"] for job in _jobs(bin_dir / "slurm").values()
            if job.get("pgid") and job["state"] in ("PENDING", "RUNNING")]


def _jobs(state: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((state / "jobs").glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):  # being replaced: os.replace makes that brief
            continue
    return out


def _update(root: Path, key: str, **fields) -> dict:
    path = root / "jobs" / f"{key}.json"
    with open(root / "lock", "a") as lock:  # a concurrent update must not be lost
        fcntl.flock(lock, fcntl.LOCK_EX)
        job = json.loads(path.read_text()) if path.exists() else {}
        job.update(fields)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job))
        os.replace(tmp, path)
    return job


def _new_ids(state: Path, n: int) -> int:
    with open(state / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        counter = state / "next_id"
        first = int(counter.read_text()) if counter.exists() else FIRST_ID
        counter.write_text(str(first + n))
    return first


def _expand(pattern: str, env: dict) -> str:
    for tag, var in (("%A", "SLURM_ARRAY_JOB_ID"), ("%a", "SLURM_ARRAY_TASK_ID"),
                     ("%j", "SLURM_JOB_ID")):
        pattern = pattern.replace(tag, env.get(var, env["SLURM_JOB_ID"]))
    return pattern.replace("%t", env.get("SLURM_PROCID", "0"))


def sbatch(state: Path, args: list[str]) -> int:
    (script,) = args
    options = {}
    for line in Path(script).read_text().splitlines():
        m = re.match(r"#SBATCH --([\w-]+)(?:=(.*))?$", line)
        if m:
            options[m[1]] = shlex.split(m[2])[0] if m[2] else ""
    tasks = int(options.get("nodes", 1)) * int(options.get("ntasks-per-node", 1))
    if tasks != 1:
        print(f"fake sbatch: {tasks} tasks asked, one task per job only", file=sys.stderr)
        return 1
    array = options.get("array")
    indices = (list(range(int(array.split("%")[0].split("-")[0]),
                          int(array.split("%")[0].split("-")[1]) + 1))
               if array else [None])
    first = _new_ids(state, len(indices) + 1)
    copy = state / f"{first}.sh"  # as SLURM does: later changes to FILE do not count
    copy.write_text(Path(script).read_text())
    for n, index in enumerate(indices):
        env = {**os.environ, "SLURM_JOB_ID": str(first + n + (index is not None)),
               "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1",
               "SLURM_JOB_NODELIST": "localhost", "SLURM_SUBMIT_DIR": os.getcwd()}
        key = str(first)
        if index is not None:
            env.update(SLURM_ARRAY_JOB_ID=str(first), SLURM_ARRAY_TASK_ID=str(index),
                       SLURM_ARRAY_TASK_COUNT=str(len(indices)))
            key = f"{first}_{index}"
        _update(state, key, state="PENDING")
        with open(state / f"{key}.log", "ab") as log:  # the fake's own errors, if any
            subprocess.Popen(  # detached, as a batch job outlives the sbatch that queued it
                [sys.executable, __file__, str(state), "_run", key, str(copy),
                 options.get("output", "slurm-%j.out"), options.get("error", "")],
                env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log)
    print(f"Submitted batch job {first}")
    return 0


def _run(state: Path, args: list[str]) -> int:
    """A batch job: its script run to the end, its state kept for sacct."""
    key, script, out, err = args
    env = dict(os.environ)
    out, err = _expand(out, env), _expand(err, env) if err else None
    # A queued job starts later: submitit makes the job's folder, where its output goes,
    # only once sbatch has answered. A real queue's wait, bounded; then SLURM's answer to
    # an output it cannot open: FAILED.
    deadline = time.monotonic() + START_PATIENCE
    while not all(Path(f).parent.is_dir() for f in (out, err) if f):
        if time.monotonic() > deadline:
            _update(state, key, state="FAILED", exit_code=1)
            return 1
        time.sleep(0.05)
    with open(out, "ab") as stdout, open(err or out, "ab") as stderr:
        proc = subprocess.Popen(["bash", script], env=env, stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr, start_new_session=True)
        _update(state, key, state="RUNNING", pid=proc.pid, pgid=proc.pid)
        code = proc.wait()
    cancelled = _jobs(state).get(key, {}).get("cancelled")
    _update(state, key, exit_code=code, state="CANCELLED" if cancelled else
            "COMPLETED" if code == 0 else "FAILED")
    return 0


def srun(state: Path, args: list[str]) -> int:
    streams = {"--output": None, "--error": None}
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        if flag in streams:
            streams[flag] = args.pop(0)
        elif flag != "--unbuffered":
            print(f"fake srun: {flag} is not emulated", file=sys.stderr)
            return 1
    env = {**os.environ, "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
           "SLURM_STEP_ID": "0"}
    for flag, fd in (("--output", 1), ("--error", 2)):
        if streams[flag]:
            target = os.open(_expand(streams[flag], env),
                             os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(target, fd)
            os.close(target)
    os.execvpe(args[0], args, env)  # the task is this process, as its step's one task


def sacct(state: Path, args: list[str]) -> int:
    fields, wanted = ["JobID", "State"], set()
    while args:
        flag = args.pop(0)
        if flag in ("-o", "--format"):
            fields = args.pop(0).split(",")
        elif flag in ("-j", "--jobs"):
            wanted.update(args.pop(0).split(","))
    print("|".join(fields))
    for key, job in _jobs(state).items():
        if not wanted or key.split("_")[0] in wanted or key in wanted:
            values = {"JobID": key, "State": job["state"], "NodeList": "localhost",
                      "ExitCode": f"{job.get('exit_code', 0)}:0"}
            print("|".join(values.get(f, "") for f in fields))
    return 0


def scancel(state: Path, args: list[str]) -> int:
    sig, cancel, ids = signal.SIGTERM, True, []
    while args:
        arg = args.pop(0)
        if arg == "--signal" or arg.startswith("--signal="):
            name = arg.partition("=")[2] or args.pop(0)
            sig = signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
            cancel = False  # a signal the job may handle (submitit: USR2, requeue)
        else:
            ids.append(arg)
    for key, job in _jobs(state).items():
        if (key in ids or key.split("_")[0] in ids) and job.get("pgid") \
                and job["state"] in ("PENDING", "RUNNING"):
            if cancel:
                _update(state, key, cancelled=True)
            try:
                os.killpg(job["pgid"], sig)
            except ProcessLookupError:  # ended meanwhile
                pass
    return 0


def _main(state: Path, command: str, args: list[str]) -> int:
    handler = {"sbatch": sbatch, "srun": srun, "sacct": sacct, "scancel": scancel,
               "_run": _run}[command]
    if command != "_run":
        return handler(state, args)
    try:
        return handler(state, args)
    except BaseException:  # a job the fake itself lost must not stay PENDING for ever
        _update(state, args[0], state="FAILED", exit_code=1)
        raise


if __name__ == "__main__":
    sys.exit(_main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:]))
