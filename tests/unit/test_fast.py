"""The contract between the two paths: each fast piece (seq2seq/fast) equals its plain twin.

The dropout kernels' own statistics are in test_dropout.py.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from seq2seq.data import make_batch
from seq2seq.fast import TWINS, accelerate
from seq2seq.fast.attention import FastMultiHeadAttention
from seq2seq.fast.loss import FastTeacherForcedLoss, OutputLayer, smoothed_loss
from seq2seq.fast.topk import top_tokens
from seq2seq.loss import TeacherForcedLoss
from seq2seq.loss import smoothed_loss as plain_smoothed_loss
from seq2seq.model.attention import SCORES, MultiHeadAttention
from seq2seq.model.masks import padding_mask, target_mask
from seq2seq.search import beam_search, greedy_search, max_output_lengths
from tests.conftest import BOS, EOS, PAD, random_ids, tiny_model
from tests.unit.test_rnn import tiny_rnn


def fast_copy(module):
    """A deep copy of `module` on the fast path; the original stays plain."""
    return accelerate(copy.deepcopy(module))


def attention_pair(score: str = "scaled_dot", dropout: float = 0.0, d_model: int = 32):
    torch.manual_seed(0)
    plain = MultiHeadAttention(d_model, 4 if d_model == 32 else 2, dropout, score).eval()
    return plain, fast_copy(plain)


# ---------------------------------------------------------------- the switch


@pytest.mark.parametrize("attention", ["scaled_dot", "additive"])
def test_accelerate_swaps_every_plain_piece_and_leaves_outputs_unchanged(attention):
    plain = tiny_model(attention)
    fast = fast_copy(plain)
    assert not any(type(m) in TWINS for m in fast.modules())  # every piece swapped
    assert fast.state_dict().keys() == plain.state_dict().keys()
    assert fast.beams_share_memory and not plain.beams_share_memory
    src, tgt = random_ids(3, 7), random_ids(3, 5, seed=2)
    src[1, 4:] = PAD
    args = src, tgt, padding_mask(src, PAD), target_mask(tgt, PAD)
    torch.testing.assert_close(fast(*args), plain(*args), rtol=1e-5, atol=1e-5)
    assert accelerate(fast) is fast and type(fast) is type(accelerate(fast))  # idempotent
    assert type(copy.deepcopy(fast)) is type(fast)  # validate_weights copies the model


def test_accelerate_leaves_an_rnns_outputs_unchanged():
    plain = tiny_rnn("lstm", "additive")
    fast = fast_copy(plain)
    assert not fast.beams_share_memory  # each beam keeps its own recurrent state
    src = random_ids(3, 7)
    src[1, 4:] = PAD
    tgt = random_ids(3, 5, seed=2)
    args = src, tgt, padding_mask(src, PAD), None
    torch.testing.assert_close(fast(*args), plain(*args), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- attention


@pytest.mark.parametrize("score", SCORES)
def test_fast_attention_equals_plain_attention(score):
    plain, fast = attention_pair(score)
    x, mem = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    mask = padding_mask(torch.tensor([[5] * 7, [5] * 4 + [PAD] * 3]), PAD)
    k, v = plain.keys_values(mem)
    q = plain.queries(x)
    for need_weights in (False, True):  # the fused kernel (scaled_dot), and the plain math
        got, got_w = fast(q, k, v, mask, need_weights)
        want, want_w = plain(q, k, v, mask, need_weights)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        if need_weights:
            torch.testing.assert_close(got_w, want_w, rtol=1e-5, atol=1e-5)


def test_projections_in_one_product_equal_one_product_each():
    plain, fast = attention_pair()
    fast.train()
    x = torch.randn(2, 5, 32)
    q, k, v = fast.queries_keys_values(x)  # with gradients: one concatenated product
    for got, want in zip((q, k, v), plain.queries_keys_values(x), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torch.stack(fast.keys_values(x)), torch.stack((k, v)))
    q.sum().backward()  # the gradient reaches the separate parameters
    assert fast.q_proj.weight.grad.abs().sum() > 0 and not fast.k_proj.weight.grad.any()


def test_beams_sharing_one_row_of_keys_and_values_attend_as_if_each_had_a_copy():
    """The fast twin takes one key/value row per sentence for its beams (beam search)."""
    _, attn = attention_pair(d_model=16)
    sentences, beams, keys = 3, 4, 5
    memory = torch.randn(sentences, keys, 16)
    mask = torch.ones(sentences, 1, 1, keys, dtype=torch.bool)
    mask[1, ..., 3:] = False  # a shorter source
    per_sentence = attn.keys_values(memory)  # (3, H, S, K) each
    copied = [t.repeat_interleave(beams, dim=0) for t in per_sentence]  # (12, H, S, K)
    for steps in (1, 3):  # one token a step (cached decoding), or several
        q = attn.queries(torch.randn(sentences * beams, steps, 16))
        for need_weights in (False, True):  # the fused kernel, and the plain path
            shared = attn(q, *per_sentence, mask, need_weights)
            each = attn(q, *copied, mask.repeat_interleave(beams, dim=0), need_weights)
            torch.testing.assert_close(shared[0], each[0], rtol=0, atol=1e-6)
            if need_weights:
                torch.testing.assert_close(shared[1], each[1], rtol=0, atol=1e-6)
                assert shared[1].shape == (sentences * beams, 2, steps, keys)


def test_attention_dropout_on_cpu_drops_weights_outside_sdpa(monkeypatch):
    """Training with attention dropout avoids SDPA's per-element Bernoulli fallback on a CPU,
    and the dropped weights average back to the eval-mode output."""
    _, attn = attention_pair(dropout=0.3)
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
    _, attn = attention_pair()
    attn.train()
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
    assert isinstance(attn, FastMultiHeadAttention)


# ---------------------------------------------------------------- loss


def test_fast_loss_equals_cross_entropy_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1100, 37, generator=g) * 3  # more rows than one forward chunk
    target = torch.randint(0, 37, (1100,), generator=g)
    mine = logits.clone().requires_grad_()
    ref = logits.clone().requires_grad_()
    loss, nll = smoothed_loss(mine * 1.0, target, 0.1)  # a non-leaf, as the model's are
    (2.5 * loss).backward()
    expected, expected_nll = plain_smoothed_loss(ref, target, 0.1)
    (2.5 * expected).backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, expected_nll)
    torch.testing.assert_close(expected, F.cross_entropy(logits, target, label_smoothing=0.1,
                                                         reduction="sum"))
    torch.testing.assert_close(mine.grad, ref.grad, rtol=1e-5, atol=1e-6)
    assert not nll.requires_grad


def test_fast_loss_on_bf16_logits_works_in_fp32_and_returns_a_bf16_gradient():
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(1100, 37, generator=g) * 3).bfloat16()  # more rows than a chunk
    target = torch.randint(0, 37, (1100,), generator=g)
    mine = logits.clone().requires_grad_()
    ref = logits.clone().requires_grad_()
    loss, nll = smoothed_loss(mine * 1.0, target, 0.1)
    (2.5 * loss).backward()
    expected, expected_nll = plain_smoothed_loss(ref, target, 0.1)  # casts to fp32 whole
    (2.5 * expected).backward()
    assert loss.dtype == nll.dtype == torch.float32
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, expected_nll)
    assert mine.grad.dtype == ref.grad.dtype == torch.bfloat16
    torch.testing.assert_close(mine.grad, ref.grad)  # to within a bf16 rounding


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


def test_fast_teacher_forced_loss_equals_the_plain_one():
    model = tiny_model()
    batch = make_batch([[5, 6, 7], [4] * 9], [[8, 9], [10] * 9], PAD, BOS, EOS)
    args = batch.src, batch.tgt_in, batch.tgt_out, batch.src_mask, batch.tgt_mask
    plain_loss = TeacherForcedLoss(model, 0.1)
    fast_loss = fast_copy(plain_loss)
    assert isinstance(fast_loss, FastTeacherForcedLoss)
    results = []
    for loss_fn in (plain_loss, fast_loss, fast_loss):  # the second fast call reuses a buffer
        loss_fn.model.zero_grad()
        loss, nll = loss_fn(*args, batch.n_tokens)
        loss.backward()
        results.append((loss.detach(), nll, [p.grad.clone() for p in loss_fn.model.parameters()]))
    for loss, nll, grads in results[1:]:
        torch.testing.assert_close(loss, results[0][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(nll, results[0][1], rtol=1e-5, atol=1e-5)
        for got, want in zip(grads, results[0][2], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_training_step_on_the_fast_path_equals_one_on_the_plain_path():
    """Loss, backward, clipping and an update, dropout 0: the same weights afterwards.
    (SGD: Adam's first steps would magnify rounding in gradients near zero.)"""
    plain = tiny_model(dropout=0.0).train()
    fast = fast_copy(plain)
    src = random_ids(4, 6).tolist()
    batch = make_batch(src, [s[::-1] for s in src], PAD, BOS, EOS)
    args = batch.src, batch.tgt_in, batch.tgt_out, batch.src_mask, batch.tgt_mask
    after = []
    for loss_fn in (TeacherForcedLoss(plain, 0.1), accelerate(TeacherForcedLoss(fast, 0.1))):
        opt = torch.optim.SGD(loss_fn.model.parameters(), lr=0.5)
        for _ in range(2):
            loss, _ = loss_fn(*args, batch.n_tokens)
            (loss / batch.n_tokens).backward()
            torch.nn.utils.clip_grad_norm_(loss_fn.model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
        after.append(loss_fn.model.state_dict())
    for key in after[0]:
        torch.testing.assert_close(after[1][key], after[0][key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_fast_loss_matches_eager_and_compiles_once_for_any_batch(monkeypatch):
    """Batches of 1, 2 and 4 loss chunks share one dynamic graph (about 20 s)."""
    import torch._dynamo

    torch._dynamo.reset()  # forget graphs other tests compiled from the same code
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    model = accelerate(tiny_model(dropout=0.0).train())
    eager = accelerate(TeacherForcedLoss(model, 0.1))
    compiled = torch.compile(accelerate(TeacherForcedLoss(model, 0.1)), dynamic=True)
    for n, length in ((5, 3), (10, 12), (20, 12)):  # 20, 130, 260 target tokens
        src = random_ids(n, length, seed=n).tolist()
        b = make_batch(src, src, PAD, BOS, EOS)
        args = b.src, b.tgt_in, b.tgt_out, b.src_mask, b.tgt_mask, b.n_tokens
        eager_loss, eager_nll = eager(*args)
        loss, nll = compiled(*args)
        torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(nll, eager_nll, rtol=1e-5, atol=1e-4)
        loss.backward()
        eager_loss.backward()


# ---------------------------------------------------------------- search


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
    expected, _ = tiny_model().top_k(scores, n)  # the plain path's
    assert torch.equal(values, expected)
    assert torch.equal(scores.gather(1, columns), values)
    for row in columns.tolist():
        assert len(set(row)) == len(row)


@pytest.mark.parametrize("arch", ["transformer", "rnn"])
def test_fast_search_gives_the_plain_searchs_outputs(arch):
    # a vocabulary of 700: top_tokens skips blocks for greedy and beam 4 alike
    plain = tiny_model(vocab=700, seed=4) if arch == "transformer" else tiny_rnn(seed=4)
    fast = fast_copy(plain)
    src = random_ids(5, 7, seed=3)
    src[1, 4:] = PAD
    src_mask = padding_mask(src, PAD)
    lens = max_output_lengths(src_mask, 1.5, plain.max_positions)
    searches = [lambda m: greedy_search(m, src, src_mask, BOS, EOS, lens)]
    searches.append(lambda m: beam_search(m, src, src_mask, BOS, EOS, lens, beam_size=4))
    for search in searches:
        want, got = search(plain), search(fast)
        assert got.tokens == want.tokens
        assert got.scores == pytest.approx(want.scores, abs=1e-4)
