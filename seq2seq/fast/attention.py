"""The fast twin of MultiHeadAttention: one product for the projections, torch's fused
attention kernel, and beams that share their sentence's keys and values."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.model.attention import DotScore, MultiHeadAttention


class FastMultiHeadAttention(MultiHeadAttention):
    """MultiHeadAttention with the same outputs, faster (see each method)."""

    def project(self, x: Tensor, *projections: nn.Linear) -> list[Tensor]:
        """One nn.Linear per projection, as one product with their weights side by side:
        faster than one thin product each.  x: (B, L, D) -> one (B, H, L, K) each.

        Without gradients (decoding, one token a step) the concatenation would cost more
        than it saves, so each runs on its own."""
        if len(projections) == 1 or not torch.is_grad_enabled():
            out = [proj(x) for proj in projections]
        else:
            weight = torch.cat([proj.weight for proj in projections])  # (n D, D)
            bias = torch.cat([proj.bias for proj in projections])
            out = F.linear(x, weight, bias).split(self.n_heads * self.head_dim, dim=-1)
        return [self.split(y) for y in out]

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, L, D) -> keys, values (B, H, L, K), in one product."""
        k, v = self.project(x, self.k_proj, self.v_proj)
        return k, v

    def queries_keys_values(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: (B, L, D) -> queries, keys, values (B, H, L, K), in one product."""
        q, k, v = self.project(x, self.q_proj, self.k_proj, self.v_proj)
        return q, k, v

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """MultiHeadAttention.forward, on torch's fused kernel where it applies.

        k, v (and mask) may instead hold B / g rows, one for each g consecutive query rows
        (beam search: a sentence's g beams share its encoder's keys and values). The g
        rows' queries then attend as one row of g * Tq queries: faster, since the keys
        and values are not copied g times and the fused kernel sets up g times fewer rows.
        """
        B, H, Tq, K = q.shape
        groups = B // k.size(0)
        if groups > 1:  # (B, H, Tq, K) -> (B / g, H, g * Tq, K), a view
            q = q.view(B // groups, groups, H, Tq, K).transpose(1, 2).flatten(2, 3)
        p = self.dropout.p if self.training else 0.0
        # On a CPU, SDPA with dropout falls back to its unfused math path with torch's
        # per-element dropout; the written-out path with the fast dropout is quicker.
        fused = isinstance(self.score, DotScore) and self.score.scaled
        if fused and not need_weights and not (p > 0 and q.device.type == "cpu"):
            out, weights = fused_attention(q, k, v, mask, p), None
        else:
            scores = self.score(q, k)  # (B, H, Tq, Tk)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)  # (B, H, Tq, Tk)
            out = self.dropout(weights) @ v  # (B, H, Tq, K)
        if groups > 1:  # back to one row per query row: (B, H, Tq, K), (B, H, Tq, Tk)
            out = _ungroup(out, groups, Tq)
            weights = None if weights is None else _ungroup(weights, groups, Tq)
        out = out.transpose(1, 2).reshape(B, Tq, H * K)  # (B, Tq, D)
        return self.out_proj(out), (weights if need_weights else None)


def fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """softmax(q k^T / sqrt(K), masked) @ v by torch's scaled_dot_product_attention, which
    never materialises the (B, H, Tq, Tk) weights; (B, H, Tq, K) in and out.

    On a CPU, bf16 and fp16 inputs (bf16 autocast included) run the kernel in fp32 and
    cast the output back: torch's CPU flash-attention backward is much slower in bf16
    than in fp32, and attention is a small share of the FLOPs.
    """
    if q.device.type != "cpu" or q.dtype not in (torch.bfloat16, torch.float16):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
    with torch.autocast("cpu", enabled=False):  # autocast would cast the fp32 inputs back
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask,
                                             dropout_p=p)
    return out.to(q.dtype)


def _ungroup(x: Tensor, groups: int, per_row: int) -> Tensor:
    """(B / g, H, g * T, X) -> (B, H, T, X): each row's T queries back on their own row."""
    rows, H, _, X = x.shape
    return x.view(rows, H, groups, per_row, X).transpose(1, 2).flatten(0, 1)
