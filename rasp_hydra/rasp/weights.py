"""A RASP program compiled to the weights of the project's ``Encoder`` (docs/compiled.md).

``to_weights(output, vocab, max_len, bos)`` gives an Encoder (``model.norm=none``,
learned positions) with exactly the budget scheduler's layers and heads per layer that
computes ``output`` on every input of up to ``max_len`` tokens. The value of every s-op is
read from the evaluator on every input (all of them while there are at most
``EXHAUSTIVE`` inputs, else ``SAMPLED`` per length), so the weights encode the values the
program takes, and ``check_weights`` then runs the model against the evaluator.

- Residual stream: a one-hot subspace per categorical s-op (its observed values), one
  magnitude dimension per averaged aggregate.
- Embedding: tokens and maps of tokens in the token table; indices, constants and maps of
  them in the (learned) position table.
- A select is one head: key one-hots projected to the head, query one-hots through the
  predicate's table, scores ``SCORE`` where selected; a composed select is the sum of its
  parts' tables (``and``: both, ``not``: negated), accepted only where it ranks the
  selected keys exactly first on every observed input.
- An aggregate whose selected keys always hold one value copies it (one-hot to one-hot);
  otherwise it averages the values as a magnitude.
- Maps: in the feed-forward block of their layer, one ReLU unit per observed combination
  of their categorical inputs, and two per step of a magnitude input (a clipped ramp).

Refused (``CompileError``): a selection that is empty on some input (no BOS key for the
default), a mixed token-and-index map before the first layer, a select on an averaged
value, a composed select that one head cannot rank exactly, a numerical output.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from rasp_hydra.errors import UserError

from .compile import compile_program
from .evaluate import evaluate_batch
from .graph import ancestors
from .lang import SELECT_OPS, Aggregate, Input, Map, Select, SOp

SCORE = 1000.0  # attention score of a selected key: softmax weight e^-1000 = 0 elsewhere
EXHAUSTIVE = 100_000  # inputs enumerated when there are at most this many
SAMPLED = 10_000  # inputs per length otherwise
CLASS_LOGIT = 10.0


class CompileError(UserError):
    """A program construct that cannot be compiled exactly; names it and says why."""


def _key(v: Any) -> tuple:
    # numbers compare equal across int/float/bool (as in the program), strings apart
    return ("s", v) if isinstance(v, str) else ("n", v)


def _where(node) -> str:
    line = getattr(node, "line", None)
    return f"{node.name!r}" + (f" (line {line})" if line else "")


@dataclass
class Space:
    """Where an s-op lives in the residual: ``dims`` (one per value, or one magnitude)."""

    kind: str  # "cat" | "num"
    start: int
    values: list = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.values) if self.kind == "cat" else 1

    def index(self, v) -> int:
        return self.start + [_key(x) for x in self.values].index(_key(v))


@dataclass
class Weights:
    """The compiled model and what it took."""

    model: Any
    task: Any
    compiled: Any
    residual_width: int
    inputs: tuple  # (ids, lengths) the values were read from
    exhaustive: bool
    spaces: dict


def enumerate_inputs(alphabet, max_len: int, bos: bool, bos_id: int, pad_id: int,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Every input of 1..max_len tokens (ids, lengths), or SAMPLED per length plus the
    constant sequences when there are more than EXHAUSTIVE."""
    k = len(alphabet)
    total = sum(k ** n for n in range(1, max_len + 1))
    exhaustive = total <= EXHAUSTIVE
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in range(1, max_len + 1):
        if exhaustive:
            r = torch.tensor(list(itertools.product(range(k), repeat=n)), dtype=torch.long)
        else:
            edge = torch.arange(k)[:, None].expand(k, n)  # constant sequences
            r = torch.cat([torch.randint(0, k, (SAMPLED, n), generator=g), edge])
        rows.append(r)
    off = 1 if bos else 0
    n_max = max_len + off
    ids = torch.full((sum(len(r) for r in rows), n_max), pad_id, dtype=torch.long)
    lengths, i = [], 0
    for r in rows:
        ids[i:i + len(r), off:off + r.shape[1]] = r
        if bos:
            ids[i:i + len(r), 0] = bos_id
        lengths += [r.shape[1] + off] * len(r)
        i += len(r)
    return ids, torch.tensor(lengths), exhaustive


