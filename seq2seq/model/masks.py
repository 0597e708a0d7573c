"""The one mask convention: boolean, True means "may attend", broadcastable to (B, H, T_q, T_k)."""

import torch
from torch import Tensor


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """Keys that are real tokens.

    ids: (B, L) token ids.  Returns (B, 1, 1, L) bool.
    """
    return (ids != pad_id)[:, None, None, :]  # (B, 1, 1, L)


def causal_mask(length: int, device: torch.device | None = None) -> Tensor:
    """Position t may attend to positions <= t.  Returns (1, 1, L, L) bool."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]


def target_mask(ids: Tensor, pad_id: int) -> Tensor:
    """Causal and padding mask for decoder self-attention.

    ids: (B, T).  Returns (B, 1, T, T) bool.
    """
    return padding_mask(ids, pad_id) & causal_mask(ids.size(1), ids.device)  # (B, 1, T, T)
