"""The RASP core's layers import one way: text (parse, interpret) and the program objects
(lang) and their graph, then compilation and value sets, none of which imports torch;
only the batched evaluator does. So ``python -m rasp_hydra.rasp FILE --budget NAME`` and
``--eval``'s reading of its input never import torch (checked in a fresh process)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RASP = ROOT / "rasp_hydra" / "rasp"

# run the CLI as ``python -m`` does, then report what it imported
PROBE = """
import runpy, sys
sys.argv = ["rasp_hydra.rasp", *sys.argv[1:]]
try:
    runpy.run_module("rasp_hydra.rasp", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
sys.stdout.flush()
print("exit", code, "torch", "torch" in sys.modules, "compiled",
      "rasp_hydra.rasp.compile" in sys.modules, file=sys.stderr)
"""


def probe(*args) -> tuple[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
    return r.stdout, r.stderr.strip().splitlines()[-1]


def test_budget_and_reading_inputs_do_not_import_torch(tmp_path):
    out, seen = probe(RASP / "programs" / "reverse.rasp", "--budget", "reverse")
    assert out.splitlines()[0] == "reverse: 2 layers, heads per layer 1/1 (budget: 2 x 1)"
    assert seen == "exit 0 torch False compiled True"
    # what a program defines, and a value that is not an s-op: nothing is evaluated
    prog = tmp_path / "p.rasp"
    prog.write_text("k = 3; x = tokens_int + k;")
    out, seen = probe(prog)
    assert out.splitlines() == ["int: k", "s-op: x"]
    assert seen.startswith("exit 0 torch False")
    out, seen = probe(prog, "--eval", "k", "[1, 2]")
    assert out.strip() == "k = 3" and seen.startswith("exit 0 torch False")
    # an INPUT that does not parse is refused before anything is evaluated
    _, seen = probe(prog, "--eval", "x", "[1, 2")
    assert seen.startswith("exit 2 torch False")


def module_imports(path: Path) -> tuple[set[str], set[str]]:
    """What a file imports when it is imported (not inside functions): the package's own
    modules (``from .lang import x`` -> ``lang``), and the others' top-level names."""
    own, others = set(), set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            others |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:
            own |= {a.name for a in node.names} if node.module is None else {node.module}
        elif isinstance(node, ast.ImportFrom):
            others.add(node.module.split(".")[0])
    return own, others


def test_lower_layers_import_no_higher_one():
    for name, allowed in (("lang", set()), ("graph", {"lang"}),
                          ("compile", {"graph", "lang"}), ("values", {"graph", "lang"}),
                          ("source", {"lang"}), ("scope", {"lang"})):
        own, others = module_imports(RASP / f"{name}.py")
        assert own <= allowed and "torch" not in others, (name, own, others)
    own, others = module_imports(RASP / "__init__.py")
    assert "evaluate" not in own and "torch" not in others
