import pytest
import torch

from rasp_hydra.config import ModelConfig
from rasp_hydra.model import Encoder, sinusoids


def make(layers=2, heads=2, positions="sin", dropout=0.0):
    torch.manual_seed(0)
    cfg = ModelConfig(layers=layers, heads=heads, d_model=16, ff=32, dropout=dropout,
                      positions=positions, max_len=9)
    return Encoder(cfg, vocab_size=12, n_out=7, pad_id=11).eval()


def batch():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 10, (4, 9), generator=g)
    lengths = torch.tensor([9, 5, 1, 7])
    tokens[torch.arange(9)[None, :] >= lengths[:, None]] = 11
    return tokens, lengths


@pytest.mark.parametrize("positions", ["sin", "learned"])
def test_shapes(positions):
    model = make(positions=positions)
    tokens, lengths = batch()
    logits, attn, scores = model(tokens, lengths)
    assert logits.shape == (4, 9, 7) and attn is None and scores is None
    logits, attn, scores = model(tokens, lengths, need_attention=True)
    assert len(attn) == len(scores) == 2
    assert attn[0].shape == scores[1].shape == (4, 2, 9, 9)
    _, attn, scores = model(tokens, lengths, need_attention=[1])
    assert attn[0] is None and attn[1].shape == (4, 2, 9, 9)


def test_fused_and_explicit_attention_agree():
    model = make()
    tokens, lengths = batch()
    fused, _, _ = model(tokens, lengths)
    explicit, attn, _ = model(tokens, lengths, need_attention=True)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    real = torch.arange(9)[None, :] < lengths[:, None]
    for a in attn:  # rows sum to one; no mass on padded keys
        torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)))
        assert (a * ~real[:, None, None, :]).abs().max() == 0


def test_padding_does_not_change_real_positions():
    model = make()
    tokens, lengths = batch()
    logits, attn, _ = model(tokens, lengths, need_attention=True)
    for i, n in enumerate(lengths.tolist()):
        alone, a1, _ = model(tokens[i:i + 1, :n], lengths[i:i + 1], need_attention=True)
        torch.testing.assert_close(logits[i, :n], alone[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(attn[1][i, :, :n, :n], a1[1][0], atol=1e-5, rtol=1e-5)
    # whatever sits in the padding does not matter either
    other = tokens.clone()
    other[torch.arange(9)[None, :] >= lengths[:, None]] = 3
    logits2, _, _ = model(other, lengths)
    real = torch.arange(9)[None, :] < lengths[:, None]
    torch.testing.assert_close(logits[real], logits2[real], atol=1e-5, rtol=1e-5)


def test_gradients_flow_and_pad_embedding_frozen():
    model = make(dropout=0.1).train()
    tokens, lengths = batch()
    logits, attn, _ = model(tokens, lengths, need_attention=True)
    (logits.sum() + attn[0].sum()).backward()
    assert all(p.grad is not None for n, p in model.named_parameters())
    assert model.embed.weight.grad[11].abs().max() == 0


def test_config_checks():
    with pytest.raises(ValueError, match="divisible"):
        Encoder(ModelConfig(heads=3, d_model=16, ff=32, max_len=9), vocab_size=5, n_out=3,
                pad_id=4)
    with pytest.raises(ValueError, match="positions"):
        Encoder(ModelConfig(ff=256, positions="rope", max_len=101), vocab_size=5, n_out=3,
                pad_id=4)
    model = make()
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 10, dtype=torch.long), torch.tensor([10]))


def test_sinusoids():
    pe = sinusoids(5, 6)
    assert pe.shape == (5, 6)
    assert torch.equal(pe[0, 0::2], torch.zeros(3)) and torch.equal(pe[0, 1::2], torch.ones(3))
