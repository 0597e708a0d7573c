"""Positional encoding, feed-forward, and the encoder and decoder layers."""

import math

import torch
from torch import Tensor, nn

from seq2seq.model.attention import LayerCache, MultiHeadAttention


def embeddings(src_vocab: int, tgt_vocab: int, d_model: int, pad_id: int, share: bool
               ) -> tuple[nn.Embedding, nn.Embedding]:
    """Source and target embedding tables; one shared table when `share` (joint vocabulary)."""
    tgt = nn.Embedding(tgt_vocab, d_model, padding_idx=pad_id)
    if not share:
        return nn.Embedding(src_vocab, d_model, padding_idx=pad_id), tgt
    if src_vocab != tgt_vocab:
        raise ValueError("shared embeddings need one joint vocabulary")
    return tgt, tgt


class PositionalEncoding(nn.Module):
    """Sinusoidal positions: PE[p, 2i] = sin(p / 10000^(2i/D)), PE[p, 2i+1] = cos(...)."""

    def __init__(self, d_model: int, max_positions: int):
        super().__init__()
        position = torch.arange(max_positions).unsqueeze(1)  # (P, 1)
        freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))  # (D/2,)
        table = torch.zeros(max_positions, d_model)
        table[:, 0::2] = torch.sin(position * freq)
        table[:, 1::2] = torch.cos(position * freq[: d_model // 2])
        self.register_buffer("table", table, persistent=False)  # rebuilt, never checkpointed

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x: (B, L, D) -> x + PE[offset : offset + L]."""
        return x + self.table[offset : offset + x.size(1)]


class FeedForward(nn.Module):
    """Linear -> ReLU -> dropout -> Linear, applied at every position."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.w_in = nn.Linear(d_model, d_ff)
        self.w_out = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, L, D) -> (B, L, D), through (B, L, F)."""
        return self.w_out(self.dropout(torch.relu(self.w_in(x))))


class Residual(nn.Module):
    """x + dropout(f(x)) with LayerNorm before f (pre-norm) or after the sum (post-norm)."""

    def __init__(self, d_model: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def inner(self, x: Tensor) -> Tensor:
        """What the sublayer sees."""
        return self.norm(x) if self.pre_norm else x

    def outer(self, x: Tensor, y: Tensor) -> Tensor:
        """Combine the input with the sublayer's output y; both (B, L, D)."""
        out = x + self.dropout(y)
        return out if self.pre_norm else self.norm(out)


class EncoderLayer(nn.Module):
    """Self-attention, then feed-forward, each in a residual block."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float,
                 attention_dropout: float, score: str, pre_norm: bool):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, score)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.attn_block = Residual(d_model, dropout, pre_norm)
        self.ff_block = Residual(d_model, dropout, pre_norm)

    def forward(self, x: Tensor, mask: Tensor, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """x: (B, S, D), mask: (B, 1, 1, S) -> (B, S, D), weights (B, H, S, S) or None."""
        q, k, v = self.self_attn.queries_keys_values(self.attn_block.inner(x))
        y, weights = self.self_attn(q, k, v, mask, need_weights)
        x = self.attn_block.outer(x, y)
        x = self.ff_block.outer(x, self.ff(self.ff_block.inner(x)))
        return x, weights


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder output, feed-forward."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float,
                 attention_dropout: float, score: str, pre_norm: bool):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, score)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, score)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.self_block = Residual(d_model, dropout, pre_norm)
        self.cross_block = Residual(d_model, dropout, pre_norm)
        self.ff_block = Residual(d_model, dropout, pre_norm)

    def forward(self, x: Tensor, memory: Tensor, src_mask: Tensor, tgt_mask: Tensor | None,
                cache: LayerCache | None = None, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """One decoder layer.

        x: (B, T, D) target states (T = 1 when decoding step by step with a cache);
        memory: (B, S, D); src_mask: (B, 1, 1, S); tgt_mask: (B, 1, T, T) or None
        (with a cache the newest token may see every cached position).
        Returns (B, T, D), self-attention weights (B, H, T, T') and cross-attention
        weights (B, H, T, S), the weights only when need_weights.
        """
        q, k, v = self.self_attn.queries_keys_values(self.self_block.inner(x))  # (B, H, T, K)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, T', K): every position so far
        y, self_w = self.self_attn(q, k, v, tgt_mask, need_weights)
        x = self.self_block.outer(x, y)

        q = self.cross_attn.queries(self.cross_block.inner(x))
        if cache is not None and cache.cross_k is not None:
            k, v = cache.cross_k, cache.cross_v
        else:
            k, v = self.cross_attn.keys_values(memory)  # (B, H, S, K)
            if cache is not None:
                cache.cross_k, cache.cross_v = k, v
        y, cross_w = self.cross_attn(q, k, v, src_mask, need_weights)
        x = self.cross_block.outer(x, y)

        x = self.ff_block.outer(x, self.ff(self.ff_block.inner(x)))
        return x, self_w, cross_w
