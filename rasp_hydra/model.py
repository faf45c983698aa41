"""The encoder of "Thinking Like Transformers" (Weiss, Goldberg, Yahav; ICML 2021).

A post-LayerNorm transformer encoder with a linear classifier at every position:

    x = embed(tokens) + positions
    for each layer:  x = LN(x + dropout(attention(x)));  x = LN(x + FF(x))
    logits = classifier(x)            # no final norm

Imports only torch. Attention uses the fused ``F.scaled_dot_product_attention`` unless a
layer's probabilities are asked for (``need_attention``), in which case that layer runs an
explicit softmax and returns its probabilities and pre-softmax scores. ``hidden_states``
returns the residual stream after the embedding and after each layer (for probes).

    >>> cfg = ModelConfig(layers=1, d_model=16, ff=32, max_len=101)
    >>> logits, attn, scores = Encoder(cfg, vocab_size=12, n_out=11, pad_id=11)(
    ...     torch.zeros(2, 5, dtype=torch.long), torch.tensor([5, 3]), need_attention=True)
    >>> tuple(logits.shape), tuple(attn[0].shape)
    ((2, 5, 11), (2, 1, 5, 5))
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from rasp_hydra.checks import check_model_shape
from rasp_hydra.config import ModelConfig, Norm, Positions


def sinusoids(max_len: int, d: int) -> torch.Tensor:
    """The fixed positional encoding of "Attention Is All You Need": (max_len, d)."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(max_len, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # q, k, v in one matmul
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x, mask, explicit: bool):
        # x: (B, n, d); mask: (B, 1, 1, n) bool, True = real key, or None = no padding
        B, n, d = x.shape
        H = self.heads
        q, k, v = self.qkv(x).view(B, n, 3, H, d // H).permute(2, 0, 3, 1, 4)  # (B, H, n, hs)
        p = self.dropout if self.training else 0.0
        probs = scores = None
        if explicit:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // H))  # (B, H, n, n)
            masked = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
            probs = torch.softmax(masked, dim=-1)
            y = (F.dropout(probs, p) if p else probs) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, n, d)  # (B, n, d)
        return self.proj(y), probs, scores


