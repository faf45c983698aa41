"""The GPU check: what this project does on one GPU, in one command of under 8 minutes.

    bash benchmarks/gpu_check.sh [--smoke] [--out DIR]     # installs, then runs this file

Steps (each a real entry point in a subprocess, its output shown as it comes):
  1. the GPU as nvidia-smi and torch see it;
  2. benchmarks/train_throughput.py --device cuda at the paper's size (d_model 256, lengths
     1..100): real tokens/s and the fraction of the GPU's matmul FLOP/s;
  3. one paper-size epoch of reverse_100 (model=paper, 50,000 training sequences), run by
     benchmarks/measure_run.py so that torch's peak GPU memory is printed: wall time
     (data, the epoch, the final evaluation of every split), the epoch's own seconds;
  4. a sweep of the four +experiment=table1 arch variants of one task (hist2_100_bos: the
     task where all four exist) for a few epochs, four joblib workers sharing the GPU,
     with nvidia-smi sampling the GPU's and each process's memory and the utilisation.
The figures go to stdout, DIR/gpu_check.log (all output) and DIR/figures.json.
Each step has a time limit taken from what is left of the budget (7.5 minutes from the
start of gpu_check.sh, installation included), so the check ends in time even on a slow
machine and says which step ran out (a stopped run ends `interrupted`, as on Ctrl+C).

`--smoke` runs the same steps on the CPU at tiny sizes (under a minute); a test runs it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP_ARCHS = ("predicted", "fewer_heads", "fewer_layers", "fewer_layers_wider")

# The sizes of each step: the paper's on a GPU; tiny ones that run in seconds on a CPU.
FULL = {
    "throughput": [],  # the benchmark's defaults are the paper's sizes
    "epoch": ["lang=reverse_100", "model=paper", "train.epochs=1"],
    "sweep": ["lang=hist2_100_bos", "optimizer.lr=3e-4", "schedule.gamma=0.98"],
}
SMOKE = {
    "throughput": ["--steps", "3", "--warmup", "1", "--train-size", "200", "--d-model", "32",
                   "--max-len", "12", "--threads", "1"],
    "epoch": ["lang=reverse_10", "model=paper", "train.epochs=1", "lang.max_len=8",
              "lang.train_size=300", "lang.valid_size=50", "lang.test_size=50",
              "model.d_model=16", "model.ff=32", "train.num_threads=1"],
    "sweep": ["lang=hist2_10_bos", "optimizer.lr=3e-4", "schedule.gamma=0.98",
              "lang.max_len=6", "lang.train_size=200", "lang.valid_size=50",
              "lang.test_size=50", "model.d_model=16", "model.ff=32", "train.num_threads=1"],
}


class Log:
    """Print and append to the log file, line by line."""

    def __init__(self, path: Path):
        self.file = path.open("a", encoding="utf-8")

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.file.write(text + "\n")
        self.file.flush()


def run_step(cmd: list[str], say: Log, timeout: float, cwd: Path) -> tuple[int | None, float]:
    """Run `cmd`, echoing its output; (exit status or None if it ran out of time, seconds).
    The command runs in its own process group so that a time-out also ends its workers."""
    say("$ " + " ".join(cmd))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    killer = _Timer(timeout, lambda: _kill_group(proc))
    try:
        for line in proc.stdout:
            say("  " + line.rstrip("\n"))
        proc.wait()
    finally:
        killer.cancel()
    seconds = time.perf_counter() - t0
    if killer.fired:
        say(f"  (stopped after {timeout:.0f} s: the time limit of this step)")
        return None, seconds
    return proc.returncode, seconds


class _Timer:
    def __init__(self, seconds: float, action):
        import threading

        self.fired = False

        def fire():
            self.fired = True
            action()

        self._timer = threading.Timer(max(seconds, 1.0), fire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self):
        self._timer.cancel()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the run saves last.pt and ends "interrupted"
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class GpuSampler:
    """nvidia-smi in the background: the GPU's memory in use and utilisation, and each
    compute process's memory, every 200 ms. Does nothing where there is no nvidia-smi."""

    def __init__(self, out: Path, gpu_index: str):
        self.procs = []
        self.gpu_file, self.apps_file = out.with_suffix(".gpu.csv"), out.with_suffix(".apps.csv")
        if shutil.which("nvidia-smi") is None:
            return
        for query, path in (("--query-gpu=memory.used,utilization.gpu", self.gpu_file),
                            ("--query-compute-apps=pid,used_memory", self.apps_file)):
            with path.open("w") as f:  # the child keeps its own copy of the descriptor
                self.procs.append(subprocess.Popen(
                    ["nvidia-smi", query, "--format=csv,noheader,nounits", "-i", gpu_index,
                     "-lms", "200"], stdout=f, stderr=subprocess.DEVNULL))

    def stop(self) -> dict:
        for p in self.procs:
            p.terminate()
            p.wait()
        if not self.procs:
            return {}
        gpu = [_numbers(line) for line in _lines(self.gpu_file)]
        gpu = [g for g in gpu if len(g) == 2]
        per_pid: dict[int, float] = {}
        for row in map(_numbers, _lines(self.apps_file)):
            if len(row) == 2:
                per_pid[int(row[0])] = max(per_pid.get(int(row[0]), 0.0), row[1])
        return {"samples": len(gpu),
                "gpu_memory_used_max_mib": max((g[0] for g in gpu), default=None),
                # the mean includes start-up and data building, when the GPU waits
                "gpu_utilization_mean_pct": sum(g[1] for g in gpu) / len(gpu) if gpu else None,
                "gpu_utilization_max_pct": max((g[1] for g in gpu), default=None),
                "processes": len(per_pid),
                "process_memory_max_mib": max(per_pid.values(), default=None)}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def _numbers(line: str) -> list[float]:
    try:
        return [float(x) for x in line.split(",")]
    except ValueError:  # "[N/A]" or a header
        return []


