"""Search (greedy, beam, cache) and the training objective."""

import math

import pytest
import torch
import torch.nn.functional as F

from seq2seq.data import make_batch
from seq2seq.loss import OutputLayer, TeacherForcedLoss, smoothed_loss
from seq2seq.model.masks import padding_mask
from seq2seq.search import (
    _best_candidates,
    beam_search,
    greedy_search,
    max_output_lengths,
    top_tokens,
)
from seq2seq.training.schedule import learning_rate
from tests.conftest import BOS, EOS, PAD, assert_overfits_one_batch, random_ids, tiny_model


def search_inputs(batch=5, seed=1):
    src = random_ids(batch, 7, seed=seed)
    src[1, 4:] = PAD  # ragged batch
    if batch > 3:
        src[3, 2:] = PAD
    mask = padding_mask(src, PAD)
    return src, mask, max_output_lengths(mask, 1.5, 64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_equals_greedy(seed):
    model = tiny_model(seed=seed)
    src, mask, lens = search_inputs(seed=seed)
    greedy = greedy_search(model, src, mask, BOS, EOS, lens)
    beam = beam_search(model, src, mask, BOS, EOS, lens, beam_size=1)
    assert beam.tokens == greedy.tokens


@pytest.mark.parametrize("vocab, n",
                         [(1000, 3), (8000, 10), (8000, 1), (64 * 20, 5), (50, 10), (7, 10)])
def test_top_tokens_gives_topks_values_at_columns_that_hold_them(vocab, n):
    g = torch.Generator().manual_seed(vocab + n)
    scores = torch.randn(6, vocab, generator=g).log_softmax(dim=1)
    scores[:, 0] = float("-inf")  # PAD, never a candidate
    scores[1] = scores[1].round(decimals=1)  # many ties
    scores[2, -3:] = 5.0  # the best in the last, partial block
    scores[3] = float("-inf")  # nothing possible
    scores[3, :2] = -1.0
    values, columns = top_tokens(scores, n)
    expected, _ = scores.topk(min(n, vocab), dim=1)
    assert torch.equal(values, expected)
    assert torch.equal(scores.gather(1, columns), values)
    for row in columns.tolist():
        assert len(set(row)) == len(row)


def test_best_candidates_are_the_best_over_every_beams_every_token():
    g = torch.Generator().manual_seed(3)
    N, k, vocab = 4, 3, 2000
    logp = torch.randn(N * k, vocab, generator=g).log_softmax(dim=1)
    beam_scores = torch.randn(N, k, generator=g)
    beam_scores[0, 1:] = float("-inf")  # the first step: only beam 0 is alive
    scores, beam, token = _best_candidates(beam_scores, logp, 2 * k)
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


def test_smoothed_loss_gradient_equals_cross_entropys():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1100, 37, generator=g) * 3  # more rows than one forward chunk
    target = torch.randint(0, 37, (1100,), generator=g)
    mine = logits.clone().requires_grad_()
    ref = logits.clone().requires_grad_()
    loss, nll = smoothed_loss(mine * 1.0, target, 0.1)  # a non-leaf, as the model's are
    (2.5 * loss).backward()
    expected = F.cross_entropy(ref, target, label_smoothing=0.1, reduction="sum")
    (2.5 * expected).backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, F.cross_entropy(logits, target, reduction="sum"))
    torch.testing.assert_close(mine.grad, ref.grad, rtol=1e-5, atol=1e-6)
    assert not nll.requires_grad


def test_smoothed_loss_on_bf16_logits_works_in_fp32_and_returns_a_bf16_gradient():
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(1100, 37, generator=g) * 3).bfloat16()  # more rows than a chunk
    target = torch.randint(0, 37, (1100,), generator=g)
    mine = logits.clone().requires_grad_()
    ref = logits.float().requires_grad_()  # what the old full fp32 copy computed on
    loss, nll = smoothed_loss(mine * 1.0, target, 0.1)
    (2.5 * loss).backward()
    expected = F.cross_entropy(ref, target, label_smoothing=0.1, reduction="sum")
    (2.5 * expected).backward()
    assert loss.dtype == nll.dtype == torch.float32
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, F.cross_entropy(ref.detach(), target, reduction="sum"))
    assert mine.grad.dtype == torch.bfloat16
    torch.testing.assert_close(mine.grad, ref.grad.bfloat16())  # to within a bf16 rounding


def test_kept_logits_buffer_gives_linear_and_cross_entropys_values_and_gradients():
    torch.manual_seed(0)
    layer = OutputLayer()
    weight = torch.randn(50, 8, requires_grad=True)
    for rows in (30, 20, 40, 40):  # grows, then is reused for fewer and as many rows
        hidden = torch.randn(rows, 8, requires_grad=True)
        target = torch.randint(0, 50, (rows,))
        loss, _ = smoothed_loss(layer(hidden * 1.0, weight), target, 0.1)
        loss.backward()
        mine = hidden.grad, weight.grad
        hidden.grad = weight.grad = None
        expected = F.cross_entropy(F.linear(hidden, weight), target, label_smoothing=0.1,
                                   reduction="sum")
        expected.backward()
        torch.testing.assert_close(loss, expected)
        torch.testing.assert_close(mine, (hidden.grad, weight.grad), rtol=1e-5, atol=1e-5)
        weight.grad = None
        assert layer.buffer.numel() == 50 * max(30, rows) and not layer.buffer.requires_grad


def test_kept_logits_buffer_is_not_shared_while_in_use():
    layer, weight = OutputLayer(), torch.randn(50, 8, requires_grad=True)
    first = layer(torch.randn(10, 8), weight)
    second = layer(torch.randn(10, 8), weight)  # first has not been through backward
    assert first.data_ptr() != second.data_ptr()
    del first, second  # graphs dropped without a backward pass: the buffer is free again
    third = layer(torch.randn(10, 8), weight)
    assert third.data_ptr() == layer.buffer.data_ptr()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(10, 8), weight).dtype == torch.bfloat16  # as nn.Linear's


def test_loss_with_kept_logits_matches_the_plain_one():
    model = tiny_model()
    batch = make_batch([[5, 6, 7], [4] * 9], [[8, 9], [10] * 9], PAD, BOS, EOS)
    args = batch.src, batch.tgt_in, batch.tgt_out, batch.src_mask, batch.tgt_mask
    grads = []
    for keep in (False, True):
        model.zero_grad()
        loss, _ = TeacherForcedLoss(model, 0.1, keep_logits=keep)(*args)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for plain, kept in zip(*grads, strict=True):
        torch.testing.assert_close(kept, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiled_loss_matches_eager_and_compiles_once_for_any_batch(monkeypatch):
    """Batches of 1, 2 and 4 loss chunks share one dynamic graph (about 20 s)."""
    import torch._dynamo

    torch._dynamo.reset()  # forget graphs other tests compiled from the same code
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    model = tiny_model(dropout=0.0).train()
    compiled = torch.compile(TeacherForcedLoss(model, 0.1), dynamic=True)
    for n, length in ((5, 3), (10, 12), (20, 12)):  # 20, 130, 260 target tokens
        src = random_ids(n, length, seed=n).tolist()
        b = make_batch(src, src, PAD, BOS, EOS)
        args = b.src, b.tgt_in, b.tgt_out, b.src_mask, b.tgt_mask, b.n_tokens
        eager_loss, eager_nll = TeacherForcedLoss(model, 0.1)(*args)
        loss, nll = compiled(*args)
        torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(nll, eager_nll, rtol=1e-5, atol=1e-4)
        loss.backward()