class _Builder:
    def __init__(self, output: SOp, task, ids, lengths):
        self.output, self.task = output, task
        self.compiled = compile_program(output)
        self.nodes = ancestors([output])
        self.ids, self.lengths = ids, lengths
        values = task.family_impl.input_values
        self.input_values = values
        ev_ids = ids.clamp(max=len(values) - 1)  # padding: any id (never read)
        self.res = evaluate_batch(self.nodes, ev_ids, lengths, values)
        n = ids.shape[1]
        self.real = torch.arange(n)[None, :] < lengths[:, None]
        self.spaces: dict[int, Space] = {}
        self.width = 0
        self.vals: dict[int, list] = {}  # node -> python values [B][n] (real positions)

    def layer(self, node) -> int:
        return self.compiled.layer_of(node)

    def values(self, node) -> list[list]:
        if id(node) not in self.vals:
            col = self.res[node]
            table = col.table
            codes = col.codes.tolist()
            self.vals[id(node)] = [[table[c] for c in row[:m]]
                                   for row, m in zip(codes, self.lengths.tolist(), strict=True)]
        return self.vals[id(node)]

    def add_space(self, node, kind, values=()) -> Space:
        sp = Space(kind, self.width, list(values))
        self.width += sp.size
        self.spaces[id(node)] = sp
        return sp

    def distinct(self, node) -> list:
        seen: dict = {}
        for row in self.values(node):
            for v in row:
                seen.setdefault(_key(v), v)
        return list(seen.values())

    def frontier(self, node, layer) -> list:
        """The s-ops a map of ``layer`` reads from the residual: its inputs, through
        maps of the same layer (computed in the same block, so not yet written)."""
        out, stack = [], list(node.children)
        while stack:
            c = stack.pop()
            if isinstance(c, Map) and not c.is_constant and self.layer(c) == layer:
                stack.extend(c.children)
            elif all(c is not o for o in out):
                out.append(c)
        return sorted(out, key=lambda x: x.id)


def _pred(op: str, k, q) -> bool:
    if op == "true":
        return True
    if op == "false":
        return False
    if isinstance(k, str) != isinstance(q, str):
        return op == "!="
    return {"==": k == q, "!=": k != q, "<": k < q, ">": k > q, "<=": k <= q,
            ">=": k >= q}[op]


def _bilinear(b: _Builder, sel: Select, d: int) -> torch.Tensor:
    """[d, d] matrix B with score(key x_k, query x_q) = x_k^T B x_q (constants dropped)."""
    if sel.op in SELECT_OPS:
        B = torch.zeros(d, d, dtype=torch.float64)
        ks, qs = b.spaces[id(sel.keys)], b.spaces[id(sel.queries)]
        for sp, s in ((ks, sel.keys), (qs, sel.queries)):
            if sp.kind != "cat":
                raise CompileError(
                    f"The select {_where(sel)} compares the averaged value {_where(s)}, "
                    "which the compiled model holds as a magnitude, not a one-hot; round or "
                    "bucket it with a map first.")
        for i, kv in enumerate(ks.values):
            for j, qv in enumerate(qs.values):
                B[ks.start + i, qs.start + j] = float(_pred(sel.op, kv, qv))
        return B
    parts = [_bilinear(b, p, d) for p in sel.parts]
    if sel.op == "not":
        return -parts[0]
    return parts[0] + parts[1]  # and: both selected score highest; or: checked below


def _check_scores(b: _Builder, sel: Select, B: torch.Tensor, x: torch.Tensor) -> None:
    """Selected keys must score exactly the row's top and the others at least 1 less."""
    s = torch.einsum("bkd,de,bqe->bqk", x, B, x)  # [B, q, k]
    chosen = b.res[sel]  # [B, q, k]
    keyreal = b.real[:, None, :]
    if bool(((~chosen.any(-1)) & b.real).any()):
        bi, qi = (int(v) for v in ((~chosen.any(-1)) & b.real).nonzero()[0])
        raise CompileError(
            f"The select {_where(sel)} selects no key for query {qi} of the input "
            f"{b.describe(bi)}: the compiled model has no key to fall back on for the "
            "aggregate's default. Compile programs whose selects always select a key "
            "(e.g. `sel or select(indices, 0, ==)` on inputs with BOS).")
    top = torch.where(chosen, s, -math.inf).amax(-1, keepdim=True)
    low = torch.where(chosen | ~keyreal, -math.inf, s).amax(-1, keepdim=True)
    same = torch.where(chosen, s == top, True).all(-1)
    bad = (~same | (low > top - 1).squeeze(-1)) & b.real
    if bool(bad.any()):
        bi, qi = (int(v) for v in bad.nonzero()[0])
        raise CompileError(
            f"The select {_where(sel)} cannot be one head of one-hot comparisons: on the "
            f"input {b.describe(bi)}, query {qi}, the sum of its parts' scores does not "
            "rank exactly the selected keys first (an `or` of selects that can both hold, "
            "or comparisons of different s-ops combined). Compiled: plain selects, `and`, "
            "`not`, and `or` of parts that never hold together.")


