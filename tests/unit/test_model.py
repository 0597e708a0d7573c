"""The Transformer's behaviour (plain path): shapes, causality, padding, caching, scores.

tests/unit/test_fast.py holds the fast path to these same outputs.
"""

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
