"""Research decoding on tiny models: n-best lists, sampling, prefixes, forced scoring,
alignment and ensembles, at the level of seq2seq/search.py and seq2seq/ensemble.py."""

import pytest
import torch

from seq2seq.data import make_batch, make_source
from seq2seq.ensemble import Ensemble
from seq2seq.fast import accelerate
from seq2seq.model.protocol import Seq2SeqModel
from seq2seq.sampling import Sampling, nucleus, sample_search, sample_tokens
from seq2seq.search import (
    beam_search,
    cross_attention,
    forced_log_probs,
    greedy_search,
    length_penalty,
    prefix_tensor,
)
from tests.conftest import BOS, EOS, PAD, UNK, VOCAB, tiny_model
from tests.unit.test_search_properties import EosBiased

TOL = 1e-4
SOURCES = [[5, 6, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16], [17, 18]]


def inputs(sources=SOURCES, limit: int = 8):
    src, src_mask = make_source(sources, PAD, EOS)  # (B, S), (B, 1, 1, S)
    return src, src_mask, torch.full((len(sources),), limit)


def biased(seed: int = 0, bias: float = 2.0):
    """A tiny model that ends some sentences with EOS before their limit."""
    return EosBiased(tiny_model(seed=seed), bias)


def forced_totals(model, src, src_mask, hyps) -> list[float]:
    """score()'s log-probability of each hypothesis (EOS's term only where it ended so)."""
    src_ids = [row[: int(m.sum()) - 1] for row, m in zip(src.tolist(), src_mask, strict=True)]
    b = make_batch(src_ids, [h.tokens for h in hyps], PAD, BOS, EOS)
    logp = forced_log_probs(model, b.src, b.src_mask, b.tgt_in, b.tgt_out, b.tgt_mask, BOS)
    return [logp[i, : len(h.tokens) + h.eos].sum().item() for i, h in enumerate(hyps)]


# ---------------------------------------------------------------- n-best


@pytest.mark.parametrize("seed", [0, 1])
def test_nbest_lists_are_sorted_and_their_first_is_the_best(seed):
    model = biased(seed)
    src, src_mask, lens = inputs()
    best = beam_search(model, src, src_mask, BOS, EOS, lens, 4, 1.0)
    lists = beam_search(model, src, src_mask, BOS, EOS, lens, 4, 1.0, nbest=4)
    assert lists.tokens == best.tokens and lists.scores == best.scores
    for group, tokens in zip(lists.nbest, best.tokens, strict=True):
        assert 1 <= len(group) <= 4 and group[0].tokens == tokens
        scores = [h.score for h in group]
        assert scores == sorted(scores, reverse=True)
        for h in group:
            assert abs(h.score - h.log_prob / length_penalty(len(h.tokens) + h.eos, 1.0)) < TOL
    assert [len(g) for g in beam_search(model, src, src_mask, BOS, EOS, lens, 4, nbest=2).nbest] \
        == [2] * len(SOURCES)


def test_nbest_scores_are_what_forced_scoring_gives():
    model = biased(3)
    src, src_mask, lens = inputs()
    lists = beam_search(model, src, src_mask, BOS, EOS, lens, 3, 0.6, nbest=3)
    assert any(h.eos for g in lists.nbest for h in g) and any(not h.eos for g in lists.nbest
                                                               for h in g)
    for i, group in enumerate(lists.nbest):
        rows = src[i : i + 1].expand(len(group), -1), src_mask[i : i + 1].expand(len(group),
                                                                                -1, -1, -1)
        for h, forced in zip(group, forced_totals(model, *rows, group), strict=True):
            assert abs(h.log_prob - forced) < TOL


# ---------------------------------------------------------------- sampling


def sample(model, seed: int, n: int = 1, **kw):
    src, src_mask, lens = inputs()
    g = torch.Generator().manual_seed(seed)
    return sample_search(model, src, src_mask, BOS, EOS, lens, Sampling(**kw), g, n)


@pytest.mark.parametrize("kw", [dict(top_k=1), dict(temperature=1e-6), dict(top_p=1e-6),
                                dict(temperature=1e-30, top_k=5, top_p=0.5)])
def test_sampling_that_keeps_only_the_best_token_is_greedy(kw):
    model = biased(1)
    src, src_mask, lens = inputs()
    greedy = greedy_search(model, src, src_mask, BOS, EOS, lens)
    sampled = sample(model, seed=5, n=2, **kw)
    for group, tokens, score in zip(sampled.nbest, greedy.tokens, greedy.scores, strict=True):
        assert [h.tokens for h in group] == [tokens, tokens]
        assert all(abs(h.log_prob - score) < TOL for h in group)