def _describe(b: _Builder, row: int) -> str:
    m = int(b.lengths[row])
    return repr([b.input_values[i] for i in b.ids[row, :m].tolist()])


_Builder.describe = _describe


def _residual(b: _Builder, upto: set) -> torch.Tensor:
    """The residual stream the weights will hold, from the evaluator's values: [B, n, d]
    (float64), for the s-ops in ``upto``."""
    B, n = b.ids.shape
    x = torch.zeros(B, n, b.width, dtype=torch.float64)
    for node in b.nodes:
        if id(node) not in upto or id(node) not in b.spaces:
            continue
        sp = b.spaces[id(node)]
        for r, row in enumerate(b.values(node)):
            for p, v in enumerate(row):
                if sp.kind == "cat":
                    x[r, p, sp.index(v)] = 1.0
                else:
                    x[r, p, sp.start] = float(v)
    return x


def _lookup(b: _Builder, node, frontier) -> tuple[dict, list]:
    """Observed (frontier values) -> node value, checked to be a function."""
    fv = [b.values(f) for f in frontier]
    table: dict = {}
    for r, row in enumerate(b.values(node)):
        for p, v in enumerate(row):
            key = tuple(_key(f[r][p]) for f in fv)
            table.setdefault(key, ([f[r][p] for f in fv], v))
    return table, fv


def _ffn_units(b: _Builder, node, frontier, out: Space):
    """(W1 rows [u, d], b1 [u], W2 cols [d, u]) of a map read from ``frontier``."""
    d = b.width
    table, _ = _lookup(b, node, frontier)
    cats = [f for f in frontier if b.spaces[id(f)].kind == "cat"]
    nums = [f for f in frontier if b.spaces[id(f)].kind == "num"]
    if len(nums) > 1:
        raise CompileError(f"The map {_where(node)} reads two averaged values "
                           f"({', '.join(n.name for n in nums)}); compiled maps read at most "
                           "one magnitude.")
    pos_of = {id(f): i for i, f in enumerate(frontier)}
    ci = [pos_of[id(c)] for c in cats]
    groups: dict = {}
    for vals, v in table.values():
        ck = tuple(_key(vals[i]) for i in ci)
        x = float(vals[pos_of[id(nums[0])]]) if nums else 0.0
        groups.setdefault(ck, ([vals[i] for i in ci], {}))[1].setdefault(x, v)
    xs_all = sorted({x for _, g in groups.values() for x in g})
    span = (xs_all[-1] - xs_all[0]) if xs_all else 0.0
    W1, b1, W2 = [], [], []
    for cvals, g in groups.values():
        match = torch.zeros(d, dtype=torch.float64)
        for c, v in zip(cats, cvals, strict=True):
            match[b.spaces[id(c)].index(v)] = 1.0
        xs = sorted(g)
        gap = min((q - p for p, q in zip(xs, xs[1:], strict=False)), default=1.0)
        K = 4.0 / gap
        M = K * span + 4.0  # gate: a non-matching combination drives the ramp negative
        nc = len(cats)
        # the first value: relu(matches - nc + 1), 1 exactly on this combination
        W1.append(match.clone())
        b1.append(1.0 - nc)
        W2.append(torch.zeros(d, dtype=torch.float64))
        W2[-1][out.index(g[xs[0]])] += 1.0
        for lo, hi in zip(xs, xs[1:], strict=False):
            t = (lo + hi) / 2
            dirn = torch.zeros(d, dtype=torch.float64)
            dirn[out.index(g[hi])] += 1.0
            dirn[out.index(g[lo])] -= 1.0
            for shift, sign in ((0.5, 1.0), (-0.5, -1.0)):  # clip(K(x-t)+.5, 0, 1)
                w = M * match
                w[b.spaces[id(nums[0])].start] += K
                W1.append(w)
                b1.append(-K * t + shift - M * nc)
                W2.append(sign * dirn)
    return W1, b1, W2


