"""The training objective: label-smoothed cross entropy of the teacher-forced decoder."""

from torch import Tensor, nn


class TeacherForcedLoss(nn.Module):
    """Label-smoothed cross entropy of the teacher-forced decoder (what DDP wraps).

    Only non-pad target positions reach the output layer, and the smoothed loss is
    computed from the logits and their logsumexp, so a single (tokens x V) tensor is
    materialised: loss = (1 - eps) * nll + eps * (lse - mean(logits)), the same value
    as F.cross_entropy(..., label_smoothing=eps).
    """

    def __init__(self, model: nn.Module, label_smoothing: float):
        super().__init__()
        self.model, self.eps = model, label_smoothing

    def forward(self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor, src_mask: Tensor,
                tgt_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (smoothed loss, nll), each summed over target tokens."""
        memory, _ = self.model.encode(src, src_mask)  # (B, S, D)
        hidden, _ = self.model.decode(tgt_in, memory, src_mask, tgt_mask)  # (B, T, D)
        keep = tgt_out != self.model.pad_id  # (B, T)
        logits = self.model.logits(hidden[keep]).float()  # (N, V), N = target tokens
        return smoothed_loss(logits, tgt_out[keep], self.eps)


def smoothed_loss(logits: Tensor, target: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """logits: (N, V), target: (N,) -> (smoothed loss sum, nll sum)."""
    lse = logits.logsumexp(dim=-1)  # (N,)
    nll = lse - logits.gather(1, target.unsqueeze(1)).squeeze(1)  # (N,)
    smooth = lse - logits.mean(dim=-1)  # (N,): mean over classes of -log p
    return ((1.0 - eps) * nll + eps * smooth).sum(), nll.sum().detach()
