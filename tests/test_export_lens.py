"""Export to TransformerLens (rasp_hydra/export/): a HookedTransformer with bidirectional
attention and no normalization whose logits equal the Encoder's, on padded batches and
on unpadded sequences of every length; a model with LayerNorm refused; the command's
files load back. Uses the real transformer_lens (the optional extra `lens`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from rasp_hydra.config import ModelConfig
from rasp_hydra.errors import UserError
from rasp_hydra.model import Encoder
from tests.conftest import TINY, cli

pytest.importorskip("transformer_lens", reason="the optional extra 'lens' is not installed: "
                    "pip install 'rasp_hydra[lens]'")

from rasp_hydra.export import lens  # noqa: E402

MAX_LEN, VOCAB, PAD = 9, 7, 6


def no_norm_encoder(positions: str, heads: int, seed: int, scale: float = 2.0,
                    dtype=torch.float64) -> Encoder:
    """A random Encoder without LayerNorm, its weights scaled up to make mistakes show."""
    torch.manual_seed(seed)
    cfg = ModelConfig(layers=3, heads=heads, d_model=12, ff=20, max_len=MAX_LEN,
                      positions=positions)
    enc = Encoder(cfg, vocab_size=VOCAB, n_out=5, pad_id=PAD)
    for layer in enc.layers:
        layer.ln1, layer.ln2 = nn.Identity(), nn.Identity()
    with torch.no_grad():
        for p in enc.parameters():
            p.mul_(scale)
    return enc.to(dtype).eval()


def padded_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.arange(n) % MAX_LEN + 1  # every length 1..MAX_LEN
    tokens = torch.randint(0, PAD, (n, MAX_LEN), generator=g)
    tokens[torch.arange(MAX_LEN)[None, :] >= lengths[:, None]] = PAD
    return tokens, lengths


def real_diff(a, b, lengths) -> float:
    real = torch.arange(a.shape[1])[None, :] < lengths[:, None]
    return float((a - b)[real].abs().max())


@pytest.mark.parametrize("positions,heads", [("sin", 2), ("learned", 3), ("sin", 1)])
@pytest.mark.parametrize("dtype,scale", [(torch.float64, 2.0), (torch.float32, 1.0)])
def test_logits_equal_on_padded_batches_and_every_length(positions, heads, dtype, scale):
    """float64 shows the mapping exact; float32 at the initial scale within 1e-5 (at 2x the
    scale float32's own rounding alone reaches 1e-3 on logits of 100)."""
    enc = no_norm_encoder(positions, heads, seed=heads, scale=scale, dtype=dtype)
    model = lens.to_hooked_transformer(enc)
    assert model.cfg.dtype == dtype
    assert model.cfg.attention_dir == "bidirectional" and model.cfg.normalization_type is None
    tokens, lengths = padded_batch(270, seed=1)
    with torch.no_grad():
        ours = enc(tokens, lengths)[0]
    assert real_diff(ours, lens.lens_logits(model, tokens, lengths), lengths) < 1e-5
    for n in range(1, MAX_LEN + 1):  # unpadded: the plain forward, no hook
        rows = lengths == n
        t = tokens[rows, :n]
        with torch.no_grad():
            assert float((enc(t, lengths[rows])[0] - model(t)).abs().max()) < 1e-5


def test_the_weights_have_transformer_lens_names_and_shapes():
    enc = no_norm_encoder("learned", 3, seed=0)
    sd = lens.to_hooked_transformer(enc).state_dict()
    assert sd["blocks.2.attn.W_Q"].shape == (3, 12, 4)
    assert sd["blocks.0.attn.W_O"].shape == (3, 4, 12)
    assert sd["blocks.1.mlp.W_in"].shape == (12, 20)
    assert sd["unembed.W_U"].shape == (12, 5)
    assert torch.equal(sd["pos_embed.W_pos"], enc.pos.detach())
    # head 1's query is rows 4..7 of the Encoder's fused q projection
    assert torch.equal(sd["blocks.0.attn.W_Q"][1], enc.layers[0].attn.qkv.weight[4:8].T)


def test_the_padding_hook_is_what_makes_padded_batches_agree():
    enc = no_norm_encoder("sin", 2, seed=5)
    model = lens.to_hooked_transformer(enc)
    tokens, lengths = padded_batch(40, seed=2)
    with torch.no_grad():
        ours, theirs = enc(tokens, lengths)[0], model(tokens)
    assert real_diff(ours, theirs, lengths) > 1e-3  # unmasked padding changes the logits


def test_a_model_with_layernorm_is_refused():
    enc = Encoder(ModelConfig(layers=1, d_model=8, ff=8, max_len=5), 4, 3, 3)
    with pytest.raises(UserError, match="LayerNorm.*post-norm.*norm=none"):
        lens.to_hooked_transformer(enc)


def test_save_and_load_round_trip(tmp_path):
    enc = no_norm_encoder("sin", 2, seed=7)
    model = lens.to_hooked_transformer(enc)
    weights, config = lens.save(model, lens.lens_config(enc), tmp_path / "m.pt")
    back = lens.load(weights)
    tokens, lengths = padded_batch(30, seed=3)
    assert config.name == "m.json"
    assert torch.equal(lens.lens_logits(back, tokens, lengths),
                       lens.lens_logits(model, tokens, lengths))


def test_the_command_refuses_a_run_with_layernorm_and_writes_nothing(tmp_path: Path):
    run_dir = tmp_path / "run"
    cli("lang=hist_10_bos", "model.layers=1", *TINY, "train.epochs=1",
        f"hydra.run.dir={run_dir}", cwd=tmp_path, check=True)
    out = tmp_path / "m.pt"
    proc = cli(str(run_dir), "--to", "lens", "--out", str(out), cwd=tmp_path,
               module="rasp_hydra.export")
    assert proc.returncode == 2, proc.stderr
    assert "LayerNorm" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not out.with_suffix(".json").exists()
