"""The RNN encoder-decoder baseline: shapes, padding, caching, attention, search, training."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from seq2seq.config import ModelConfig
from seq2seq.inspection.accounting import _rnn_layer_flops, flops_per_target_token
from seq2seq.model.attention import make_score
from seq2seq.model.build import build_model
from seq2seq.model.masks import padding_mask, target_mask
from seq2seq.model.rnn import RNNSeq2Seq, SourceAttention
from seq2seq.model.transformer import Transformer, count_parameters
from seq2seq.search import beam_search, greedy_search, max_output_lengths
from tests.conftest import (
    BOS,
    EOS,
    PAD,
    VOCAB,
    Uncached,
    assert_cached_decoding_matches_full,
    assert_overfits_one_batch,
    random_ids,
)

CELLS = ("gru", "lstm")
ATTENTIONS = ("dot", "general", "additive", "none")
EVERY = [(cell, attention) for cell in CELLS for attention in ATTENTIONS]


def rnn_config(cell: str = "gru", **keys):
    values = {"arch": "rnn", "d_model": 32, "encoder_layers": 2, "decoder_layers": 2,
              "dropout": 0.0, "attention": "general", "max_positions": 64, **keys}
    if "rnn_cell" in {f.name for f in dataclasses.fields(ModelConfig)}:
        return ModelConfig(rnn_cell=cell, **values)
    # Until ModelConfig has rnn_cell: build_model reads the config by attribute only.
    return SimpleNamespace(**{**dataclasses.asdict(ModelConfig()), **values, "rnn_cell": cell})


def tiny_rnn(cell: str = "gru", attention: str = "general", dropout: float = 0.0,
             seed: int = 0, **keys) -> RNNSeq2Seq:
    torch.manual_seed(seed)
    cfg = rnn_config(cell, attention=attention, dropout=dropout, **keys)
    return build_model(cfg, VOCAB, VOCAB, PAD, joint_vocab=True).eval()


def forward(model, src, tgt_in):
    return model(src, tgt_in, padding_mask(src, PAD), target_mask(tgt_in, PAD))


def ragged_source(batch: int = 3, length: int = 7, seed: int = 1):
    src = random_ids(batch, length, seed=seed)
    src[1, 4:] = PAD
    return src, padding_mask(src, PAD)


@pytest.mark.parametrize("cell", CELLS)
def test_shapes(cell):
    model = tiny_rnn(cell)
    src, tgt = random_ids(3, 7), random_ids(3, 5, seed=2)
    memory, enc = model.encode(src, padding_mask(src, PAD), need_weights=True)
    assert memory.shape == (3, 7, 32) and enc == []
    hidden, _ = model.decode(tgt, memory, padding_mask(src, PAD), None)
    assert hidden.shape == (3, 5, 32)
    assert forward(model, src, tgt).shape == (3, 5, VOCAB)
    assert model.pad_id == PAD and model.max_positions == 64


@pytest.mark.parametrize(("cell", "attention"), EVERY)
def test_source_padding_does_not_change_outputs(cell, attention):
    model = tiny_rnn(cell, attention)
    src, tgt = random_ids(2, 6), random_ids(2, 5, seed=2)
    padded = torch.cat([src, torch.full((2, 4), PAD)], dim=1)
    padded[1, 3:6] = PAD  # a ragged row too
    alone = src[1:2, :3]
    memory, _ = model.encode(padded, padding_mask(padded, PAD))
    memory_alone, _ = model.encode(alone, padding_mask(alone, PAD))
    torch.testing.assert_close(memory[1:2, :3], memory_alone, rtol=1e-5, atol=1e-5)
    assert torch.all(memory[1, 3:] == 0)
    torch.testing.assert_close(forward(model, src[:1], tgt[:1]),
                               forward(model, padded[:1], tgt[:1]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(forward(model, alone, tgt[1:]),
                               forward(model, padded[1:], tgt[1:]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_decoder_is_causal_and_target_padding_changes_nothing_before_it(cell):
    model = tiny_rnn(cell)
    src, tgt = random_ids(2, 6), random_ids(2, 8, seed=2)
    changed = tgt.clone()
    changed[:, 5:] = PAD
    a, b = forward(model, src, tgt), forward(model, src, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize(("cell", "attention"), EVERY)
def test_cached_decoding_matches_full_decoding(cell, attention):
    model = tiny_rnn(cell, attention)
    src, src_mask = ragged_source()
    assert_cached_decoding_matches_full(model, src, src_mask, random_ids(3, 7, seed=2))



@pytest.mark.parametrize(("cell", "attention"), [("gru", "additive"), ("lstm", "general"),
                                                 ("lstm", "none")])
def test_cache_select_keeps_and_reorders_rows(cell, attention):
    model = tiny_rnn(cell, attention)
    src, src_mask = ragged_source()
    tgt = random_ids(3, 6, seed=2)
    memory, _ = model.encode(src, src_mask)
    cache = model.new_cache()
    first, _ = model.decode(tgt[:, :3], memory, src_mask, None, cache)  # three tokens at once
    index = torch.tensor([2, 1, 1])
    cache.select(index)
    rest, _ = model.decode(tgt[index, 3:], memory[index], src_mask[index], None, cache)
    full, _ = model.decode(tgt[index], memory[index], src_mask[index], None)
    torch.testing.assert_close(torch.cat([first[index], rest], dim=1), full,
                               rtol=1e-5, atol=1e-5)
    assert cache.length == 6


@pytest.mark.parametrize(("cell", "attention"), [(c, a) for c, a in EVERY if a != "none"])
def test_attention_weights_sum_to_one_and_skip_padding(cell, attention):
    model = tiny_rnn(cell, attention)
    src, src_mask = ragged_source()
    tgt = random_ids(3, 5, seed=2)
    memory, _ = model.encode(src, src_mask)
    _, att = model.decode(tgt, memory, src_mask, None, need_weights=True)
    assert [w.shape for w in att.cross] == [(3, 1, 5, 7)]
    assert att.encoder == [] and att.decoder_self == []
    weights = att.cross[0]
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 1, 5))
    assert torch.all(weights[1, :, :, 4:] == 0)
    _, none = model.decode(tgt, memory, src_mask, None)
    assert none.cross == []


@pytest.mark.parametrize("cell", CELLS)
def test_no_attention_returns_no_weights(cell):
    model = tiny_rnn(cell, "none")
    assert model.attention is None
    src, tgt = random_ids(2, 6), random_ids(2, 4, seed=2)
    memory, enc = model.encode(src, padding_mask(src, PAD), need_weights=True)
    _, att = model.decode(tgt, memory, padding_mask(src, PAD), None, need_weights=True)
    assert enc == [] and att.cross == [] and att.encoder == [] and att.decoder_self == []


@pytest.mark.parametrize("attention", ["dot", "general", "additive"])
def test_precomputed_keys_score_like_attention_py(attention):
    torch.manual_seed(0)
    attn = SourceAttention(attention, 32)
    query, memory = torch.randn(2, 3, 32), torch.randn(2, 5, 32)
    mask = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    _, weights = attn(query, attn.keys(memory), memory, mask)
    reference = make_score(attention, 1, 32)
    reference.load_state_dict(attn.score.state_dict())
    expected = reference(query.unsqueeze(1), memory.unsqueeze(1)).softmax(dim=-1)  # (B, 1, T, S)
    torch.testing.assert_close(weights, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("cell", "attention"), [("gru", "general"), ("gru", "none"),
                                                 ("lstm", "additive"), ("lstm", "dot")])
def test_beam_size_one_equals_greedy(cell, attention):
    model = tiny_rnn(cell, attention, seed=1)
    src, mask = ragged_source(batch=4)
    lens = max_output_lengths(mask, 1.5, model.max_positions)
    greedy = greedy_search(model, src, mask, BOS, EOS, lens)
    beam = beam_search(model, src, mask, BOS, EOS, lens, beam_size=1)
    assert beam.tokens == greedy.tokens
    wide = beam_search(model, src, mask, BOS, EOS, lens, beam_size=3)  # runs cache.select
    assert all(len(t) <= n for t, n in zip(wide.tokens, lens.tolist(), strict=True))


@pytest.mark.parametrize(("cell", "attention"), [("gru", "additive"), ("lstm", "general")])
def test_beam_search_with_the_cache_equals_beam_search_without(cell, attention):
    """Beams fork by copying the recurrent state (copy_rows); recomputing agrees."""
    model = tiny_rnn(cell, attention, seed=2)
    src, mask = ragged_source(batch=4)
    lens = max_output_lengths(mask, 1.5, model.max_positions)
    cached = beam_search(model, src, mask, BOS, EOS, lens, beam_size=4)
    uncached = beam_search(Uncached(model), src, mask, BOS, EOS, lens, beam_size=4)
    assert cached.tokens == uncached.tokens
    assert cached.scores == pytest.approx(uncached.scores, abs=1e-4)


@pytest.mark.parametrize(("cell", "attention"), EVERY)
def test_flops_match_torch_flop_counter(cell, attention):
    """accounting's RNN formula against torch's own count of the matrix products."""
    model = tiny_rnn(cell, attention).train()
    S, T = 6, 9
    src, tgt = random_ids(1, S), random_ids(1, T, seed=2)
    with FlopCounterMode(display=False) as counter:
        model(src, tgt, padding_mask(src, PAD), None)
    counted = counter.get_total_flops()
    if cell == "lstm":  # torch runs the LSTM as one fused CPU kernel its counter cannot see
        counted += sum(_rnn_layer_flops(rnn, layer, n) for rnn, n in (
            (model.encoder, S), (model.decoder, T)) for layer in range(rnn.num_layers))
    assert counted == pytest.approx(flops_per_target_token(model, S, T)["forward"] * T)


def test_greedy_matches_uncached_argmax_decoding():
    model = tiny_rnn("lstm", "additive")
    src, mask = ragged_source(batch=2)
    lens = max_output_lengths(mask, 1.5, model.max_positions)
    hyps = greedy_search(model, src, mask, BOS, EOS, lens)
    for b in range(2):
        ids = [BOS]
        while len(ids) - 1 < lens[b]:
            step = model(src[b : b + 1], torch.tensor([ids]), mask[b : b + 1], None)[0, -1]
            step[[PAD, BOS]] = float("-inf")
            if step.argmax().item() == EOS:
                break
            ids.append(step.argmax().item())
        assert hyps.tokens[b] == ids[1:]


@pytest.mark.parametrize(("cell", "attention"), [("gru", "additive"), ("lstm", "none")])
def test_overfitting_one_batch_drives_the_loss_near_zero(cell, attention):
    assert_overfits_one_batch(tiny_rnn(cell, attention, dropout=0.1), lr=1e-2, steps=100)


def expected_parameters(cell: str, attention: str, V: int = VOCAB, D: int = 32,
                        layers: int = 2) -> int:
    """The count by hand: tied, shared embedding; D/2 per encoder direction."""
    gates = {"gru": 3, "lstm": 4}[cell]

    def rnn(inputs: int, hidden: int, directions: int) -> int:  # weights + two bias vectors
        first = gates * hidden * (inputs + hidden) + 2 * gates * hidden
        other = gates * hidden * (hidden * directions + hidden) + 2 * gates * hidden
        return directions * (first + (layers - 1) * other)

    bridges = (2 if cell == "lstm" else 1) * (D * layers * D + layers * D)
    scores = {"dot": 0, "none": 0, "general": D * D, "additive": 2 * D * D + D}[attention]
    return (V * D + rnn(D, D // 2, 2) + bridges + (D * D + D) + rnn(2 * D, D, 1) + scores
            + (2 * D * D + D))


@pytest.mark.parametrize(("cell", "attention"), EVERY)
def test_parameter_count(cell, attention):
    model = tiny_rnn(cell, attention)
    assert count_parameters(model) == expected_parameters(cell, attention)


def test_tied_and_shared_embeddings():
    model = tiny_rnn()
    assert model.output.weight is model.tgt_embed.weight is model.src_embed.weight
    assert "output.weight" not in {n for n, _ in model.named_parameters()}
    separate = tiny_rnn(tie_embeddings=False, share_embeddings=False)
    assert separate.src_embed is not separate.tgt_embed
    assert count_parameters(separate) == count_parameters(model) + 2 * VOCAB * 32
    cfg = rnn_config()
    unjoint = build_model(cfg, VOCAB, VOCAB + 5, PAD, joint_vocab=False)
    assert unjoint.src_embed.num_embeddings == VOCAB
    assert unjoint.output.out_features == VOCAB + 5


def test_build_model_dispatches_on_arch_and_builds_on_meta():
    assert isinstance(build_model(ModelConfig(d_model=32), VOCAB, VOCAB, PAD, True), Transformer)
    with torch.device("meta"):  # as `seq2seq info` builds from a config
        model = build_model(rnn_config("lstm", attention="additive"), VOCAB, VOCAB, PAD, True)
    assert isinstance(model, RNNSeq2Seq)
    assert count_parameters(model) == expected_parameters("lstm", "additive")


@pytest.mark.parametrize(("keys", "message"), [
    ({"attention": "scaled_dot"}, "not available to the RNN"),
    ({"d_model": 33}, "even d_model"),
])
def test_bad_settings_are_clear_errors(keys, message):
    with pytest.raises(ValueError, match=message):
        build_model(rnn_config(**keys), VOCAB, VOCAB, PAD, joint_vocab=True)
