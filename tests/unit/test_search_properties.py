"""Property tests for search over random tiny models and random ragged source batches.

Each example draws a model (seed, vocabulary, attention), a batch of source sentences and
per-sentence output limits, then checks what any correct search must satisfy.
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.data import make_source
from seq2seq.fast import accelerate
from seq2seq.model.masks import target_mask
from seq2seq.search import beam_search, greedy_search, length_penalty, prefix_tensor
from tests.conftest import BOS, EOS, PAD, Uncached, tiny_model

SEARCH = settings(max_examples=30, deadline=None)
TOL = 1e-4


class EosBiased:
    """A model whose EOS logit is raised by `bias`, so that random models end sentences too.

    It offers what search needs (model/protocol.py's Seq2SeqModel), from the model it wraps.
    """

    def __init__(self, model, bias: float):
        self.model, self.bias, self.pad_id = model, bias, model.pad_id
        self.max_positions, self.beams_share_memory = model.max_positions, model.beams_share_memory
        self.encode, self.decode, self.new_cache = model.encode, model.decode, model.new_cache
        self.top_k = model.top_k

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (..., D) -> (..., V)."""
        out = self.model.logits(hidden).clone()  # (..., V)
        out[..., EOS] += self.bias
        return out


@st.composite
def cases(draw):
    """(model, src (B, S), src_mask (B, 1, 1, S), max_lens (B,), beam size, alpha).

    The model is on the plain path or on the fast one (seq2seq.fast.accelerate).
    """
    # small vocabularies make EOS likely; 640 gives the fast top_tokens blocks to skip
    vocab = draw(st.sampled_from([8, 12, 40, 640]))
    model = tiny_model(attention=draw(st.sampled_from(["scaled_dot", "cosine", "additive"])),
                       norm=draw(st.sampled_from(["pre", "post"])), vocab=vocab,
                       seed=draw(st.integers(0, 10_000)))
    if draw(st.booleans()):
        accelerate(model)
    model = EosBiased(model, draw(st.sampled_from([0.0, 2.0, 4.0])))
    sentence = st.lists(st.integers(4, vocab - 1), min_size=1, max_size=8)
    sources = draw(st.lists(sentence, min_size=1, max_size=5))
    src, src_mask = make_source(sources, PAD, EOS)  # (B, S), (B, 1, 1, S)
    max_lens = torch.tensor(draw(st.lists(st.integers(1, 10), min_size=len(sources),
                                          max_size=len(sources))))  # (B,)
    return model, src, src_mask, max_lens, draw(st.integers(1, 4)), draw(
        st.sampled_from([0.0, 0.6, 1.0]))


def log_prob(model, src: torch.Tensor, src_mask: torch.Tensor, tokens: list[int],
             with_eos: bool) -> float:
    """Teacher-forced log-probability of tokens (+ EOS) for one sentence, as search sees it.

    src: (1, S); src_mask: (1, 1, 1, S).  PAD and BOS are impossible outputs, as in search.
    """
    tgt_in = torch.tensor([[BOS, *tokens]])  # (1, T)
    targets = torch.tensor([*tokens, EOS] if with_eos else tokens)  # (T,) or (T - 1,)
    with torch.no_grad():
        memory, _ = model.encode(src, src_mask)  # (1, S, D)
        hidden, _ = model.decode(tgt_in, memory, src_mask, target_mask(tgt_in, PAD))  # (1, T, D)
        logits = model.logits(hidden)[0].float()  # (T, V)
    logits[:, [PAD, BOS]] = float("-inf")
    logp = logits.log_softmax(dim=-1)[: len(targets)]  # (len(targets), V)
    return logp.gather(1, targets.unsqueeze(1)).sum().item()


@SEARCH
@given(case=cases())
def test_outputs_hold_no_special_tokens_and_respect_their_limit(case):
    model, src, src_mask, max_lens, k, alpha = case
    for hyps in (greedy_search(model, src, src_mask, BOS, EOS, max_lens),
                 beam_search(model, src, src_mask, BOS, EOS, max_lens, k, alpha)):
        assert len(hyps.tokens) == len(hyps.scores) == src.size(0)
        for tokens, limit, score in zip(hyps.tokens, max_lens.tolist(), hyps.scores,
                                        strict=True):
            assert not {EOS, BOS, PAD} & set(tokens)
            assert len(tokens) <= limit
            assert score <= 0.0 and score > float("-inf")


@SEARCH
@given(case=cases())
def test_beam_size_one_is_greedy(case):
    model, src, src_mask, max_lens, _, alpha = case
    greedy = greedy_search(model, src, src_mask, BOS, EOS, max_lens)
    beam = beam_search(model, src, src_mask, BOS, EOS, max_lens, 1, alpha)
    assert beam.tokens == greedy.tokens
    for tokens, limit, g, b in zip(greedy.tokens, max_lens.tolist(), greedy.scores,
                                   beam.scores, strict=True):
        length = len(tokens) + (len(tokens) < limit)  # + EOS unless the limit stopped it
        assert abs(b * length_penalty(length, alpha) - g) < TOL


@SEARCH
@given(case=cases())
def test_scores_are_the_models_own_length_normalised_log_probability(case):
    model, src, src_mask, max_lens, k, alpha = case
    greedy = greedy_search(model, src, src_mask, BOS, EOS, max_lens)
    beam = beam_search(model, src, src_mask, BOS, EOS, max_lens, k, alpha)
    for i, limit in enumerate(max_lens.tolist()):
        row = (src[i : i + 1], src_mask[i : i + 1])
        for tokens, score, a in ((greedy.tokens[i], greedy.scores[i], 0.0),
                                 (beam.tokens[i], beam.scores[i], alpha)):
            ended = len(tokens) < limit  # shorter than its limit: it chose EOS
            length = len(tokens) + ended
            expected = log_prob(model, *row, tokens, ended) / length_penalty(length, a)
            assert abs(score - expected) < TOL, (tokens, ended, score, expected)


@SEARCH
@given(case=cases(), data=st.data())
def test_batch_composition_does_not_change_a_sentences_result(case, data):
    model, src, src_mask, max_lens, k, alpha = case
    together = beam_search(model, src, src_mask, BOS, EOS, max_lens, k, alpha)
    greedy = greedy_search(model, src, src_mask, BOS, EOS, max_lens)
    order = data.draw(st.permutations(range(src.size(0))))
    shuffled = beam_search(model, src[order], src_mask[order], BOS, EOS, max_lens[order], k,
                           alpha)
    i = data.draw(st.integers(0, src.size(0) - 1))
    width = int(src_mask[i].sum())  # its own length: no padding when alone
    alone_src, alone_mask = src[i : i + 1, :width], src_mask[i : i + 1, ..., :width]
    alone = beam_search(model, alone_src, alone_mask, BOS, EOS, max_lens[i : i + 1], k, alpha)
    alone_greedy = greedy_search(model, alone_src, alone_mask, BOS, EOS, max_lens[i : i + 1])
    assert alone.tokens[0] == together.tokens[i] == shuffled.tokens[order.index(i)]
    assert abs(alone.scores[0] - together.scores[i]) < TOL
    assert abs(shuffled.scores[order.index(i)] - together.scores[i]) < TOL
    assert alone_greedy.tokens[0] == greedy.tokens[i]
    assert abs(alone_greedy.scores[0] - greedy.scores[i]) < TOL


@SEARCH
@given(case=cases())
def test_beam_search_with_the_cache_equals_beam_search_without(case):
    model, src, src_mask, max_lens, k, alpha = case
    cached = beam_search(model, src, src_mask, BOS, EOS, max_lens, k, alpha)
    uncached = beam_search(Uncached(model), src, src_mask, BOS, EOS, max_lens, k, alpha)
    assert cached.tokens == uncached.tokens
    for a, b in zip(cached.scores, uncached.scores, strict=True):
        assert abs(a - b) < TOL


@settings(max_examples=15, deadline=None)  # two searches and a forced pass per hypothesis
@given(case=cases(), data=st.data())
def test_nbest_lists_are_ranked_forced_prefixes_hold_and_scores_are_the_models(case, data):
    model, src, src_mask, max_lens, k, alpha = case
    vocab = model.logits(torch.zeros(1, 32)).size(-1)
    prefixes = [data.draw(st.lists(st.integers(4, vocab - 1), max_size=min(3, limit)))
                for limit in max_lens.tolist()]
    prefix = prefix_tensor(prefixes, src.device)
    beam = beam_search(model, src, src_mask, BOS, EOS, max_lens, k, alpha, prefix, nbest=k)
    greedy = greedy_search(model, src, src_mask, BOS, EOS, max_lens, prefix, alpha)
    for i, (group, p) in enumerate(zip(beam.nbest, prefixes, strict=True)):
        assert 1 <= len(group) <= k and group[0].tokens == beam.tokens[i]
        assert [h.score for h in group] == sorted((h.score for h in group), reverse=True)
        for h in [*group, *greedy.nbest[i]]:
            assert h.tokens[: len(p)] == p and len(h.tokens) <= max_lens[i]
            expected = log_prob(model, src[i : i + 1], src_mask[i : i + 1], h.tokens, h.eos)
            assert abs(h.log_prob - expected) < TOL
            assert abs(h.score - h.log_prob / length_penalty(len(h.tokens) + h.eos, alpha)) < TOL
