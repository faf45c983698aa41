"""One task's Table 1 row at the paper's scale on one GPU, in one command of under 10 minutes.

    bash benchmarks/gpu_table1.sh TASK [--smoke] [--out DIR]    # installs, then runs this

What it runs: one sweep, `+experiment=table1 lang=TASK` (model=paper: d_model 256, lengths
1..100, 50,000 training sequences, up to 100 epochs, the original's early stopping: stop
after 3 epochs of validation accuracy 1.0, reload the best after 10 without improvement),
the four arch variants (those that cannot exist end `skipped` at once), the original
experiments' default lr 3e-4 and gamma 0.98 (one of the grid's four pairs; --lr, --gamma
change them), seed 0, at each precision of --precisions (default fp32 and bf16: the same
jobs at both), all sharing the GPU (jobs per GPU: the sweep's first line says how many).
The sweep runs until its jobs end or the time budget is spent (default 9 minutes from the
start of gpu_table1.sh, installation included, less a reserve for the ending): then SIGTERM
stops every job after its batch, and each evaluates its best checkpoint and writes its
record (`interrupted`, with final accuracies). Then `python -m rasp_hydra.report
--include-interrupted` writes the row's report per precision.

What it prints (and writes to DIR/table1.log, DIR/figures.json): each job's status, epochs,
best epoch, test accuracy and training tokens/s; per precision the GPU's tokens/s as a
whole (the jobs' rates summed: they ran together) and bf16's speed-up; the GPU's
utilisation and memory (nvidia-smi sampled every 200 ms, where there is one); and the
projected time of the full grid (docs/gpu.md, "A Table 1 row at the paper's scale").

`--smoke` runs the same steps on the CPU at tiny sizes (a test runs it).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import GpuSampler, Log, hydra_path, machine, read_json, torch_view  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["lang.max_len=6", "lang.train_size=200", "lang.valid_size=50", "lang.test_size=50",
         "model.d_model=16", "model.ff=32", "train.epochs=2", "train.num_threads=1"]
RESERVE = 75.0  # seconds kept for the jobs' final evaluation, the report and the summary
GRACE = 60.0  # after SIGTERM, before SIGKILL


def table1_grid() -> tuple[list[str], int]:
    """The full grid's tasks (conf/experiment/table1.yaml) and its lr x gamma pairs."""
    import yaml

    params = yaml.safe_load((ROOT / "conf/experiment/table1.yaml").read_text())
    params = params["hydra"]["sweeper"]["params"]
    pairs = len(str(params["optimizer.lr"]).split(",")) * \
        len(str(params["schedule.gamma"]).split(","))
    return str(params["lang"]).split(","), pairs


def variants(task: str) -> int:
    """How many of the four arch variants exist for `task` (at least one layer and head)."""
    from rasp_hydra.config import ArchName
    from rasp_hydra.tasks import get_task

    t = get_task(task)
    return sum(min(ArchName(a).budget(t.predicted_layers, t.predicted_heads)[:2]) >= 1
               for a in ArchName)


