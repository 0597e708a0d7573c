"""The Transformer's behaviour: shapes, causality, padding, caching, fused attention, scores."""

import pytest
import torch

from seq2seq.model.attention import SCORES, MultiHeadAttention
from seq2seq.model.masks import padding_mask, target_mask
from seq2seq.model.transformer import count_parameters
from tests.conftest import (
    BOS,
    PAD,
    VOCAB,
    assert_cached_decoding_matches_full,
    random_ids,
    tiny_model,
)


def forward(model, src, tgt_in):
    return model(src, tgt_in, padding_mask(src, PAD), target_mask(tgt_in, PAD))


def test_shapes(model):
    src, tgt = random_ids(3, 7), random_ids(3, 5, seed=2)
    memory, _ = model.encode(src, padding_mask(src, PAD))
    assert memory.shape == (3, 7, 32)
    assert forward(model, src, tgt).shape == (3, 5, VOCAB)


@pytest.mark.parametrize("attention", SCORES)
def test_causality_changing_a_later_token_leaves_earlier_outputs(attention):
    model = tiny_model(attention)
    src, tgt = random_ids(2, 6), random_ids(2, 8, seed=2)
    changed = tgt.clone()
    changed[:, 5:] = random_ids(2, 3, seed=3)
    a, b = forward(model, src, tgt), forward(model, src, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("attention", SCORES)
def test_source_padding_does_not_change_outputs(attention):
    model = tiny_model(attention)
    src, tgt = random_ids(1, 6), random_ids(1, 5, seed=2)
    padded = torch.cat([src, torch.full((1, 4), PAD)], dim=1)
    torch.testing.assert_close(forward(model, src, tgt), forward(model, padded, tgt),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", SCORES)
def test_masked_positions_get_zero_weight(attention):
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, dropout=0.0, score=attention).eval()
    x = torch.randn(2, 5, 32)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)[:, None, None, :]
    k, v = attn.keys_values(x)
    _, weights = attn(attn.queries(x), k, v, mask, need_weights=True)
    assert weights.shape == (2, 4, 5, 5)
    assert torch.all(weights[0, :, :, 3:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 5))


def test_projections_in_one_product_equal_one_product_each():
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, dropout=0.0)
    x = torch.randn(2, 5, 32)
    q, k, v = attn.queries_keys_values(x)
    for got, proj in zip((q, k, v), (attn.q_proj, attn.k_proj, attn.v_proj), strict=True):
        torch.testing.assert_close(got, attn.split(proj(x)), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torch.stack(attn.keys_values(x)), torch.stack((k, v)))
    q.sum().backward()  # the gradient reaches the separate parameters
    assert attn.q_proj.weight.grad.abs().sum() > 0 and not attn.k_proj.weight.grad.any()


def test_fused_attention_matches_plain_path():
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, dropout=0.0, score="scaled_dot").eval()
    x, mem = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    mask = padding_mask(torch.tensor([[5] * 7, [5] * 4 + [PAD] * 3]), PAD)
    k, v = attn.keys_values(mem)
    q = attn.queries(x)
    fused, none = attn(q, k, v, mask, need_weights=False)
    plain, weights = attn(q, k, v, mask, need_weights=True)
    assert none is None and weights is not None
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


def test_attention_dropout_on_cpu_drops_weights_outside_sdpa(monkeypatch):
    """Training with attention dropout avoids SDPA's per-element Bernoulli fallback on a CPU,
    and the dropped weights average back to the eval-mode output."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, dropout=0.3, score="scaled_dot").eval()
    x = torch.randn(1, 3, 32).expand(4000, 3, 32)
    k, v = attn.keys_values(x)
    q = attn.queries(x)
    expected, _ = attn(q[:1], k[:1], v[:1], None)
    monkeypatch.setattr("torch.nn.functional.scaled_dot_product_attention",
                        lambda *a, **kw: pytest.fail("SDPA called with dropout on a CPU"))
    out, _ = attn.train()(q, k, v, None)
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(out.mean(0, keepdim=True), expected, rtol=0, atol=0.03)


def test_bf16_autocast_on_cpu_runs_the_fused_kernel_in_fp32(monkeypatch):
    """Under CPU bf16 autocast SDPA gets fp32 inputs (its bf16 backward is slow there);
    the block still returns bf16, close to its fp32 output, and gradients flow."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, dropout=0.0, score="scaled_dot")
    x = torch.randn(2, 5, 32, requires_grad=True)
    mask = padding_mask(torch.tensor([[5] * 5, [5] * 3 + [PAD] * 2]), PAD)
    q, k, v = attn.queries_keys_values(x)
    expected, _ = attn(q, k, v, mask)
    sdpa, seen = torch.nn.functional.scaled_dot_product_attention, []
    monkeypatch.setattr("torch.nn.functional.scaled_dot_product_attention",
                        lambda q, *a, **kw: seen.append(q.dtype) or sdpa(q, *a, **kw))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k, v = attn.queries_keys_values(x)
        out, _ = attn(q, k, v, mask)
    assert seen == [torch.float32] and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0, atol=0.05)
    out.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_cached_decoding_matches_full_decoding(norm):
    model = tiny_model(norm=norm)
    src, tgt = random_ids(3, 6), random_ids(3, 7, seed=2)
    assert_cached_decoding_matches_full(model, src, padding_mask(src, PAD), tgt)


def test_attention_weights_are_returned_on_request_only(model):
    src, tgt = random_ids(2, 6), random_ids(2, 4, seed=2)
    src_mask = padding_mask(src, PAD)
    memory, enc = model.encode(src, src_mask, need_weights=True)
    _, att = model.decode(tgt, memory, src_mask, target_mask(tgt, PAD), need_weights=True)
    assert [w.shape for w in enc] == [(2, 4, 6, 6)] * 2
    assert [w.shape for w in att.cross] == [(2, 4, 4, 6)] * 2
    assert [w.shape for w in att.decoder_self] == [(2, 4, 4, 4)] * 2
    _, none = model.decode(tgt, memory, src_mask, target_mask(tgt, PAD))
    assert none.cross == [] and none.decoder_self == []
    assert not any("weight" in k and "attn" in k and "cache" in k for k in vars(model))


def test_tied_and_shared_embeddings_counted_once():
    model = tiny_model()
    assert model.output.weight is model.tgt_embed.weight is model.src_embed.weight
    names = {n for n, _ in model.named_parameters()}
    assert "output.weight" not in names  # tied: one tensor, one name
    assert count_parameters(model) == sum(p.numel() for p in set(model.parameters()))


def test_positions_beyond_the_table_are_a_clear_error(model):
    src = random_ids(1, 70)  # tiny_model has max_positions 64
    with pytest.raises(ValueError, match="max_positions"):
        model.encode(src, padding_mask(src, PAD))


def test_bos_only_decoder_input(model):
    src = random_ids(2, 5)
    tgt = torch.full((2, 1), BOS)
    assert forward(model, src, tgt).shape == (2, 1, VOCAB)