# Asked in a child process: the check itself never initialises CUDA, so that it holds no
# CUDA context (hundreds of MiB) and nvidia-smi sees only the runs' processes.
TORCH_VIEW = """
import json, torch
view = {"torch": torch.__version__, "cuda": torch.version.cuda,
        "available": torch.cuda.is_available()}
if view["available"]:
    p = torch.cuda.get_device_properties(0)
    view.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                compute_capability=f"{p.major}.{p.minor}", gpus=torch.cuda.device_count(),
                cudnn=torch.backends.cudnn.version())
print(json.dumps(view))
"""


def torch_view() -> dict:
    proc = subprocess.run([sys.executable, "-c", TORCH_VIEW], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: torch does not load: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def machine(say: Log, view: dict, device: str) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True).stdout.strip() or "unknown"
    info = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit, "python": platform.python_version(), "torch": view["torch"],
            "cpu_cores": cores, "device": device}
    say(f"rasp_hydra GPU check, commit {commit}, {info['date']}: Python {info['python']}, "
        f"torch {info['torch']}, {cores} CPU cores")
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi"], text=True, capture_output=True).stdout
        for line in out.rstrip().splitlines():
            say("  " + line)
    if device == "cuda":
        info.update({k: view[k] for k in ("gpu", "gpu_memory_gib", "compute_capability",
                                          "cuda", "cudnn", "gpus")})
        say(f"torch sees {info['gpus']} GPU(s); cuda:0 = {info['gpu']}, "
            f"{info['gpu_memory_gib']} GiB, compute capability {info['compute_capability']}, "
            f"CUDA {info['cuda']}, cuDNN {info['cudnn']}")
    else:
        say("device: cpu (smoke: tiny sizes, the same steps)")
    return info


def hydra_path(key: str, path: Path) -> str:
    """`key='path'`, quoted for Hydra's override grammar (paths may hold `=` or spaces)."""
    quoted = str(path).replace("\\", "\\\\").replace("'", "\\'")
    return f"{key}='{quoted}'"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def epoch_seconds(run_dir: Path) -> float | None:
    """Training seconds of the run's first epoch, from its history.csv."""
    import csv

    try:
        with (run_dir / "history.csv").open() as f:
            return float(next(csv.DictReader(f))["seconds"])
    except (OSError, StopIteration, KeyError, ValueError):
        return None


