#!/usr/bin/env bash
# The GPU check, on a GPU machine with a fresh clone (under 8 minutes):
#     bash benchmarks/gpu_check.sh [--out DIR] [--sweep-epochs N] [--jobs N]
# and on a CPU, at tiny sizes, in well under a minute:
#     bash benchmarks/gpu_check.sh --smoke [--out DIR]
# Installs only what does not import: torch (the platform's default wheel, which is a CUDA
# build on Linux x86-64; never the CPU-only pin of the README), then the project and its
# dependencies (`pip install -e .`). The clone's own code runs in any case (PYTHONPATH).
# Then benchmarks/gpu_check.py prints the GPU, the paper-size throughput, one paper-size
# epoch with its peak GPU memory, and a 4-job sweep sharing the GPU; see its docstring.
# PYTHON=... picks the interpreter (default: python).
set -euo pipefail
export GPU_CHECK_STARTED=${GPU_CHECK_STARTED:-$(date +%s)}   # the time budget counts from here
cd "$(dirname "${BASH_SOURCE[0]}")/.."   # the repository root
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "installing: torch (pip install torch)"
    "$PYTHON" -m pip install --quiet torch
fi
if ! "$PYTHON" -c "import hydra, omegaconf, hydra_plugins.hydra_joblib_launcher, numpy, \
pandas, matplotlib, tqdm, tabulate, jinja2" 2>/dev/null; then
    echo "installing: the project and its dependencies (pip install -e .)"
    "$PYTHON" -m pip install --quiet -e .
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
