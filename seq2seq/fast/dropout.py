"""Dropout that is cheap on a CPU: one 64-bit random number decides four elements.

Replaces nn.Dropout / F.dropout on a CPU, which draws one Bernoulli sample per element
from a single serial random stream. Here each 64-bit draw from numpy's PCG64 (seeded for
each mask from torch's default generator, so torch.manual_seed and a checkpoint's RNG
state still decide it) is split into four 16-bit words, and an element is dropped when
its word falls below a threshold. The mask is written straight into the input's dtype
(0 or 1; the fp32 mask holds 0 or the scale itself) and applied by a plain multiply,
which vectorises where torch's CPU `where` and `masked_fill` do not. The drop
probability is p rounded to a multiple of 1/65536, and kept values are scaled by exactly
1 / (1 - that probability), so the expectation is unchanged. Off the CPU, and under
torch.compile (whose graphs cannot hold numpy's generator), torch's own dropout runs.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

WORDS = 1 << 16  # the values a 16-bit word takes


class FastDropout(nn.Dropout):
    """nn.Dropout, drawing its mask with `dropout` below: four elements per random draw."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """F.dropout(x, p, training): zero each element with probability p, scale the rest by
    1 / (1 - p). Faster on a CPU: a quarter of the random draws, and a multiply by the mask."""
    dropped = _dropped_words(x, p, training)
    if dropped is None:
        return F.dropout(x, p, training=True) if training and p > 0 else x
    if dropped == 0:
        return x
    scale = WORDS / (WORDS - dropped)
    mask = keep_mask(x.shape, dropped, x.dtype, x.device)
    if x.dtype == torch.float32:  # fold the scale into the mask: one pass each way
        return _Multiply.apply(x, mask.mul_(scale), 1.0)
    return _Multiply.apply(x, mask, scale)  # bf16 would round the scale, so apply it apart


def relu_dropout(h: Tensor, p: float, training: bool = True) -> tuple[Tensor, float]:
    """dropout(relu(h)) with its 1 / (1 - p) left to the caller: returns (y, scale).

    dropout(relu(h)) = scale * y, y = relu(h) times a 0/1 mask. Faster on a CPU: the
    caller folds scale into the (F, D) weights of the product that follows instead of a
    pass over the (tokens, F) activations, and the mask is not kept for backward (the
    gradient reaches h where y > 0). Off the CPU, y is torch's dropout(relu(h)), scale 1.
    """
    dropped = _dropped_words(h, p, training)
    if dropped is None:
        y = torch.relu(h)
        return (F.dropout(y, p, training=True) if training and p > 0 else y), 1.0
    if dropped == 0:
        return torch.relu(h), 1.0
    mask = keep_mask(h.shape, dropped, h.dtype, h.device)
    return _ReluTimesMask.apply(h, mask), WORDS / (WORDS - dropped)


def residual_dropout(x: Tensor, y: Tensor, p: float, training: bool = True) -> Tensor:
    """x + dropout(y). Faster on a CPU: one addcmul pass with a 0/1 mask and the scale
    instead of a multiply and an add. Mixed dtypes (bf16 autocast: y bf16, x fp32) take
    the two-pass way, since casting y first would cost the pass it saves."""
    dropped = _dropped_words(y, p, training)
    if dropped is None or x.shape != y.shape or x.dtype != y.dtype:
        return x + dropout(y, p, training)
    if dropped == 0:
        return x + y
    mask = keep_mask(y.shape, dropped, y.dtype, y.device)
    return _AddTimesMask.apply(x, y, mask, WORDS / (WORDS - dropped))


def keep_mask(shape: torch.Size, dropped_words: int, dtype: torch.dtype,
              device: torch.device) -> Tensor:
    """A mask of `shape` and `dtype`: 0 with probability dropped_words / 65536, else 1.

    The words come from random_words, so torch.manual_seed makes the mask repeatable.
    """
    words = random_words(shape.numel()).view(shape).to(device)  # uniform on [-32768, 32767]
    mask = torch.empty(shape, dtype=dtype, device=device)
    return torch.ge(words, dropped_words - WORDS // 2, out=mask)


def random_words(n: int) -> Tensor:
    """n independent uniform 16-bit words (int16, on the CPU), four to a 64-bit draw.

    The stream's seed is drawn from torch's default generator.
    """
    seed = int(torch.randint(1 << 62, ()).item())
    draws = np.random.PCG64(seed).random_raw((n + 3) // 4)  # (ceil(n / 4),) uint64
    return torch.from_numpy(draws.view(np.int16)[:n])


def _dropped_words(x: Tensor, p: float, training: bool) -> int | None:
    """Words out of 65536 that drop an element (0: nothing to drop), or None off the CPU
    and under torch.compile: torch's own dropout then."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    return min(round(p * WORDS), WORDS - 1) if training else 0


class _Multiply(torch.autograd.Function):
    """y = x * mask * scale; the gradient gets the same treatment."""

    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        y = x * mask
        return y if scale == 1.0 else y.mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        g = grad * mask
        return (g if ctx.scale == 1.0 else g.mul_(ctx.scale)), None, None


class _ReluTimesMask(torch.autograd.Function):
    """y = relu(h) * mask (0/1); dy/dh is 1 where y > 0, else 0."""

    @staticmethod
    def forward(ctx, h: Tensor, mask: Tensor) -> Tensor:
        y = torch.relu(h).mul_(mask)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, y, 0), None


class _AddTimesMask(torch.autograd.Function):
    """out = x + scale * y * mask (0/1), one pass; the gradient to y is grad * mask * scale."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, mask: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return torch.addcmul(x, y, mask, value=scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        return grad, torch.mul(grad, mask).mul_(ctx.scale), None, None
