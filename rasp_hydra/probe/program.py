"""The program side of the probes: which RASP program computes a run's task (its own, or
its family's shipped one), the s-ops its output depends on and the layer where the compiled
program holds each, and their values at sampled real positions of some sequences (the
probes' labels). Its one reason to change: what is probed and how it is labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from rasp_hydra.errors import UserError


class ProbeError(UserError):
    """A problem with the probe's input, shown as one paragraph (exit code 2)."""


# ----------------------------------------------------------------------- the program

# built-in families -> their shipped programs (without BOS, with BOS); None: no such program
SHIPPED = {"reverse": ("reverse", "reverse"), "hist": ("hist_nobos", "hist_bos"),
           "hist2": ("hist2_nobos", "hist2_bos"), "sort": ("sort_nobos", "sort_bos"),
           "sort_by_freq": ("sort_by_freq_nobos", "sort_by_freq_bos")}


def program_task(task, max_len: int = 100):
    """The program task that computes ``task``: the task itself for a program task, else
    its family's shipped program over the same alphabet (reverse and Dyck programs see no
    BOS; the others have a variant for each). Raises ProbeError if there is none."""
    from rasp_hydra.tasks.program import ProgramFamily, make_program_task
    from rasp_hydra.tasks.registry import find_program

    if isinstance(task.family_impl, ProgramFamily):
        return task
    family = task.family
    if family in SHIPPED:
        name = SHIPPED[family][task.bos]
    elif family == "dyck" and task.size in (1, 2):
        name = f"dyck{task.size}_ptf"
    else:
        raise ProbeError(
            f"The task {task.name!r} has no RASP program to probe: probes need a program "
            "task (lang=rasp, e.g. lang.program=docs/results/mirror/mirror.rasp) or a "
            f"built-in family with a shipped program ({', '.join(SHIPPED)}, dyck1_ptf, "
            "dyck2_ptf).")
    sees_bos = task.bos and name.endswith("_bos")
    return make_program_task(find_program(name), name, alphabet=task.alphabet, bos=task.bos,
                             sees_bos=sees_bos, max_len=max_len, base=task.base_name)


def program_sops(prog_task) -> dict:
    """The probed s-ops, by a unique name: every named s-op (and tokens, indices) the
    output depends on, constants left out, in creation order."""
    from rasp_hydra.rasp.evaluate import ancestors
    from rasp_hydra.rasp.lang import Input, Map, SOp

    out = {}
    for node in ancestors([prog_task.family_impl.output]):
        if not isinstance(node, SOp) or (isinstance(node, Map) and node.is_constant):
            continue
        if not (node.is_named or isinstance(node, Input)):
            continue
        name, k = node.name, 2
        while name in out:  # a name given twice (a variable reassigned)
            name, k = f"{node.name}#{k}", k + 1
        out[name] = node
    return out


def compiled_layers(prog_task, sops: dict) -> dict[str, int]:
    """Residual stream index where the compiled program holds each s-op."""
    compiled = prog_task.family_impl.compiled
    return {name: compiled.depth[id(node)] for name, node in sops.items()}


# ----------------------------------------------------------------------- data

@dataclass
class Positions:
    """Sampled real positions of some sequences: rows ``b`` and model positions ``i``
    (BOS excluded), program positions ``p`` (the same, less the BOS the program does not
    see)."""

    tokens: object  # LongTensor[N, n]
    lengths: object  # LongTensor[N]
    b: object  # LongTensor[P]
    i: object
    p: object


def sample_positions(task, prog_task, tokens, lengths, limit: int, seed: int) -> Positions:
    import numpy as np
    import torch

    first = 1 if task.bos else 0  # BOS is left out
    offset = 1 if task.bos and not prog_task.family_impl.sees_bos else 0  # model pos - program pos
    n = tokens.shape[1]
    real = (torch.arange(n)[None, :] < lengths[:, None])
    real[:, :first] = False
    b, i = real.nonzero(as_tuple=True)
    if len(b) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(b), limit, replace=False))
        b, i = b[keep], i[keep]
    return Positions(tokens, lengths, b, i, i - offset)


def program_labels(prog_task, sops: dict, pos: Positions) -> dict[str, list]:
    """Each s-op's values at the sampled positions (Python values, as the program gives)."""
    from rasp_hydra.rasp import evaluate_batch

    x, n = prog_task._strip(pos.tokens, pos.lengths)
    cols = evaluate_batch(list(sops.values()), x, n, prog_task.family_impl.input_values)
    out = {}
    for name, node in sops.items():
        col = cols[node]
        codes = col.codes[pos.b, pos.p].tolist()
        out[name] = [col.table[c] for c in codes]
    return out
