"""The training objective: label-smoothed cross entropy of the teacher-forced decoder."""

import torch
from torch import Tensor, nn

ROWS = 512  # rows of logits per chunk of the forward pass: (512 x V) temporaries, not (N x V)


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
    """logits: (N, V), target: (N,) -> (smoothed loss sum, nll sum).

    The same values as F.cross_entropy(logits, target, label_smoothing=eps, reduction="sum")
    and its nll, without a log-probability tensor: see SmoothedCrossEntropy.
    """
    return SmoothedCrossEntropy.apply(logits, target, eps)


class SmoothedCrossEntropy(torch.autograd.Function):
    """Label-smoothed cross entropy whose only (N, V) tensor is the logits themselves.

    Per row, with p = softmax(x) and lse = logsumexp(x):
        nll    = lse - x[t]
        smooth = lse - mean(x)                 (mean over classes of -log p)
        loss   = (1 - eps) nll + eps smooth
        d loss / d x = p - eps / V - (1 - eps) onehot(t)
    Forward reads the logits in row chunks; backward turns the saved logits into their
    gradient in place (x - lse, exp, - eps/V, scale, target entries), so neither pass
    allocates another (N, V) tensor. The logits must not be used after backward.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        lse = torch.cat([chunk.logsumexp(dim=-1) for chunk in logits.split(ROWS)])  # (N,)
        nll = lse - logits.gather(1, target.unsqueeze(1)).squeeze(1)  # (N,)
        smooth = lse - logits.mean(dim=-1)  # (N,)
        ctx.save_for_backward(logits, lse, target)
        ctx.eps = eps
        nll_sum = nll.sum()
        ctx.mark_non_differentiable(nll_sum)
        return ((1.0 - eps) * nll + eps * smooth).sum(), nll_sum

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor) -> tuple[Tensor, None, None]:
        logits, lse, target = ctx.saved_tensors
        grad = logits  # reused: the (N, V) gradient overwrites the logits
        grad.sub_(lse.unsqueeze(1)).exp_()  # p
        grad.sub_(ctx.eps / grad.size(1)).mul_(grad_loss)
        rows = torch.arange(grad.size(0), device=grad.device)
        grad[rows, target] -= (1.0 - ctx.eps) * grad_loss
        return grad, None, None
