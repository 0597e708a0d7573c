"""A block top-k over a vocabulary, for search on a CPU."""

import torch
from torch import Tensor

BLOCK = 64  # vocabulary entries per block in top_tokens


def top_tokens(scores: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The n largest scores of each row and their columns, with the values of
    model/protocol.py's top_k (scores.topk). Faster on a CPU, where topk copies every row
    into (value, index) pairs: it ranks only the n blocks of BLOCK columns with the
    largest maxima, each maximum one vectorised pass.

    scores: (R, V) -> values, columns (R, m), m = min(n, V), largest first. The n blocks
    with the largest maxima hold the row's n largest values (a block holding one of them
    has a maximum that at most n - 1 other elements exceed); topk then runs on those
    n * BLOCK columns plus the last V % BLOCK. Among equal values the columns may differ,
    as topk leaves open too. Off the CPU, topk itself is fast and one kernel.
    """
    R, V = scores.shape
    m, blocks = min(n, V), V // BLOCK
    if scores.device.type != "cpu" or blocks <= 4 * m:  # or too few blocks to skip many
        return scores.topk(m, dim=1)
    full = scores[:, : blocks * BLOCK].unflatten(1, (blocks, BLOCK))  # (R, blocks, BLOCK)
    chosen = full.amax(dim=2).topk(m, dim=1).indices  # (R, m)
    columns = (chosen.unsqueeze(2) * BLOCK
               + torch.arange(BLOCK, device=scores.device)).flatten(1)  # (R, m * BLOCK)
    rest = torch.arange(blocks * BLOCK, V, device=scores.device).expand(R, -1)
    columns = torch.cat([columns, rest], dim=1)  # (R, m * BLOCK + V % BLOCK)
    values, pos = scores.gather(1, columns).topk(m, dim=1)
    return values, columns.gather(1, pos)