def test_samples_repeat_with_the_seed_and_differ_between_seeds():
    model = tiny_model(seed=2)
    first, again, other = sample(model, 7, n=3), sample(model, 7, n=3), sample(model, 8, n=3)
    tokens = [[h.tokens for h in g] for g in first.nbest]
    assert tokens == [[h.tokens for h in g] for g in again.nbest]
    assert tokens != [[h.tokens for h in g] for g in other.nbest]
    assert all(len(set(map(tuple, g))) > 1 for g in tokens)  # n independent samples


def test_samples_are_never_special_or_outside_the_vocabulary_and_score_as_forced():
    model = biased(4, bias=1.0)
    out = sample(model, 0, n=16, temperature=1.5)
    src, src_mask, _ = inputs()
    for i, group in enumerate(out.nbest):
        assert len(group) == 16
        for h in group:
            assert all(t == UNK or EOS < t < VOCAB for t in h.tokens)  # no PAD, BOS, EOS
        rows = src[i : i + 1].expand(16, -1), src_mask[i : i + 1].expand(16, -1, -1, -1)
        for h, forced in zip(group, forced_totals(model, *rows, group), strict=True):
            assert abs(h.log_prob - forced) < TOL


def test_top_k_and_top_p_draw_only_from_the_kept_tokens():
    logp = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().expand(2000, -1)  # (N, V)
    g = torch.Generator().manual_seed(0)
    assert set(sample_tokens(logp, Sampling(top_k=2), g).tolist()) == {0, 1}
    assert set(sample_tokens(logp, Sampling(top_p=0.75), g).tolist()) == {0, 1}  # 0.5 + 0.3
    assert set(sample_tokens(logp, Sampling(top_p=0.81), g).tolist()) == {0, 1, 2}
    assert set(sample_tokens(logp, Sampling(), g).tolist()) == {0, 1, 2, 3}
    masked = logp.clone()
    masked[:, 1] = float("-inf")
    assert 1 not in set(sample_tokens(masked, Sampling(temperature=5.0), g).tolist())



def test_draws_follow_the_softmax_of_the_tempered_scores():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logp = probs.log().expand(40000, -1)  # (N, V)
    g = torch.Generator().manual_seed(1)
    for temperature in (1.0, 2.0):
        drawn = sample_tokens(logp, Sampling(temperature=temperature), g)
        want = (probs.log() / temperature).softmax(dim=0)
        assert torch.allclose(drawn.bincount(minlength=4) / 40000, want, atol=0.01)
    kept = sample_tokens(logp, Sampling(top_k=2), g).bincount(minlength=4) / 40000
    assert torch.allclose(kept, torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=0.01)



def test_the_nucleus_from_candidates_equals_the_nucleus_from_sorting():
    g = torch.Generator().manual_seed(2)
    peaked = (torch.randn(6, 300, generator=g) * 6).softmax(dim=1)  # nucleus within 64
    flat = torch.randn(6, 300, generator=g).softmax(dim=1)  # nucleus beyond 64: sorted
    for probs in (peaked, flat, torch.cat([peaked, flat])):
        for top_p in (0.05, 0.5, 0.9, 0.999):
            ranked, order = probs.sort(dim=1, descending=True)
            before = ranked.cumsum(dim=1) - ranked
            want = torch.zeros_like(probs, dtype=torch.bool).scatter_(1, order, before < top_p)
            assert torch.equal(nucleus(probs, top_p), want)


# ---------------------------------------------------------------- prefixes


def test_every_search_continues_a_forced_prefix():
    model = biased(5)
    src, src_mask, lens = inputs()
    prefixes = [[20, 21], [], [22], [23, 24, 25]]
    prefix = prefix_tensor(prefixes, src.device)
    g = torch.Generator().manual_seed(0)
    results = [greedy_search(model, src, src_mask, BOS, EOS, lens, prefix),
               beam_search(model, src, src_mask, BOS, EOS, lens, 3, prefix=prefix, nbest=3),
               sample_search(model, src, src_mask, BOS, EOS, lens, Sampling(), g, 2, prefix)]
    for hyps in results:
        for group, p in zip(hyps.nbest, prefixes, strict=True):
            for h in group:
                assert h.tokens[: len(p)] == p and len(h.tokens) <= 8
    free = greedy_search(model, src, src_mask, BOS, EOS, lens)
    assert results[0].tokens[1] == free.tokens[1]  # no prefix: the search is unchanged
    lists = results[1].nbest
    for i, group in enumerate(lists):  # the forced tokens' log-probabilities count
        rows = src[i : i + 1].expand(len(group), -1), src_mask[i : i + 1].expand(len(group),
                                                                                -1, -1, -1)
        for h, forced in zip(group, forced_totals(model, *rows, group), strict=True):
            assert abs(h.log_prob - forced) < TOL