class EncoderLayer(nn.Module):
    """Post-LN: attention, dropout, add, LayerNorm, ReLU feed-forward, add, LayerNorm
    (with norm=none, no LayerNorm: the residual adds only)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        # norm=none: Identity, no LayerNorm module (the TransformerLens export looks for them)
        post = Norm(cfg.norm) == Norm.post
        self.ln1 = nn.LayerNorm(cfg.d_model) if post else nn.Identity()
        self.ff1 = nn.Linear(cfg.d_model, cfg.ff)
        self.ff2 = nn.Linear(cfg.ff, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model) if post else nn.Identity()
        self.dropout = cfg.dropout

    def forward(self, x, mask, explicit: bool):
        p = self.dropout if self.training else 0.0
        a, probs, scores = self.attn(x, mask, explicit)
        x = self.ln1(x + (F.dropout(a, p) if p else a))
        h = self.ff2(torch.relu(self.ff1(x)))
        x = self.ln2(x + (F.dropout(h, p) if p else h))
        return x, probs, scores


class Encoder(nn.Module):
    """The model of a resolved `ModelConfig` (`config.resolve_model`: ff and max_len set)
    for a task's `vocab_size` input ids (BOS and padding included), `n_out` output classes
    and input padding id `pad_id` (its embedding is zero and frozen); `checked`: the shape
    was checked already (job.check_job)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, n_out: int, pad_id: int,
                 checked: bool = False):
        super().__init__()
        if not checked:
            check_model_shape(cfg.layers, cfg.heads, cfg.d_model, cfg.ff, cfg.dropout,
                              cfg.positions)
        if cfg.max_len is None:
            raise ValueError("Encoder needs a resolved ModelConfig (config.resolve_model): "
                             "max_len is None")
        self.cfg, self.vocab_size, self.n_out, self.pad_id = cfg, vocab_size, n_out, pad_id
        self.embed = nn.Embedding(vocab_size, cfg.d_model, padding_idx=pad_id)
        if cfg.positions == "learned":
            self.pos = nn.Parameter(torch.randn(cfg.max_len, cfg.d_model) * 0.02)
        else:
            self.register_buffer("pos", sinusoids(cfg.max_len, cfg.d_model), persistent=False)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.classifier = nn.Linear(cfg.d_model, n_out)

    def config_dict(self) -> dict:
        """A checkpoint's "model_config": the task's sizes and the shape, plain values (the
        checkpoint format: `from_config_dict` reads every checkpoint ever written)."""
        shape = asdict(self.cfg) | {"positions": Positions(self.cfg.positions).value,
                                    "norm": Norm(self.cfg.norm).value}
        return {"vocab_size": self.vocab_size, "n_out": self.n_out, "pad_id": self.pad_id,
                **shape}

    @classmethod
    def from_config_dict(cls, d: dict) -> Encoder:
        """The untrained Encoder of a checkpoint's "model_config"."""
        shape = {k: v for k, v in d.items() if k not in ("vocab_size", "n_out", "pad_id")}
        shape["positions"] = Positions(shape["positions"])
        shape["norm"] = Norm(shape.get("norm", "post"))  # checkpoints before norm: post
        return cls(ModelConfig(**shape), d["vocab_size"], d["n_out"], d["pad_id"])

    def _key_mask(self, tokens: torch.Tensor, lengths: torch.Tensor):
        """Key padding mask (B, 1, 1, n), True = real key; None when the batch has no
        padding (lets SDPA take its fastest path; length-bucketed batches are often
        unpadded)."""
        n = tokens.shape[1]
        if lengths.device.type == "cpu" and int(lengths.min()) >= n:  # no GPU sync
            return None
        valid = torch.arange(n, device=tokens.device)[None, :] < lengths[:, None]  # (B, n)
        return valid[:, None, None, :]

    @torch.no_grad()
    def hidden_states(self, tokens: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """The residual stream, (B, n, d) each: after the embedding (index 0) and after
        each layer l (index l, 1-based), as ``forward`` computes it in eval mode. For
        probes; the training path never calls it."""
        if tokens.shape[1] > self.cfg.max_len:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds model max_len "
                             f"{self.cfg.max_len}")
        mask = self._key_mask(tokens, lengths)
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        out = [x]
        for layer in self.layers:
            x = layer(x, mask, False)[0]
            out.append(x)
        return out

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        need_attention: bool | Iterable[int] = False,
    ):
        """tokens (B, n) long, lengths (B,) long (real positions, BOS included).

        need_attention: False (fused attention everywhere), True (every layer), or the
        layer indices whose probabilities are wanted.
        Returns logits (B, n, n_out) and, when any layer is explicit, two lists with one
        entry per layer (None for fused layers): attention probabilities (B, H, n, n)
        (rows = queries, zero on padded keys) and pre-softmax scores (B, H, n, n)
        (scaled q.k, padded keys not masked); otherwise None, None.
        """
        B, n = tokens.shape
        if n > self.cfg.max_len:
            raise ValueError(f"sequence length {n} exceeds model max_len {self.cfg.max_len}")
        if need_attention is True:
            explicit = set(range(len(self.layers)))
        elif need_attention is False or need_attention is None:
            explicit = set()
        else:
            explicit = set(need_attention)
        mask = self._key_mask(tokens, lengths)
        x = self.embed(tokens) + self.pos[:n]  # (B, n, d)
        if self.training and self.cfg.dropout:
            x = F.dropout(x, self.cfg.dropout)
        attns, scores = [], []
        for i, layer in enumerate(self.layers):
            x, a, s = layer(x, mask, i in explicit)
            attns.append(a)
            scores.append(s)
        logits = self.classifier(x)  # (B, n, n_out)
        if not explicit:
            return logits, None, None
        return logits, attns, scores
