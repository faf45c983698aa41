#!/usr/bin/env bash
# The published probe matrices: reverse_26 and mirror_2 at the predicted budget and one
# layer fewer, from trained quick-preset runs. Give the sweep directories (or run
# directories) that hold them, e.g.
#
#   bash docs/results/probes/make.sh outputs/multirun/DATE/TIME-reverse outputs/multirun/DATE/TIME-mirror
#
# made by `python -m rasp_hydra -m +experiment=table1_quick` (reverse_26, or
# lang=rasp/quick/reverse_26 through the shipped program) and
# `python -m rasp_hydra -m +experiment=table1_quick lang=rasp
# lang.program=docs/results/mirror/mirror.rasp lang.size=2` (mirror_2). For each (task,
# arch) it takes the completed run with the best validation token accuracy, probes it
# (python -m rasp_hydra.probe RUN, default options) and copies its probes.csv, probes.png
# and the printed summary here as TASK_ARCH.{csv,png,txt}.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 1 ] || { echo "usage: bash $0 SWEEP_OR_RUN_DIR..." >&2; exit 2; }
python - "$here" "$@" <<'PY'
import json, shutil, subprocess, sys
from pathlib import Path
from rasp_hydra import runs

out, roots = Path(sys.argv[1]), sys.argv[2:]
wanted = [(t, a) for t in ("reverse_26", "mirror_2") for a in ("predicted", "fewer_layers")]
best = {}
for root in roots:
    for run in runs.find_runs(root):
        m = runs.read_metrics(run)
        key = (m.get("task"), m.get("arch"))
        if key not in wanted or m.get("status") != "completed":
            continue
        acc = m.get("final", {}).get("valid", {}).get("token_acc", -1)
        if key not in best or acc > best[key][0]:
            best[key] = (acc, run)
missing = [f"{t} {a}" for t, a in wanted if (t, a) not in best]
if missing:
    sys.exit(f"no completed run of {', '.join(missing)} below {' '.join(roots)}")
for (task, arch), (acc, run) in best.items():
    name = f"{task}_{arch}"
    print(f"== {name}: {run} (valid token accuracy {acc:.4f})", flush=True)
    proc = subprocess.run([sys.executable, "-m", "rasp_hydra.probe", str(run)],
                          capture_output=True, text=True)
    print(proc.stdout + proc.stderr, end="")
    if proc.returncode:
        sys.exit(proc.returncode)
    m = runs.read_metrics(run)
    test = m.get("final", {}).get("test", {}).get("token_acc")
    (out / f"{name}.txt").write_text(
        f"run: {Path(run).name} of {Path(run).parent.name}; {task}, arch {arch}, "
        f"{m.get('layers')} layers, {m.get('heads')} heads, d_model {m.get('d_model')}; "
        f"test token accuracy {test}\n" + proc.stdout)
    for ext in ("csv", "png"):
        shutil.copy(Path(run) / "probes" / f"probes.{ext}", out / f"{name}.{ext}")
print(f"wrote {len(best)} matrices to {out}")
PY
