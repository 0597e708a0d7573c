"""The training objective: label-smoothed cross entropy of the teacher-forced decoder.

This is the plain form; seq2seq/fast/loss.py holds a twin that computes the same values
with less memory traffic on a CPU (seq2seq.fast.accelerate swaps it in).
"""

import torch.nn.functional as F
from torch import Tensor, nn


class TeacherForcedLoss(nn.Module):
    """Label-smoothed cross entropy of the teacher-forced decoder (what DDP wraps).

    Only non-pad target positions reach the output layer, so the one (tokens x V)
    tensor holds real targets only.
    """

    def __init__(self, model: nn.Module, label_smoothing: float):
        super().__init__()
        self.model, self.eps = model, label_smoothing

    def forward(self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor, src_mask: Tensor,
                tgt_mask: Tensor, n_tokens: int | None = None) -> tuple[Tensor, Tensor]:
        """Returns (smoothed loss, nll), each summed over target tokens.

        src: (B, S); tgt_in, tgt_out: (B, T); masks as model/masks.py builds them.
        n_tokens, the batch's count of non-pad targets, lets the positions be found
        without the host asking the device how many there are (boolean indexing waits
        for a CUDA device to finish everything queued before it).
        """
        memory, _ = self.model.encode(src, src_mask)  # (B, S, D)
        hidden, _ = self.model.decode(tgt_in, memory, src_mask, tgt_mask)  # (B, T, D)
        keep = (tgt_out != self.model.pad_id).flatten()  # (B * T,)
        at = keep.nonzero() if n_tokens is None else keep.nonzero_static(size=n_tokens)
        at = at.squeeze(1)  # (N,) flat positions of the target tokens, in order
        hidden = hidden.flatten(0, 1).index_select(0, at)  # (N, D)
        return self.criterion(hidden, tgt_out.flatten().index_select(0, at))

    def criterion(self, hidden: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """hidden: (N, D), target: (N,) -> (smoothed loss sum, nll sum)."""
        return smoothed_loss(self.model.logits(hidden), target, self.eps)  # logits (N, V)


def smoothed_loss(logits: Tensor, target: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """logits: (N, V), target: (N,) -> (label-smoothed cross entropy sum, nll sum).

    Both in fp32 whatever the autocast dtype of the logits; the nll carries no gradient.
    """
    logits = logits.float()  # (N, V)
    loss = F.cross_entropy(logits, target, label_smoothing=eps, reduction="sum")
    nll = F.cross_entropy(logits.detach(), target, reduction="sum")
    return loss, nll
