"""Dropout that is cheap on a CPU: one 64-bit random number decides four elements.

torch's CPU dropout draws one Bernoulli sample per element from a single, serial random
stream. On the reference model that was over a quarter of a training step. Here each
64-bit draw is split into four 16-bit words, and an element is dropped when its word
falls below a threshold. The comparison writes a multiplier mask straight into the
input's dtype (0 or 1, with the fp32 mask holding 0 or the scale itself), and both passes
are a plain multiply by it: torch's CPU `where` and `masked_fill` are not vectorised and
took four times as long as a multiply. The drop probability is p rounded to a multiple
of 1/65536, and kept values are scaled by exactly 1 / (1 - that probability), so the
expectation is unchanged. Off the CPU, torch's fused dropout is already fast and is used
as is.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WORDS = 1 << 16  # the values a 16-bit word takes


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


def keep_mask(shape: torch.Size, dropped_words: int, dtype: torch.dtype,
              device: torch.device) -> Tensor:
    """A mask of `shape` and `dtype`: 0 with probability dropped_words / 65536, else 1.

    Draws from torch's default generator, so torch.manual_seed makes it repeatable.
    """
    n = shape.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    draws.random_(-(1 << 63), (1 << 63) - 1)  # the full 64 bits (plain random_() gives 63)
    words = draws.view(torch.int16)[:n].view(shape)  # uniform on [-32768, 32767]
    mask = torch.empty(shape, dtype=dtype, device=device)
    return torch.ge(words, dropped_words - WORDS // 2, out=mask)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) when training."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    dropped = min(round(p * WORDS), WORDS - 1)
    if dropped == 0:
        return x
    scale = WORDS / (WORDS - dropped)
    mask = keep_mask(x.shape, dropped, x.dtype, x.device)
    if x.dtype == torch.float32:  # fold the scale into the mask: one pass each way
        return _Multiply.apply(x, mask.mul_(scale), 1.0)
    return _Multiply.apply(x, mask, scale)  # bf16 would round the scale, so apply it apart


class Dropout(nn.Module):
    """nn.Dropout's interface, with the CPU-friendly `dropout` above."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
