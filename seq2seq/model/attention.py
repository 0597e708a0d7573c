"""Multi-head attention with swappable scoring functions and a key/value cache.

attention(q, k, v) = softmax(score(q, k) masked) @ v, computed per head.

Scoring functions (`model.attention` in the config):
    scaled_dot  q.k / sqrt(K)                 (Vaswani et al.)
    dot         q.k                           (Luong "dot")
    cosine      tau_h * cos(q, k)             (a learned temperature per head)
    general     q W_h k                       (Luong "general", bilinear, one K x K matrix per head)
    additive    v_h . tanh(W_q q + W_k k)     (Bahdanau "concat"; see AdditiveScore for its memory)
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SCORES = ("scaled_dot", "dot", "cosine", "general", "additive")


class DotScore(nn.Module):
    """q.k, optionally divided by sqrt(K)."""

    def __init__(self, head_dim: int, scaled: bool):
        super().__init__()
        self.scaled = scaled
        self.scale = 1.0 / math.sqrt(head_dim) if scaled else 1.0

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        """q: (B, H, Tq, K), k: (B, H, Tk, K) -> (B, H, Tq, Tk)."""
        return (q @ k.transpose(-2, -1)) * self.scale


class CosineScore(nn.Module):
    """Cosine similarity times a learned per-head temperature (kept positive via exp)."""

    def __init__(self, n_heads: int, init_temperature: float = 10.0):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.full((n_heads, 1, 1), math.log(init_temperature)))

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        cos = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)  # (B, H, Tq, Tk)
        return cos * self.log_temperature.exp()


class GeneralScore(nn.Module):
    """Bilinear q W_h k; W_h starts as I / sqrt(K), i.e. as scaled_dot."""

    def __init__(self, n_heads: int, head_dim: int):
        super().__init__()
        eye = torch.eye(head_dim) / math.sqrt(head_dim)
        self.weight = nn.Parameter(eye.repeat(n_heads, 1, 1))  # (H, K, K)

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return (q @ self.weight) @ k.transpose(-2, -1)  # (B, H, Tq, Tk)


class AdditiveScore(nn.Module):
    """v_h . tanh(W_q q + W_k k), with hidden width A = K per head.

    Memory: one (B, H, Tq, Tk, A) tensor, formed by a broadcast add; tanh runs in place
    on it and the product with v reduces it to (B, H, Tq, Tk). That is A times the
    memory of the other scores' (B, H, Tq, Tk), which is why additive attention is slow
    on long sentences; Bahdanau used it over RNN states with one query at a time.
    """

    def __init__(self, n_heads: int, head_dim: int):
        super().__init__()
        self.w_q = nn.Parameter(torch.randn(n_heads, head_dim, head_dim) / math.sqrt(head_dim))
        self.w_k = nn.Parameter(torch.randn(n_heads, head_dim, head_dim) / math.sqrt(head_dim))
        self.v = nn.Parameter(torch.randn(n_heads, head_dim, 1) / math.sqrt(head_dim))

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        qa = q @ self.w_q  # (B, H, Tq, A)
        ka = k @ self.w_k  # (B, H, Tk, A)
        hidden = (qa.unsqueeze(3) + ka.unsqueeze(2)).tanh_()  # (B, H, Tq, Tk, A): the big one
        return (hidden @ self.v.unsqueeze(1)).squeeze(-1)  # (B, H, Tq, Tk)


def make_score(name: str, n_heads: int, head_dim: int) -> nn.Module:
    """The scoring module for a config name."""
    if name in ("scaled_dot", "dot"):
        return DotScore(head_dim, scaled=name == "scaled_dot")
    if name == "cosine":
        return CosineScore(n_heads)
    if name == "general":
        return GeneralScore(n_heads, head_dim)
    if name == "additive":
        return AdditiveScore(n_heads, head_dim)
    raise ValueError(f"unknown attention score {name!r}; choose one of {', '.join(SCORES)}")


class MultiHeadAttention(nn.Module):
    """Q, K, V projections, a score per head, masked softmax, weighted sum, output projection."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, score: str = "scaled_dot"):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.score = make_score(score, n_heads, self.head_dim)
        self.dropout = nn.Dropout(dropout)  # on the attention weights

    def split(self, x: Tensor) -> Tensor:
        """(B, L, D) -> (B, H, L, K)."""
        B, L, _ = x.shape
        return x.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, K)

    def queries(self, x: Tensor) -> Tensor:
        """x: (B, L, D) -> (B, H, L, K)."""
        return self.split(self.q_proj(x))

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Project keys and values once, so a cache can keep them.  x: (B, L, D) ->
        (B, H, L, K) each."""
        return self.split(self.k_proj(x)), self.split(self.v_proj(x))

    def queries_keys_values(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Self-attention's three projections of x: (B, L, D) -> (B, H, L, K) each."""
        k, v = self.keys_values(x)
        return self.queries(x), k, v

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend from projected queries to projected keys/values.

        q: (B, H, Tq, K); k, v: (B, H, Tk, K); mask: bool, True = may attend,
        broadcastable to (B, H, Tq, Tk), or None.  Returns (B, Tq, D) and the weights
        (B, H, Tq, Tk) when need_weights, else None.
        """
        B, H, Tq, K = q.shape
        scores = self.score(q, k)  # (B, H, Tq, Tk), e.g. q @ k^T / sqrt(K)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)  # (B, H, Tq, Tk)
        out = self.dropout(weights) @ v  # (B, H, Tq, K)
        out = out.transpose(1, 2).reshape(B, Tq, H * K)  # (B, Tq, D)
        return self.out_proj(out), (weights if need_weights else None)


class LayerCache:
    """One decoder layer's keys and values for incremental decoding.

    Self-attention keys/values live in preallocated (B, H, capacity, K) buffers: a step
    writes its position in place and attends to a view of the filled prefix, so no step
    copies what earlier steps stored (capacity doubles when a sentence outgrows it).
    Cross-attention keys/values (B, H, S, K) are computed from the encoder once (one row
    per sentence for all its beams when the model's beams_share_memory).
    """

    def __init__(self, capacity: int = 0):
        self.capacity = capacity  # positions to allocate on the first append
        self.self_k: Tensor | None = None
        self.self_v: Tensor | None = None
        self.cross_k: Tensor | None = None
        self.cross_v: Tensor | None = None
        self.length = 0  # positions filled

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the newest keys/values (B, H, T, K); return all so far, (B, H, length, K)."""
        start, end = self.length, self.length + k.size(2)
        if self.self_k is None or end > self.self_k.size(2):
            self._grow(k, end)
        self.self_k[:, :, start:end] = k
        self.self_v[:, :, start:end] = v
        self.length = end
        return self.self_k[:, :, :end], self.self_v[:, :, :end]

    def _grow(self, k: Tensor, needed: int) -> None:
        old = 0 if self.self_k is None else self.self_k.size(2)
        capacity = max(needed, self.capacity, 2 * old)
        B, H, _, K = k.shape
        grown = [k.new_empty(B, H, capacity, K) for _ in range(2)]
        if old:
            grown[0][:, :, : self.length] = self.self_k[:, :, : self.length]
            grown[1][:, :, : self.length] = self.self_v[:, :, : self.length]
        self.self_k, self.self_v = grown

    def select(self, index: Tensor, cross_index: Tensor | None = None) -> None:
        """Keep and reorder batch rows.  index: (B',) long; cross_index: the rows of the
        cross-attention keys/values to keep when they hold one row per sentence of a beam
        search (a model whose beams_share_memory, see model/protocol.py), else index."""
        if self.self_k is not None:
            # Whole rows, spare capacity too: one index_select is a single pass into the
            # new buffer, where gathering the filled prefix and copying it in is two.
            self.self_k = self.self_k.index_select(0, index)
            self.self_v = self.self_v.index_select(0, index)
        if self.cross_k is not None:
            cross_index = index if cross_index is None else cross_index
            self.cross_k = self.cross_k.index_select(0, cross_index)
            self.cross_v = self.cross_v.index_select(0, cross_index)

    def copy_rows(self, src: Tensor, dst: Tensor) -> None:
        """Rows dst become copies of rows src, in place (beams forking within a sentence).

        src and dst must not overlap. Cross-attention keys/values are left alone: every
        beam of a sentence has the same ones.
        """
        for buffer in (self.self_k, self.self_v):
            if buffer is not None:
                filled = buffer[:, :, : self.length]  # (B, H, length, K), a view
                filled.index_copy_(0, dst, filled.index_select(0, src))


class DecoderCache:
    """Keys/values of every decoder layer for incremental decoding (see LayerCache)."""

    def __init__(self, n_layers: int, capacity: int = 0):
        self.layers = [LayerCache(capacity) for _ in range(n_layers)]

    @property
    def length(self) -> int:
        """Target positions already decoded (the position of the next token)."""
        return self.layers[0].length

    def select(self, index: Tensor, cross_index: Tensor | None = None) -> None:
        """Keep and reorder batch rows, e.g. the sentences still searching.  index: (B',);
        cross_index: see LayerCache.select."""
        for layer in self.layers:
            layer.select(index, cross_index)

    def copy_rows(self, src: Tensor, dst: Tensor) -> None:
        """Beam search forks: rows dst continue from rows src (same sentence, no overlap)."""
        for layer in self.layers:
            layer.copy_rows(src, dst)
