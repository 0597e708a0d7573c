"""Search (greedy, beam, cache) and the training objective."""

import math

import pytest
import torch
import torch.nn.functional as F

from seq2seq.data import make_batch
from seq2seq.fast import accelerate
from seq2seq.loss import TeacherForcedLoss, smoothed_loss
from seq2seq.model.masks import padding_mask
from seq2seq.model.protocol import DecodingCache, Seq2SeqModel
from seq2seq.search import _best_candidates, beam_search, greedy_search, max_output_lengths
from seq2seq.training.schedule import learning_rate
from tests.conftest import BOS, EOS, PAD, assert_overfits_one_batch, random_ids, tiny_model


def search_inputs(batch=5, seed=1):
    src = random_ids(batch, 7, seed=seed)
    src[1, 4:] = PAD  # ragged batch
    if batch > 3:
        src[3, 2:] = PAD
    mask = padding_mask(src, PAD)
    return src, mask, max_output_lengths(mask, 1.5, 64)


def test_both_architectures_on_both_paths_offer_what_search_needs():
    from tests.unit.test_rnn import tiny_rnn

    for model in (tiny_model(), tiny_rnn(), accelerate(tiny_model()), accelerate(tiny_rnn())):
        assert isinstance(model, Seq2SeqModel)
        assert isinstance(model.new_cache(4), DecodingCache)
    assert accelerate(tiny_model()).beams_share_memory and not tiny_model().beams_share_memory


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_equals_greedy(seed):
    model = tiny_model(seed=seed)
    src, mask, lens = search_inputs(seed=seed)
    greedy = greedy_search(model, src, mask, BOS, EOS, lens)
    beam = beam_search(model, src, mask, BOS, EOS, lens, beam_size=1)
    assert beam.tokens == greedy.tokens


def test_best_candidates_are_the_best_over_every_beams_every_token():
    g = torch.Generator().manual_seed(3)
    N, k, vocab = 4, 3, 2000
    logp = torch.randn(N * k, vocab, generator=g).log_softmax(dim=1)
    beam_scores = torch.randn(N, k, generator=g)
    beam_scores[0, 1:] = float("-inf")  # the first step: only beam 0 is alive
    scores, beam, token = _best_candidates(tiny_model(), beam_scores, logp, 2 * k)
    every = (beam_scores.view(-1, 1) + logp).view(N, k * vocab)
    assert torch.equal(scores, every.topk(2 * k, dim=1).values)
    rows = torch.arange(N).unsqueeze(1) * k + beam
    assert torch.equal(beam_scores.gather(1, beam) + logp[rows, token], scores)


def test_greedy_matches_uncached_argmax_decoding():
    """The cached search gives what re-running the full decoder each step gives."""
    model = tiny_model()
    src, mask, lens = search_inputs(batch=2)
    hyps = greedy_search(model, src, mask, BOS, EOS, lens)
    for b in range(2):
        ids = [BOS]
        while len(ids) - 1 < lens[b]:
            logits = model(src[b : b + 1], torch.tensor([ids]), mask[b : b + 1], None)
            step = logits[0, -1].clone()
            step[[PAD, BOS]] = float("-inf")
            nxt = step.argmax().item()
            if nxt == EOS:
                break
            ids.append(nxt)
        assert hyps.tokens[b] == ids[1:]


def test_outputs_respect_length_limits_and_batch_order():
    model = tiny_model()
    src, mask, _ = search_inputs()
    lens = torch.tensor([1, 2, 3, 4, 5])
    for hyps in (greedy_search(model, src, mask, BOS, EOS, lens),
                 beam_search(model, src, mask, BOS, EOS, lens, beam_size=3)):
        assert all(len(t) <= n for t, n in zip(hyps.tokens, lens.tolist(), strict=True))
        assert all(EOS not in t and BOS not in t for t in hyps.tokens)
    alone = beam_search(model, src[2:3], mask[2:3], BOS, EOS, lens[2:3], beam_size=3)
    together = beam_search(model, src, mask, BOS, EOS, lens, beam_size=3)
    assert alone.tokens[0] == together.tokens[2]


def test_wider_beam_never_scores_worse_without_length_penalty():
    model = tiny_model(seed=3)
    src, mask, lens = search_inputs(seed=3)
    narrow = beam_search(model, src, mask, BOS, EOS, lens, beam_size=1, alpha=0.0)
    wide = beam_search(model, src, mask, BOS, EOS, lens, beam_size=6, alpha=0.0)
    # Not guaranteed in general, but holds for a random tiny model on most sentences.
    better = sum(w >= n - 1e-6 for w, n in zip(wide.scores, narrow.scores, strict=True))
    assert better >= 4


def test_smoothed_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    target = torch.tensor([0, 1])
    eps = 0.1
    expected = 0.0
    for row, t in zip(logits.tolist(), target.tolist(), strict=True):
        lse = math.log(sum(math.exp(x) for x in row))
        logp = [x - lse for x in row]
        expected += (1 - eps) * -logp[t] + eps * -sum(logp) / len(row)
    loss, nll = smoothed_loss(logits, target, eps)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(loss, F.cross_entropy(logits, target, label_smoothing=eps,
                                                     reduction="sum"))
    assert nll.item() == pytest.approx(F.cross_entropy(logits, target, reduction="sum").item())
    assert not nll.requires_grad


def test_loss_ignores_padding():
    model = tiny_model()
    loss_fn = TeacherForcedLoss(model, 0.1)
    short = make_batch([[5, 6, 7]], [[8, 9]], PAD, BOS, EOS)
    padded = make_batch([[5, 6, 7], [4] * 9], [[8, 9], [10] * 9], PAD, BOS, EOS)
    a, _ = loss_fn(short.src, short.tgt_in, short.tgt_out, short.src_mask, short.tgt_mask)
    b_full, _ = loss_fn(padded.src[:1], padded.tgt_in[:1], padded.tgt_out[:1],
                        padded.src_mask[:1], padded.tgt_mask[:1])
    torch.testing.assert_close(a, b_full, rtol=1e-5, atol=1e-5)


def test_overfitting_one_batch_drives_the_loss_near_zero():
    torch.manual_seed(0)
    assert_overfits_one_batch(tiny_model(), lr=3e-3, steps=150)


def test_learning_rate_warms_up_then_decays():
    peak, warmup = 1e-3, 100
    assert learning_rate(1, peak, warmup) == pytest.approx(1e-5)
    assert learning_rate(100, peak, warmup) == pytest.approx(peak)
    assert learning_rate(400, peak, warmup) == pytest.approx(peak / 2)
    assert learning_rate(50, peak, 0) == peak