def train_size(run_dir: Path) -> int | None:
    """The run's lang.train_size, from the config Hydra saved."""
    from omegaconf import OmegaConf

    try:
        return int(OmegaConf.load(run_dir / ".hydra" / "config.yaml").lang.train_size)
    except (OSError, AttributeError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    p.add_argument("--out", default=None,
                   help="output directory (default outputs/gpu_check/DATE_TIME)")
    p.add_argument("--sweep-epochs", type=int, default=None, help="default 3 (smoke: 1)")
    p.add_argument("--jobs", type=int, default=4, help="sweep workers sharing the GPU")
    p.add_argument("--budget", type=float, default=450.0,
                   help="seconds for everything from gpu_check.sh's start, installation "
                        "included (default 7.5 minutes)")
    args = p.parse_args(argv)

    device = "cpu" if args.smoke else "cuda"
    view = torch_view()
    if device == "cuda" and not view["available"]:
        print(f"error: no CUDA device: torch {view['torch']} sees none "
              f"(torch.version.cuda={view['cuda']}). On a GPU machine install a CUDA "
              "build of torch (`pip install torch` on Linux x86-64 gets one) and check "
              "`nvidia-smi`; on a CPU run `bash benchmarks/gpu_check.sh --smoke`.",
              file=sys.stderr)
        return 2
    sizes = SMOKE if args.smoke else FULL
    sweep_epochs = args.sweep_epochs or (1 if args.smoke else 3)
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = Path(args.out or ROOT / "outputs" / "gpu_check" / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    say = Log(out / "gpu_check.log")
    # the budget counts from gpu_check.sh's start, installation included
    started = float(os.environ.get("GPU_CHECK_STARTED", time.time()))
    deadline = time.perf_counter() + args.budget - (time.time() - started)
    gpu_index = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
    if not gpu_index.isdigit():
        gpu_index = "0"  # a GPU UUID: nvidia-smi -i takes it, but keep the common case
    figures: dict = {"machine": machine(say, view, device), "smoke": args.smoke, "out": str(out)}
    py = sys.executable

    def left(cap: float) -> float:
        return max(1.0, min(cap, deadline - time.perf_counter()))

    # throughput ------------------------------------------------------------------------
    size = "smoke sizes" if args.smoke else "the paper's size"
    say(f"\n== 1/3 training throughput, {size} ==")
    code, secs = run_step([py, "benchmarks/train_throughput.py", "--device", device,
                           "--json", str(out / "throughput.json"), *sizes["throughput"]],
                          say, left(150), ROOT)
    figures["throughput"] = {"exit_status": code, "seconds": secs,
                             **read_json(out / "throughput.json")}

    # one paper-size epoch -------------------------------------------------------------
    say(f"\n== 2/3 one epoch of reverse_100, model=paper, {size} ==")
    run_dir = out / "epoch"
    sampler = GpuSampler(out / "epoch", gpu_index)
    code, secs = run_step([py, "benchmarks/measure_run.py", "--json", str(out / "epoch.json"),
                           "--", *sizes["epoch"], f"train.device={device}",
                           hydra_path("hydra.run.dir", run_dir)], say, left(200), ROOT)
    m = read_json(run_dir / "metrics.json")
    figures["epoch"] = {"exit_status": code, "seconds": secs, **read_json(out / "epoch.json"),
                        "status": m.get("status"), "epoch_seconds": epoch_seconds(run_dir),
                        "tokens_per_second": m.get("tokens_per_second"),
                        "train_sequences": train_size(run_dir),
                        "num_threads": m.get("num_threads"),
                        "valid_token_acc": (m.get("final") or {}).get("valid", {})
                        .get("token_acc"), "nvidia_smi": sampler.stop()}

    # a sweep sharing the GPU ----------------------------------------------------------
    say(f"\n== 3/3 +experiment=table1 variants of one task, {args.jobs} jobs on one "
        f"{'GPU' if device == 'cuda' else 'CPU'}, {sweep_epochs} epochs ==")
    sweep_dir = out / "sweep"
    sampler = GpuSampler(out / "sweep", gpu_index)
    code, secs = run_step([py, "-m", "rasp_hydra", "-m", "+experiment=table1",
                           *sizes["sweep"], f"train.epochs={sweep_epochs}",
                           f"train.device={device}", f"hydra.launcher.n_jobs={args.jobs}",
                           hydra_path("hydra.sweep.dir", sweep_dir)], say, left(400), ROOT)
    jobs = []
    for d in sorted(sweep_dir.glob("[0-9]*"), key=lambda p: int(p.name)):
        jm = read_json(d / "metrics.json")
        jobs.append({k: jm.get(k) for k in ("arch", "status", "layers", "heads", "d_model",
                                            "epochs_run", "wall_seconds", "tokens_per_second",
                                            "num_threads", "device")}
                    | {"test_token_acc": (jm.get("final") or {}).get("test", {})
                       .get("token_acc")})
    figures["sweep"] = {"exit_status": code, "wall_seconds": secs, "epochs": sweep_epochs,
                        "n_jobs": args.jobs, "jobs": jobs, "nvidia_smi": sampler.stop()}

    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    summarize(figures, say)
    say(f"\nfigures: {out / 'figures.json'}; everything printed: {out / 'gpu_check.log'}")
    ok = all(figures[s]["exit_status"] == 0 for s in ("throughput", "epoch", "sweep"))
    return 0 if ok else 1


def _f(x, fmt: str, none: str = "n/a") -> str:
    return none if x is None else format(x, fmt)


def summarize(fig: dict, say: Log) -> None:
    """The figures as docs/gpu.md's table wants them, one line each."""
    mach, tp, ep, sw = fig["machine"], fig["throughput"], fig["epoch"], fig["sweep"]
    say("\n== summary ==")
    say(f"device: {mach.get('gpu', 'cpu')}" + (f" ({mach['gpu_memory_gib']} GiB)"
                                               if "gpu" in mach else "")
        + f", torch {mach['torch']}, {mach['cpu_cores']} CPU cores")
    for c in tp.get("cases", []):
        say(f"throughput ({c['case']}) {c['task']} {c['layers']}L{c['heads']}H "
            f"d{c['d_model']}: {c['tokens_per_s']:,.0f} tokens/s, "
            f"{c['fraction']:.1%} of matmul {c['matmul_gflops']:,.0f} GFLOP/s"
            + (f", peak {c['peak_memory_bytes'] / 2**20:,.0f} MiB"
               if c.get("peak_memory_bytes") else ""))
    if tp["exit_status"] != 0:
        say(f"throughput: did not finish (exit {tp['exit_status']})")
    peak = ep.get("peak_allocated_bytes")
    smi = ep.get("nvidia_smi") or {}
    say(f"epoch: {ep.get('status')}, {_f(ep.get('train_sequences'), ',')} sequences, "
        f"epoch {_f(ep.get('epoch_seconds'), '.1f')} s, "
        f"{_f(ep.get('tokens_per_second'), ',.0f')} tokens/s, wall "
        f"{_f(ep.get('wall_seconds'), '.1f')} s (start, data, epoch, final evaluation)"
        + ("" if peak is None else f", peak GPU memory {peak / 2**20:,.0f} MiB allocated, "
           f"{_f(smi.get('process_memory_max_mib'), ',.0f')} MiB by nvidia-smi"))
    jobs = sw["jobs"]
    done = sum(j["status"] == "completed" for j in jobs)
    smi = sw.get("nvidia_smi") or {}
    say(f"sweep: {len(jobs)} jobs ({done} completed), {sw['n_jobs']} at a time, "
        f"{sw['epochs']} epochs, wall {sw['wall_seconds']:.1f} s; threads per job "
        f"{sorted({j['num_threads'] for j in jobs if j['num_threads']})} of "
        f"{mach['cpu_cores']} cores"
        + ("" if not smi else f"; GPU memory max {_f(smi['gpu_memory_used_max_mib'], ',.0f')} "
           f"MiB in all, {_f(smi['process_memory_max_mib'], ',.0f')} MiB per process; "
           f"GPU utilisation mean {_f(smi['gpu_utilization_mean_pct'], '.0f')}% (start-up "
           f"included), max {_f(smi['gpu_utilization_max_pct'], '.0f')}%"))
    for j in jobs:
        say(f"  {j['arch']}: {j['status']}, {j['layers']}L{j['heads']}H d{j['d_model']}, "
            f"{j['epochs_run']} epochs, {_f(j['wall_seconds'], '.1f')} s, "
            f"{_f(j['tokens_per_second'], ',.0f')} tokens/s, test acc "
            f"{_f(j['test_token_acc'], '.3f')}")
    per_proc, total = smi.get("process_memory_max_mib"), mach.get("gpu_memory_gib")
    if per_proc and total:
        say(f"jobs per GPU by memory: about {int(total * 1024 * 0.9 // per_proc)} of the "
            "largest job's size (90% of the GPU's memory / its peak incl. CUDA context); "
            "the sweep's time shows how far the GPU's time goes round them")


if __name__ == "__main__":
    sys.exit(main())