def build(output: SOp, vocab, max_len: int, bos: bool = False) -> Weights:
    """Compile ``output`` for inputs of ``vocab`` of up to ``max_len`` tokens."""
    from rasp_hydra.config import ModelConfig, Norm, Positions
    from rasp_hydra.model import Encoder
    from rasp_hydra.tasks.program import class_name, make_program_task

    task = make_program_task(output, alphabet=vocab, bos=bos, max_len=max_len)
    fam = task.family_impl
    ids, lengths, exhaustive = enumerate_inputs(fam._alphabet, max_len, bos, task.bos_id,
                                                task.pad_id)
    b = _Builder(output, task, ids, lengths)
    b.input_values = fam.input_values
    c = b.compiled
    n_pos = ids.shape[1]
    # --- spaces ------------------------------------------------------------------------
    for node in b.nodes:
        if isinstance(node, Select):
            continue
        if isinstance(node, Aggregate):
            uniform = _uniform(b, node)
            src = b.spaces[id(node.sop)]
            if uniform and src.kind == "cat":
                b.add_space(node, "cat", src.values)
            else:
                if not all(isinstance(v, int | float) for v in b.distinct(node.sop)):
                    raise CompileError(f"The aggregate {_where(node)} averages several "
                                       "keys of non-numeric values.")
                b.add_space(node, "num")
        else:
            b.add_space(node, "cat", b.distinct(node))
    d_res = b.width
    # --- heads -------------------------------------------------------------------------
    H = max(c.budget.max_heads, 1)
    need = 1
    heads = {}
    for (layer, h), sel in c.head_selects.items():
        aggs = [s for s in c.sops_by_layer.get(layer, [])
                if isinstance(s, Aggregate) and s.select is sel]
        B = _bilinear(b, sel, d_res)
        known = {id(n) for n in b.nodes if b.layer(n) < layer or
                 (isinstance(n, Input)) or (isinstance(n, Map) and n.is_constant)}
        _check_scores(b, sel, B, _residual(b, known))
        krows = sorted({i for i in range(d_res) if bool(B[i].ne(0).any())})
        vdims = sum(b.spaces[id(a)].size for a in aggs)
        need = max(need, len(krows), vdims)
        heads[(layer, h)] = (B, krows, aggs)
    hs = max(need, -(-d_res // H))
    d_model = hs * H
    units = {}
    for layer in range(-1, c.layers):
        for node in c.sops_by_layer.get(layer, []):
            if isinstance(node, Map) and not node.is_constant and layer >= 0:
                units[id(node)] = _ffn_units(b, node, b.frontier(node, layer),
                                             b.spaces[id(node)])
    ff = max([1] + [sum(len(units[id(n)][0]) for n in c.sops_by_layer.get(layer, [])
                        if id(n) in units) for layer in range(c.layers)])
    cfg = ModelConfig(layers=c.layers, heads=H, d_model=d_model, ff=ff, dropout=0.0,
                      positions=Positions.learned, max_len=n_pos, norm=Norm.none)
    model = Encoder(cfg, task.vocab_size, task.n_out, task.pad_id).double()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        _write_embedding(b, model, fam, c)
        for (layer, h), (B, krows, aggs) in heads.items():
            _write_head(b, model.layers[layer].attn, h, hs, d_model, B, krows, aggs)
        for layer in range(c.layers):
            col = 0
            lay = model.layers[layer]
            for node in c.sops_by_layer.get(layer, []):
                if id(node) not in units:
                    continue
                W1, b1, W2 = units[id(node)]
                for w, bb, w2 in zip(W1, b1, W2, strict=True):
                    lay.ff1.weight[col, :d_res] = w
                    lay.ff1.bias[col] = bb
                    lay.ff2.weight[:d_res, col] = w2
                    col += 1
        out = b.spaces[id(output)]
        if out.kind != "cat":
            raise CompileError(f"The output {_where(output)} is an averaged magnitude; "
                               "the classifier reads one-hot values: round it in the program.")
        cls = {name: i for i, name in enumerate(task.out_classes)}
        for j, v in enumerate(out.values):
            if class_name(v) in cls:
                model.classifier.weight[cls[class_name(v)], out.start + j] = CLASS_LOGIT
    model = model.float().eval()
    return Weights(model, task, c, d_res, (ids, lengths), exhaustive, b.spaces)


def _uniform(b: _Builder, agg: Aggregate) -> bool:
    """Whether the selected keys of every query hold one value (copying is exact)."""
    sel = b.res[agg.select]
    vals = b.values(agg.sop)
    for r in range(sel.shape[0]):
        m = int(b.lengths[r])
        keys = [_key(v) for v in vals[r]]
        for q in range(m):
            got = {keys[k] for k in sel[r, q, :m].nonzero().flatten().tolist()}
            if len(got) > 1:
                return False
    return True


def _write_embedding(b: _Builder, model, fam, c) -> None:
    emb, pos = model.embed.weight, model.pos
    for node in b.nodes:
        if isinstance(node, Select) or id(node) not in b.spaces:
            continue
        if not (isinstance(node, Input) or (isinstance(node, Map) and b.layer(node) < 0)):
            continue
        sp = b.spaces[id(node)]
        front = [node] if isinstance(node, Input) else b.frontier(node, -1)
        kinds = {f.kind if isinstance(f, Input) else "const" for f in front}
        kinds.discard("const")
        if node is not None and isinstance(node, Map) and node.is_constant:
            pos[:, sp.index(node.value)] = 1.0
        elif kinds == {"indices"} or not kinds:
            for row in b.values(node):
                for p, v in enumerate(row):
                    pos[p, sp.index(v)] = 1.0
        elif "indices" not in kinds:
            vals = b.values(node)
            for r in range(len(vals)):
                for p, v in enumerate(vals[r]):
                    emb[int(b.ids[r, p]), sp.index(v)] = 1.0
        else:
            raise CompileError(
                f"The s-op {_where(node)} is a map of tokens and indices together before "
                "the first attention layer, which neither embedding table can hold "
                "(the token and position tables add); compute it from an aggregate's output "
                "or from tokens and indices apart.")


def _write_head(b, attn, h, hs, d_model, B, krows, aggs) -> None:
    W = attn.qkv.weight  # rows: q (d_model), k, v; head h owns rows h*hs..(h+1)*hs
    d = B.shape[0]
    scale = SCORE * math.sqrt(hs)
    for j, i in enumerate(krows):
        W[d_model + h * hs + j, i] = 1.0  # key: its one-hot dims
        W[h * hs + j, :d] = scale * B[i]  # query: the predicate's row
    col = 0
    for a in aggs:
        src, dst = b.spaces[id(a.sop)], b.spaces[id(a)]
        for j in range(dst.size):
            vrow = 2 * d_model + h * hs + col + j
            if dst.kind == "cat":
                W[vrow, src.start + j] = 1.0
            elif src.kind == "cat":
                W[vrow, src.start:src.start + src.size] = torch.tensor(
                    [float(v) for v in src.values], dtype=W.dtype)
            else:
                W[vrow, src.start] = 1.0
            attn.proj.weight[dst.start + j, h * hs + col + j] = 1.0
        col += dst.size


def to_weights(output: SOp, vocab, max_len: int, bos: bool = False):
    """The Encoder computing ``output`` (see the module docstring)."""
    return build(output, vocab, max_len, bos).model


@dataclass
class Check:
    """What ``check_weights`` compared: inputs, positions, and whether every input was."""

    inputs: int
    positions: int
    exhaustive: bool
    mismatches: int = 0


def check_weights(model, output: SOp, vocab, max_len: int, bos: bool = False,
                  batch: int = 4096) -> Check:
    """Run ``model`` against the evaluator on every input of up to ``max_len`` tokens
    (or SAMPLED per length, with the constant sequences, when there are more than
    EXHAUSTIVE); outputs are categorical, so every position must agree. A mismatch is a
    ``CompileError`` naming the output, the input and both values."""
    import torch

    from rasp_hydra.tasks.program import make_program_task

    task = make_program_task(output, alphabet=vocab, bos=bos, max_len=max_len)
    fam = task.family_impl
    ids, lengths, exhaustive = enumerate_inputs(fam._alphabet, max_len, bos, task.bos_id,
                                                task.pad_id, seed=1)
    classes = list(task.out_classes)
    model = model.eval()
    positions = 0
    for s in range(0, len(ids), batch):
        x, n = ids[s:s + batch], lengths[s:s + batch]
        want = task.outputs(x, n)
        with torch.no_grad():
            got = model(x, n)[0].argmax(-1)
        real = torch.arange(x.shape[1])[None, :] < n[:, None]
        bad = (got != want) & real
        positions += int(real.sum())
        if bool(bad.any()):
            r, p = (int(v) for v in bad.nonzero()[0])
            m = int(n[r])
            inp = [fam.input_values[i] for i in x[r, :m].tolist()]
            exp = [classes[i] for i in want[r, :m].tolist()]
            out = [classes[i] for i in got[r, :m].tolist()]
            raise CompileError(
                f"The compiled model disagrees with the program on the output "
                f"{_where(output)}: on the input {inp!r}, position {p}, the program gives "
                f"{exp[p]!r} and the model {out[p]!r} (program {exp}, model {out}). "
                f"{int(bad.sum())} positions of this batch differ; the weights are wrong.")
    return Check(len(ids), positions, exhaustive)
