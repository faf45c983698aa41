"""The training objective and the metrics, batched over whole batches (no loop over
samples or positions): each sequence's mean cross-entropy, the attention loss of supervised
heads towards their row-normalized target selectors, the attention match of selector heads
(with uniform attention's match as its chance level), and `evaluate`, which sums them over a
split on the device. Its one reason to change: what is measured, and how.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rasp_hydra import runs
from rasp_hydra.config import ModelConfig
from rasp_hydra.tasks import IGNORE  # the target id of padding, which the loss skips


def present_heads(heads, model_cfg: ModelConfig) -> tuple:
    return tuple(h for h in heads if h[0] < model_cfg.layers and h[1] < model_cfg.heads)


def selector_targets(sel: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Row-normalized target of a boolean selector (B, n, n): S / row sum, with 1e-8 added
    to every real key before dividing, so an empty row becomes uniform over real keys
    (docs/tasks.md) and a non-empty row is S / (count + n * 1e-8)."""
    s = sel.to(torch.float32) + 1e-8 * key_mask[:, None, :]
    return s / s.sum(-1, keepdim=True)


def _valid(lengths: torch.Tensor, n: int) -> torch.Tensor:
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]  # (B, n)


def attention_terms(task, tokens, lengths, attn, heads, need_mse: bool, need_match: bool):
    """Per-head attention MSE to the target (sum, count) and attention match (sum, rows).

    attn: list per layer of probs (B, H, n, n). Returns (sq_err (K,), n_elems, match (K,),
    uniform (K,), n_rows) as tensors; K = len(heads). `uniform` is the match that uniform
    attention over the real keys would score on the same rows: the chance level of the match.
    """
    B, n = tokens.shape
    valid = _valid(lengths, n)  # (B, n)
    sels = task.selectors(tokens, lengths, heads=heads)
    S = torch.stack([sels[h] for h in heads]).to(attn[heads[0][0]].device)  # (K, B, n, n)
    P = torch.stack([attn[layer][:, head] for layer, head in heads])  # (K, B, n, n)
    rows = valid.sum()
    out = {}
    if need_mse:
        T = selector_targets(S.flatten(0, 1), valid.repeat(len(heads), 1)).view_as(P)
        # P and T are exactly 0 on padded keys, so only padded query rows need masking
        sq = ((P - T) ** 2).sum(-1)  # (K, B, n)
        out["sq_err"] = (sq * valid).sum((1, 2))  # (K,)
        out["n_elems"] = (lengths.to(P.dtype) ** 2).sum()  # real (query, key) pairs
    if need_match:
        mass = (P * S).sum(-1)  # (K, B, n): attention mass on selected keys per query
        out["match"] = (mass * valid).sum((1, 2))  # (K,)
        picked = (S & valid[None, :, None, :]).sum(-1) / lengths[None, :, None]  # (K, B, n)
        out["uniform"] = (picked * valid).sum((1, 2))  # (K,)
        out["rows"] = rows
    return out


def sequence_loss(logits, targets, lengths):
    """Mean over the batch of each sequence's mean token cross-entropy (sum form too)."""
    B, n, C = logits.shape
    ce = F.cross_entropy(logits.reshape(B * n, C), targets.reshape(B * n),
                         ignore_index=IGNORE, reduction="none").view(B, n)
    per_seq = ce.sum(1) / lengths.to(ce.dtype)  # (B,)
    return per_seq


@torch.no_grad()
def evaluate(model, task, split, batch_size: int, device, supervised=(), measured=(),
             attn_loss_c: float = 0.0) -> dict:
    """Loss (objective), token and sequence accuracy, and per-head attention match."""
    from rasp_hydra.data import batches

    was_training = model.training
    model.eval()
    heads = tuple(dict.fromkeys((*supervised, *measured)))
    layers = sorted({h[0] for h in heads})
    # sums stay on the device and are read once at the end: no host sync per batch
    zeros = lambda *shape, dtype=torch.float64: torch.zeros(shape, dtype=dtype,  # noqa: E731
                                                            device=device)
    seq_loss, n_elems, rows = zeros(), zeros(), zeros()
    correct, seq_ok = zeros(dtype=torch.int64), zeros(dtype=torch.int64)
    sq_err, match, uniform = zeros(len(supervised)), zeros(len(measured)), zeros(len(measured))
    total = n_seq = 0
    for tokens, lengths, targets in batches(split, batch_size, shuffle=False):
        total += int(lengths.sum())  # still on the CPU
        n_seq += tokens.shape[0]
        tokens, lengths, targets = (t.to(device) for t in (tokens, lengths, targets))
        logits, attn, _ = model(tokens, lengths, need_attention=layers)
        seq_loss += sequence_loss(logits, targets, lengths).double().sum()
        pred = logits.argmax(-1)
        ok = (pred == targets) | (targets == IGNORE)
        correct += (pred == targets).sum()
        seq_ok += ok.all(1).sum()
        if supervised:
            t = attention_terms(task, tokens, lengths, attn, supervised, True, False)
            sq_err += t["sq_err"].double()
            n_elems += t["n_elems"].double()
        if measured:
            t = attention_terms(task, tokens, lengths, attn, measured, False, True)
            match += t["match"].double()
            uniform += t["uniform"].double()
            rows += t["rows"].double()
    model.train(was_training)
    correct, seq_ok, rows = int(correct), int(seq_ok), float(rows)
    loss = float(seq_loss) / max(n_seq, 1)
    out = {"loss": loss, "token_acc": correct / max(total, 1),
           "seq_acc": seq_ok / max(n_seq, 1)}
    if supervised:
        attn_mse = float(sq_err.mean()) / max(float(n_elems), 1.0)
        out["loss"] = loss + attn_loss_c * attn_mse
        out["attn_loss"] = attn_mse
    out["attention_match"] = {runs.head_key(h): float(m) / max(rows, 1.0)
                              for h, m in zip(measured, match.tolist(), strict=True)}
    out["attention_uniform"] = {runs.head_key(h): float(u) / max(rows, 1.0)
                                for h, u in zip(measured, uniform.tolist(), strict=True)}
    out["perfect"] = correct == total
    return out
