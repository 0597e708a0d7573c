"""The fast path's CPU dropout (seq2seq/fast/dropout.py): drop rate, scaling, gradient,
repeatability, and its fused forms against the plain ones under the same mask."""

import pytest
import torch
from torch import nn

from seq2seq.fast import accelerate
from seq2seq.fast.dropout import (
    WORDS,
    FastDropout,
    dropout,
    keep_mask,
    random_words,
    relu_dropout,
    residual_dropout,
)


def Dropout(p: float) -> FastDropout:  # noqa: N802 (named as the module it builds)
    return accelerate(nn.Dropout(p))


def test_identity_when_not_training_or_p_zero():
    x = torch.randn(4, 5)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    module = Dropout(0.3).eval()
    assert module(x) is x


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drop_rate_and_scale(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_000)
    y = dropout(x, p)
    dropped = round(p * WORDS) / WORDS
    assert abs((y == 0).float().mean().item() - p) < 3e-3
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - dropped)))
    assert abs(y.mean().item() - 1.0) < 5e-3  # the expectation is unchanged


def test_mask_words_are_uniform():
    torch.manual_seed(0)
    cpu, size = torch.device("cpu"), torch.Size([400_000])
    quarters = [1 - keep_mask(size, k * WORDS // 4, torch.float32, cpu).mean().item()
                for k in range(1, 4)]
    assert quarters == pytest.approx([0.25, 0.5, 0.75], abs=3e-3)
    # the four words of one draw are independent: each position in a group of 4 alike
    torch.manual_seed(1)
    m = keep_mask(size, WORDS // 2, torch.float32, cpu).view(-1, 4)
    assert m.mean(0).tolist() == pytest.approx([0.5] * 4, abs=5e-3)
    assert (m[:, 0] * m[:, 3]).mean().item() == pytest.approx(0.25, abs=5e-3)


def test_random_words_follow_torch_seed_and_differ_between_calls():
    torch.manual_seed(3)
    a, b = random_words(4001), random_words(4001)  # not a multiple of four
    torch.manual_seed(3)
    assert torch.equal(random_words(4001), a)
    assert a.dtype == torch.int16 and a.shape == (4001,)
    assert (a == b).float().mean().item() < 0.01  # a fresh stream each call
    high = (a.int() + 32768) >> 12  # the top four bits: 16 equally likely values
    assert torch.bincount(high, minlength=16).min().item() > 4001 / 16 * 0.7


def test_gradient_is_mask_times_scale():
    torch.manual_seed(0)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25)
    g = torch.randn_like(y)
    y.backward(g)
    kept = y.detach() != 0
    assert torch.allclose(x.grad, g * kept / (1 - 0.25))
    assert torch.allclose(y.detach(), x.detach() * kept / (1 - 0.25))


def test_repeatable_under_manual_seed_and_keeps_dtype():
    x = torch.randn(3, 7, 11, dtype=torch.bfloat16)
    torch.manual_seed(5)
    a = Dropout(0.2)(x)
    torch.manual_seed(5)
    b = Dropout(0.2)(x)
    assert a.dtype == torch.bfloat16 and a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, Dropout(0.2)(x))


def test_non_contiguous_input():
    torch.manual_seed(0)
    x = torch.ones(50, 40).t()
    y = dropout(x, 0.5)
    assert y.shape == (40, 50) and set(y.unique().tolist()) == {0.0, 2.0}


def test_bf16_kept_values_are_scaled_exactly_once():
    torch.manual_seed(0)
    x = torch.randn(200, 50).bfloat16()
    y = dropout(x, 0.1)
    kept = y != 0
    scale = WORDS / (WORDS - round(0.1 * WORDS))
    assert torch.equal(y[kept], (x[kept].float() * scale).bfloat16())


def _twice(seed, fn, *inputs):
    """fn(*inputs) under torch.manual_seed(seed), with the inputs' gradients."""
    torch.manual_seed(seed)
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    return out.detach(), [t.grad for t in leaves]


def test_feed_forward_with_the_scale_on_its_weights_is_plain_dropout():
    from seq2seq.fast.layers import FastFeedForward
    from seq2seq.model.layers import FeedForward

    torch.manual_seed(0)
    ff = accelerate(FeedForward(16, 64, dropout=0.3).train())
    assert type(ff) is FastFeedForward
    x = torch.randn(5, 7, 16)
    plain = _twice(1, lambda t: ff.w_out(dropout(torch.relu(ff.w_in(t)), 0.3)), x)
    fused = _twice(1, ff, x)  # the same mask: the same draws from the same seed
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    y, scale = relu_dropout(torch.randn(400_000), 0.3)
    assert scale == WORDS / (WORDS - round(0.3 * WORDS)) and set(y[y < 0].tolist()) == set()


def test_relu_dropout_passes_the_gradient_where_the_output_is_positive():
    torch.manual_seed(0)
    h = torch.randn(1000, 50, requires_grad=True)
    y, _ = relu_dropout(h, 0.25)
    y.backward(torch.ones_like(y))
    assert torch.equal(h.grad, (y > 0).float())
    positive = h.detach() > 0
    assert (y[positive] == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_residual_dropout_is_x_plus_dropout_of_y(dtype):
    x, y = torch.randn(6, 9, 32), torch.randn(6, 9, 32).to(dtype)
    plain = _twice(2, lambda a, b: a + dropout(b, 0.2), x, y)
    fused = _twice(2, lambda a, b: residual_dropout(a, b, 0.2), x, y)
    assert fused[0].dtype == torch.float32
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(fused, plain, rtol=tol, atol=tol)
    assert torch.equal(residual_dropout(x, y, 0.2, training=False), x + y)


def test_residual_block_is_x_plus_dropout_of_y_under_the_same_mask():
    from seq2seq.model.layers import Residual

    for pre_norm in (True, False):
        block = Residual(32, dropout=0.2, pre_norm=pre_norm).train()
        x, y = torch.randn(6, 9, 32), torch.randn(6, 9, 32)
        accelerate(block.dropout)  # the plain block, drawing the fast dropout's mask
        plain = _twice(3, block.outer, x, y)
        accelerate(block)
        fused = _twice(3, block.outer, x, y)
        torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-6)


def test_under_torch_compile_every_form_is_torch_dropout(monkeypatch):
    """numpy's generator cannot be traced: compiled graphs get torch's dropout."""
    import seq2seq.fast.dropout as module

    def traced(*args):
        raise AssertionError("numpy draws inside a compiled graph")

    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    monkeypatch.setattr(module, "random_words", traced)
    torch.manual_seed(0)
    x, y = torch.randn(64, 64), torch.randn(64, 64)
    out = dropout(x, 0.5)
    kept = out != 0
    assert 0.4 < kept.float().mean() < 0.6
    torch.testing.assert_close(out[kept], 2 * x[kept])
    assert relu_dropout(x, 0.5)[1] == 1.0
    residual_dropout(x, y, 0.5)