def run_sweep(cmd: list[str], say: Log, seconds: float) -> tuple[int | None, float, bool]:
    """Run the sweep, echoing it; after `seconds` SIGTERM its process group (the jobs end
    `interrupted` with their records), SIGKILL after GRACE more. (exit, seconds, stopped)."""
    say("$ " + " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    stopped = threading.Event()

    def stop():
        stopped.set()
        say(f"  (time budget: SIGTERM to the sweep after {seconds:.0f} s; each job stops "
            "after its batch and evaluates its best checkpoint)")
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(max(seconds, 1.0), stop)
    timer.daemon = True
    timer.start()
    try:
        for line in proc.stdout:
            say("  " + line.rstrip("\n"))
        proc.wait()
    finally:
        timer.cancel()
    return proc.returncode, time.perf_counter() - t0, stopped.is_set()


def epoch_seconds(run_dir: Path) -> list[float]:
    try:
        with (run_dir / "history.csv").open() as f:
            return [float(r["seconds"]) for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError):
        return []


def job_figures(run_dir: Path) -> dict:
    from omegaconf import OmegaConf

    m = read_json(run_dir / "metrics.json")
    try:
        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        arch, precision = str(cfg.arch.name), str(cfg.train.precision)
    except Exception:  # noqa: BLE001 - a job that never started
        arch, precision = m.get("arch"), m.get("precision")
    seconds = epoch_seconds(run_dir)
    test = (m.get("final") or {}).get("test") or {}
    return {"job": run_dir.name, "arch": arch, "precision": precision,
            "status": m.get("status"), "layers": m.get("layers"), "heads": m.get("heads"),
            "d_model": m.get("d_model"), "epochs_run": m.get("epochs_run"),
            "best_epoch": m.get("best_epoch"), "test_token_acc": test.get("token_acc"),
            "test_seq_acc": test.get("seq_acc"), "tokens_per_second":
            m.get("tokens_per_second"), "epoch_seconds_mean":
            sum(seconds) / len(seconds) if seconds else None,
            "wall_seconds": m.get("wall_seconds"), "device": m.get("device")}


def by_precision(jobs: list[dict], concurrent: int, task: str) -> dict:
    """Per precision: the GPU's tokens/s as a whole and the full grid's projected hours."""
    tasks, pairs = table1_grid()
    grid_jobs = sum(variants(t) for t in tasks) * pairs
    out = {}
    for p in dict.fromkeys(j["precision"] for j in jobs):
        trained = [j for j in jobs if j["precision"] == p and j["tokens_per_second"]]
        epoch = [j["epoch_seconds_mean"] for j in trained if j["epoch_seconds_mean"]]
        mean_epoch = sum(epoch) / len(epoch) if epoch else None
        out[p] = {"jobs": len(trained),
                  "gpu_tokens_per_second": sum(j["tokens_per_second"] for j in trained),
                  "epoch_seconds_mean": mean_epoch,
                  "grid_jobs": grid_jobs,
                  # every job 100 epochs at this task's epoch time, `concurrent` at a time
                  "grid_hours_100_epochs": None if mean_epoch is None else
                  grid_jobs * 100 * mean_epoch / concurrent / 3600}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", help="a Table 1 task, e.g. reverse_100 or sort_by_freq_100_bos")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    p.add_argument("--out", default=None, help="default outputs/gpu_table1/TASK_DATE_TIME")
    p.add_argument("--precisions", default="fp32,bf16", help="swept train.precision values")
    p.add_argument("--lr", default="3e-4")
    p.add_argument("--gamma", default="0.98")
    p.add_argument("--seed", default="0")
    p.add_argument("--budget", type=float, default=540.0,
                   help="seconds for everything from gpu_table1.sh's start (default 9 min)")
    args = p.parse_args(argv)

    device = "cpu" if args.smoke else "cuda"
    view = torch_view()
    if device == "cuda" and not view["available"]:
        print(f"error: no CUDA device: torch {view['torch']} sees none. On a GPU machine "
              "check `nvidia-smi` and install a CUDA build of torch; on a CPU run "
              f"`bash benchmarks/gpu_table1.sh {args.task} --smoke`.", file=sys.stderr)
        return 2
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = Path(args.out or ROOT / "outputs" / "gpu_table1" / f"{args.task}_{stamp}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    say = Log(out / "table1.log")
    started = float(os.environ.get("GPU_TABLE1_STARTED", time.time()))
    left = args.budget - (time.time() - started) - RESERVE
    figures: dict = {"machine": machine(say, view, device), "smoke": args.smoke,
                     "task": args.task, "out": str(out)}
    gpu_index = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0] or "0"

    precisions = args.precisions.split(",")
    say(f"\n== Table 1 row of {args.task}, model=paper, lr {args.lr}, gamma {args.gamma}, "
        f"seed {args.seed}, precision {' and '.join(precisions)}, one sweep on one "
        f"{'GPU' if device == 'cuda' else 'CPU'}, {max(left, 0):.0f} s budget ==")
    sweep_dir = out / "sweep"
    sampler = GpuSampler(out / "sweep", gpu_index)
    code, secs, stopped = run_sweep(
        [sys.executable, "-m", "rasp_hydra", "-m", "+experiment=table1", f"lang={args.task}",
         f"optimizer.lr={args.lr}", f"schedule.gamma={args.gamma}", f"train.seed={args.seed}",
         f"train.precision={args.precisions}", f"train.device={device}",
         *(SMOKE if args.smoke else []), hydra_path("hydra.sweep.dir", sweep_dir)],
        say, left)
    smi = sampler.stop()
    dirs = sorted((d for d in sweep_dir.glob("[0-9]*") if d.is_dir()), key=lambda d: int(d.name))
    jobs = [job_figures(d) for d in dirs]
    trained = [j for j in jobs if j["status"] != "skipped"]
    concurrent = max(1, min(len(trained), _jobs_at_a_time(sweep_dir, len(trained))))
    figures["sweep"] = {"exit_status": code, "wall_seconds": secs, "stopped_by_budget": stopped,
                        "jobs": jobs, "jobs_at_a_time": concurrent, "nvidia_smi": smi,
                        "by_precision": by_precision(trained, concurrent, args.task)}
    figures["reports"] = write_reports(jobs, dirs, out, say)
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    summarize(figures, say)
    say(f"\nfigures: {out / 'figures.json'}; everything printed: {out / 'table1.log'}")
    return 0 if code == 0 or stopped else (code or 1)  # stopped: its jobs end interrupted


def _jobs_at_a_time(sweep_dir: Path, trained: int) -> int:
    """The n_jobs the sweep ran with (its jobs' saved hydra config), else all of them."""
    from omegaconf import OmegaConf

    try:
        n = int(OmegaConf.load(sweep_dir / "0" / ".hydra" / "hydra.yaml").hydra.launcher.n_jobs)
    except Exception:  # noqa: BLE001
        return trained
    return n if n > 0 else max(1, (os.cpu_count() or 1) + 1 + n)


def write_reports(jobs: list[dict], dirs: list[Path], out: Path, say: Log) -> dict:
    """`python -m rasp_hydra.report --include-interrupted`, one report per precision."""
    reports = {}
    for p in dict.fromkeys(j["precision"] for j in jobs):
        # the report reads a job's sweep root (and would count the other precision's jobs
        # as missing): it gets links to this precision's jobs, in a folder of their own
        view = out / "by_precision" / str(p)
        view.mkdir(parents=True, exist_ok=True)
        mine = []
        for d, j in zip(dirs, jobs, strict=True):
            if j["precision"] == p:
                link = view / d.name
                if not link.is_symlink():
                    link.symlink_to(os.path.relpath(d, view))
                mine.append(str(link))
        folder = out / f"report_{p}"
        say(f"\n== report, precision {p} ==")
        proc = subprocess.run([sys.executable, "-m", "rasp_hydra.report",
                               "--include-interrupted", "--out", str(folder), *mine],
                              cwd=ROOT, capture_output=True, text=True)
        for line in (proc.stdout + proc.stderr).rstrip().splitlines():
            say("  " + line)
        reports[p] = {"exit_status": proc.returncode, "folder": str(folder)}
    return reports


def _f(x, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def summarize(fig: dict, say: Log) -> None:
    mach, sw = fig["machine"], fig["sweep"]
    say("\n== summary ==")
    say(f"device: {mach.get('gpu', 'cpu')}, torch {mach['torch']}, {mach['cpu_cores']} CPU "
        f"cores; sweep wall {sw['wall_seconds']:.0f} s, {sw['jobs_at_a_time']} jobs at a time"
        + (", stopped by the time budget" if sw["stopped_by_budget"] else ""))
    for j in sw["jobs"]:
        if j["status"] == "skipped":
            say(f"  {j['arch']} {j['precision']}: skipped")
            continue
        say(f"  {j['arch']} {j['precision']}: {j['status']}, {j['layers']}L{j['heads']}H "
            f"d{j['d_model']}, {j['epochs_run']} epochs (best {j['best_epoch']}), test acc "
            f"{_f(j['test_token_acc'], '.4f')} (seq {_f(j['test_seq_acc'], '.4f')}), "
            f"{_f(j['tokens_per_second'], ',.0f')} tokens/s, epoch "
            f"{_f(j['epoch_seconds_mean'], '.1f')} s")
    rates = sw["by_precision"]
    for p, r in rates.items():
        say(f"precision {p}: {r['jobs']} jobs together {r['gpu_tokens_per_second']:,.0f} "
            f"tokens/s on the {'GPU' if 'gpu' in mach else 'CPU'}; full grid ({r['grid_jobs']} "
            f"jobs, 100 epochs each at this task's {_f(r['epoch_seconds_mean'], '.1f')} s an "
            f"epoch, {sw['jobs_at_a_time']} at a time): "
            f"{_f(r['grid_hours_100_epochs'], '.1f')} hours at most (early stopping ends "
            "solved runs sooner)")
    if {"fp32", "bf16"} <= set(rates) and rates["fp32"]["gpu_tokens_per_second"]:
        say(f"bf16 / fp32 tokens/s: {rates['bf16']['gpu_tokens_per_second'] / rates['fp32']['gpu_tokens_per_second']:.2f}")  # noqa: E501
    smi = sw["nvidia_smi"]
    if smi:
        say(f"GPU utilisation mean {_f(smi['gpu_utilization_mean_pct'], '.0f')}% (start-up "
            f"included), max {_f(smi['gpu_utilization_max_pct'], '.0f')}%; memory max "
            f"{_f(smi['gpu_memory_used_max_mib'], ',.0f')} MiB in all, "
            f"{_f(smi['process_memory_max_mib'], ',.0f')} MiB per process")


if __name__ == "__main__":
    sys.exit(main())
