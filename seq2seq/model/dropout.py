"""Dropout that is cheap on a CPU: one 64-bit random number decides four elements.

torch's CPU dropout draws one Bernoulli sample per element from a single, serial random
stream, and keeps a float mask for the backward pass. On the reference model that was
over a quarter of a training step. Here each 64-bit draw is split into four 16-bit words,
an element is dropped when its word falls below a threshold, and the backward pass keeps
a one-byte mask. The drop probability is p rounded to a multiple of 1/65536, and kept
values are scaled by exactly 1 / (1 - that probability), so the expectation is unchanged.
Off the CPU, torch's fused dropout is already fast and is used as is.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WORDS = 1 << 16  # the values a 16-bit word takes


class _ZeroAndScale(torch.autograd.Function):
    """y = x * scale, with zeros where `drop`; the gradient gets the same treatment."""

    @staticmethod
    def forward(ctx, x: Tensor, drop: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(drop)
        ctx.scale = scale
        return torch.where(drop, x.new_zeros(()), x).mul_(scale)  # where: one pass, no copy

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (drop,) = ctx.saved_tensors
        return torch.where(drop, grad.new_zeros(()), grad).mul_(ctx.scale), None, None


def drop_mask(shape: torch.Size, dropped_words: int, device: torch.device) -> Tensor:
    """A bool mask of `shape`, each element True with probability dropped_words / 65536.

    Draws from torch's default generator, so torch.manual_seed makes it repeatable.
    """
    n = shape.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    draws.random_(-(1 << 63), (1 << 63) - 1)  # the full 64 bits (plain random_() gives 63)
    words = draws.view(torch.int16)[:n]  # uniform on [-32768, 32767]
    return (words < dropped_words - WORDS // 2).view(shape)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) when training."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    dropped = min(round(p * WORDS), WORDS - 1)
    if dropped == 0:
        return x
    return _ZeroAndScale.apply(x, drop_mask(x.shape, dropped, x.device),
                               WORDS / (WORDS - dropped))


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