def test_a_prefix_as_long_as_the_limit_is_the_whole_output():
    model = tiny_model()
    src, src_mask, _ = inputs(SOURCES[:1])
    lens = torch.tensor([3])
    prefix = prefix_tensor([[30, 31, 32]], src.device)
    for hyps in (greedy_search(model, src, src_mask, BOS, EOS, lens, prefix),
                 beam_search(model, src, src_mask, BOS, EOS, lens, 2, prefix=prefix)):
        assert hyps.tokens == [[30, 31, 32]]


# ---------------------------------------------------------------- ensembles


def searches(model, src, src_mask, lens):
    g = torch.Generator().manual_seed(0)
    return [greedy_search(model, src, src_mask, BOS, EOS, lens),
            beam_search(model, src, src_mask, BOS, EOS, lens, 3, nbest=3),
            sample_search(model, src, src_mask, BOS, EOS, lens, Sampling(), g, 2)]


def assert_same(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        assert [[h.tokens for h in g] for g in x.nbest] == [[h.tokens for h in g] for g in y.nbest]
        for gx, gy in zip(x.nbest, y.nbest, strict=True):
            assert all(abs(h.log_prob - k.log_prob) < TOL for h, k in zip(gx, gy, strict=True))


@pytest.mark.parametrize("fast", [False, True])
def test_an_ensemble_of_one_model_or_of_two_copies_is_that_model(fast):
    model = tiny_model(seed=6)
    if fast:
        accelerate(model)
    src, src_mask, lens = inputs(SOURCES[:3], limit=6)
    alone = searches(model, src, src_mask, lens)
    # the same weights on the other path too: memory is then copied for every beam
    mixed = Ensemble([model, tiny_model(seed=6) if fast else accelerate(tiny_model(seed=6))])
    for ensemble in (Ensemble([model]), Ensemble([model, model]), mixed):
        assert isinstance(ensemble, Seq2SeqModel)
        assert_same(searches(ensemble, src, src_mask, lens), alone)
    b = make_batch(SOURCES, [[20, 21], [22], [], [23, 24, 25]], PAD, BOS, EOS)
    args = (b.src, b.src_mask, b.tgt_in, b.tgt_out, b.tgt_mask, BOS)
    torch.testing.assert_close(forced_log_probs(Ensemble([model, model]), *args),
                               forced_log_probs(model, *args), rtol=TOL, atol=TOL)


def test_an_ensemble_is_the_mean_of_its_models_probabilities_whatever_their_kind():
    from tests.unit.test_rnn import tiny_rnn

    models = [tiny_model(seed=1), tiny_rnn(), accelerate(tiny_model(seed=2))]
    ensemble = Ensemble(models)
    assert not ensemble.beams_share_memory  # the RNN needs memory for every beam
    src, src_mask, lens = inputs()
    for hyps in searches(ensemble, src, src_mask, lens):
        assert all(t == UNK or EOS < t < VOCAB for g in hyps.nbest for h in g for t in h.tokens)
    b = make_batch(SOURCES, [[20, 21], [22], [], [23, 24, 25]], PAD, BOS, EOS)
    mean = torch.stack([full_probs(m, b) for m in models]).mean(dim=0)  # (B, T, V)
    mean[..., [PAD, BOS]] = 0.0  # impossible outputs, as in search: renormalised away
    expected = (mean / mean.sum(dim=-1, keepdim=True)).gather(2, b.tgt_out.unsqueeze(2))
    expected = expected.squeeze(2).log().masked_fill(b.tgt_out == PAD, 0.0)  # (B, T)
    got = forced_log_probs(ensemble, b.src, b.src_mask, b.tgt_in, b.tgt_out, b.tgt_mask, BOS)
    torch.testing.assert_close(got, expected, rtol=TOL, atol=TOL)


def full_probs(model, b) -> torch.Tensor:
    """The model's teacher-forced probabilities over the whole vocabulary: (B, T, V)."""
    with torch.no_grad():
        memory, _ = model.encode(b.src, b.src_mask)
        hidden, _ = model.decode(b.tgt_in, memory, b.src_mask, b.tgt_mask)
        return model.logits(hidden).float().softmax(dim=-1)


# ---------------------------------------------------------------- alignment


def test_cross_attention_gives_one_row_of_source_weights_per_target_token():
    model = tiny_model()
    b = make_batch(SOURCES, [[20, 21], [22], [], [23, 24, 25]], PAD, BOS, EOS)
    layers = cross_attention(model, b.src, b.src_mask, b.tgt_in, b.tgt_mask)
    assert len(layers) == 2
    for weights in layers:
        assert weights.shape == (4, b.tgt_in.size(1), b.src.size(1))  # (B, T, S)
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(4, b.tgt_in.size(1)))
        assert (weights[1, :, 4:] == 0).all()  # the padding of sentence 1 gets none
