"""An Encoder without LayerNorm as TransformerLens's `HookedTransformer`.

The weights keep TransformerLens's names (``embed.W_E``, ``pos_embed.W_pos``,
``blocks.{i}.attn.W_Q`` (heads, d_model, d_head) ... ``b_O``, ``blocks.{i}.mlp.W_in`` /
``W_out``, ``unembed.W_U``), so an exported model reads as theirs do. The Encoder's fixed
sinusoids become a learned-position table holding the sinusoids; BOS is a token like any
other (the Encoder's input ids are passed as they are, nothing is prepended).

Padding: a bidirectional `HookedTransformer` does not mask padded keys (its
``attention_mask`` only shifts positions), so `lens_logits` runs a padded batch with one
hook per layer that masks them as the Encoder does; unpadded sequences need no hook.

Saved as two files (`save`): the state dict by ``torch.save`` (tensors only, loads with
``weights_only=True``) and the config's keyword arguments as JSON beside it (`load`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from rasp_hydra.errors import UserError

INSTALL = "pip install 'rasp_hydra[lens]'"


def _transformer_lens():
    try:
        import transformer_lens
    except ImportError:
        raise UserError("Exporting to TransformerLens needs the optional extra: "
                        f"{INSTALL} (transformer-lens 3.x, which still has "
                        "HookedTransformer).") from None
    return transformer_lens


def check_exportable(encoder: nn.Module) -> None:
    """Refuse an Encoder that a HookedTransformer without normalization cannot copy."""
    norms = [name for name, m in encoder.named_modules() if isinstance(m, nn.LayerNorm)]
    if norms:
        raise UserError(
            f"This model has LayerNorm ({len(norms)} of them, e.g. {norms[0]}), so it cannot "
            "be exported to TransformerLens as it is: a HookedTransformer's LayerNorm is "
            "pre-norm (before attention and feed-forward) while the Encoder's is post-norm "
            "(after each residual add), and folding one into the other changes the "
            "function. Export a model without normalization: a compiled model, or a run "
            "trained with model.norm=none.")


def lens_config(encoder: nn.Module) -> dict:
    """The HookedTransformerConfig keyword arguments (plain JSON values) of `encoder`."""
    cfg = encoder.cfg
    return {
        "n_layers": cfg.layers, "d_model": cfg.d_model, "n_heads": cfg.heads,
        "d_head": cfg.d_model // cfg.heads, "d_mlp": cfg.ff, "d_vocab": encoder.vocab_size,
        "d_vocab_out": encoder.n_out, "n_ctx": cfg.max_len, "act_fn": "relu",
        "normalization_type": None, "attention_dir": "bidirectional",
        "positional_embedding_type": "standard", "default_prepend_bos": False,
        "original_architecture": "rasp_hydra.Encoder",
        "dtype": str(encoder.embed.weight.dtype).removeprefix("torch."),
    }


def _state_dict(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The Encoder's weights under TransformerLens's names and shapes."""
    d, H = encoder.cfg.d_model, encoder.cfg.heads
    hs = d // H
    sd = {"embed.W_E": encoder.embed.weight, "pos_embed.W_pos": encoder.pos,
          "unembed.W_U": encoder.classifier.weight.T, "unembed.b_U": encoder.classifier.bias}
    for i, layer in enumerate(encoder.layers):
        a, p = layer.attn, f"blocks.{i}."
        w = a.qkv.weight.view(3, H, hs, d).transpose(2, 3)  # (3, H, d, hs): x @ W
        b = a.qkv.bias.view(3, H, hs)
        for j, name in enumerate("QKV"):
            sd[p + f"attn.W_{name}"], sd[p + f"attn.b_{name}"] = w[j], b[j]
        sd[p + "attn.W_O"] = a.proj.weight.T.reshape(H, hs, d)  # rows: head h's z
        sd[p + "attn.b_O"] = a.proj.bias
        sd[p + "mlp.W_in"], sd[p + "mlp.b_in"] = layer.ff1.weight.T, layer.ff1.bias
        sd[p + "mlp.W_out"], sd[p + "mlp.b_out"] = layer.ff2.weight.T, layer.ff2.bias
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def from_config(kwargs: dict, state: dict | None = None):
    """A HookedTransformer (eval mode, CPU) of `lens_config` arguments and its weights."""
    tl = _transformer_lens()
    kwargs = kwargs | {"dtype": getattr(torch, kwargs.get("dtype", "float32"))}
    with warnings.catch_warnings():  # 3.x's notice that 4.0 drops HookedTransformer
        warnings.filterwarnings("ignore", "HookedTransformer is deprecated",
                                DeprecationWarning)
        model = tl.HookedTransformer(tl.HookedTransformerConfig(**kwargs, init_weights=False,
                                                                device="cpu"))
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        # the only keys left to the model are its own buffers (masks, IGNORE)
        left = [k for k in missing if not k.endswith(("mask", "IGNORE"))]
        if left or unexpected:
            raise ValueError(f"weights do not fit the HookedTransformer: missing {left}, "
                             f"unexpected {unexpected}")
    return model.eval()


def to_hooked_transformer(encoder: nn.Module):
    """The HookedTransformer computing what `encoder` computes (refused: LayerNorm)."""
    check_exportable(encoder)
    return from_config(lens_config(encoder), _state_dict(encoder))


def _mask_hook(lengths: torch.Tensor):
    def hook(scores, hook):  # (B, H, n, n): padded keys get no weight, as in the Encoder
        n = scores.shape[-1]
        pad = torch.arange(n, device=scores.device)[None, :] >= lengths[:, None]  # (B, n)
        return scores.masked_fill(pad[:, None, None, :], float("-inf"))
    return hook


@torch.no_grad()
def lens_logits(model, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Logits (B, n, n_out) of a HookedTransformer on an Encoder batch (padded or not)."""
    if int(lengths.min()) >= tokens.shape[1]:
        return model(tokens)
    hook = _mask_hook(lengths)
    hooks = [(f"blocks.{i}.attn.hook_attn_scores", hook) for i in range(model.cfg.n_layers)]
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


def save(model, kwargs: dict, out) -> tuple[Path, Path]:
    """FILE (the state dict) and FILE's .json (the config), each written atomically."""
    out = Path(out)
    cfg_path = out.with_suffix(".json")
    for path, write in ((out, lambda f: torch.save(model.state_dict(), f)),
                        (cfg_path, lambda f: f.write(json.dumps(kwargs, indent=1).encode()))):
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    return out, cfg_path


def load(path):
    """The HookedTransformer that `save` wrote to `path` (and `path`'s .json)."""
    path = Path(path)
    kwargs = json.loads(path.with_suffix(".json").read_text())
    return from_config(kwargs, torch.load(path, map_location="cpu", weights_only=True))
