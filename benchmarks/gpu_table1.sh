#!/usr/bin/env bash
# One task's Table 1 row at the paper's scale on one GPU, from a fresh clone (under 10 min):
#     bash benchmarks/gpu_table1.sh TASK [--out DIR] [--precisions fp32,bf16] [--budget S]
# and on a CPU, at tiny sizes:
#     bash benchmarks/gpu_table1.sh TASK --smoke [--out DIR]
# Installs only what does not import, as gpu_check.sh does (torch, then `pip install -e .`);
# then benchmarks/gpu_table1.py runs the row as one sweep and prints its figures (its
# docstring says which). PYTHON=... picks the interpreter (default: python).
set -euo pipefail
export GPU_TABLE1_STARTED=${GPU_TABLE1_STARTED:-$(date +%s)}   # the budget counts from here
cd "$(dirname "${BASH_SOURCE[0]}")/.."   # the repository root
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "installing: torch (pip install torch)"
    "$PYTHON" -m pip install --quiet torch
fi
if ! "$PYTHON" -c "import hydra, omegaconf, hydra_plugins.hydra_joblib_launcher, numpy, \
pandas, matplotlib, tqdm, tabulate, jinja2, yaml" 2>/dev/null; then
    echo "installing: the project and its dependencies (pip install -e .)"
    "$PYTHON" -m pip install --quiet -e .
fi
exec "$PYTHON" benchmarks/gpu_table1.py "$@"
