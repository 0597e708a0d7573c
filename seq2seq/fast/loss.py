"""The fast twin of TeacherForcedLoss: logits in a kept buffer, a loss with no log-probs.

Same values and gradients as loss.py's F.cross_entropy; the speed comes from memory:
the (tokens x V) logits are the largest tensor of a step, and this path allocates and
walks them as few times as it can.
"""

import weakref

import torch
from torch import Tensor

from seq2seq.loss import TeacherForcedLoss

# Rows of logits per chunk: (rows x V) fp32 temporaries, never (N x V). On a CPU a
# 64 x 8000 chunk stays in cache through a chunk's passes; on a GPU, bigger chunks mean
# fewer launches.
CPU_ROWS, GPU_ROWS = 64, 512


class FastTeacherForcedLoss(TeacherForcedLoss):
    """TeacherForcedLoss with the same values; its criterion writes the logits into a
    buffer kept between steps (OutputLayer) and takes the loss without a log-probability
    tensor (SmoothedCrossEntropy). Under torch.compile the logits are the model's own:
    the graph cannot hold the buffer's storage tricks."""

    kept_logits: "OutputLayer | None" = None  # made on first use

    def criterion(self, hidden: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """hidden: (N, D), target: (N,) -> (smoothed loss sum, nll sum)."""
        output = self.model.output
        if torch.compiler.is_compiling() or output.bias is not None:
            logits = self.model.logits(hidden)  # (N, V)
        else:
            if self.kept_logits is None:
                self.kept_logits = OutputLayer()
            logits = self.kept_logits(hidden, output.weight)  # (N, V)
        return smoothed_loss(logits, target, self.eps)


def chunk_rows(logits: Tensor) -> int:
    """Rows of `logits` the loss handles at a time: all of them under torch.compile,
    whose graph would otherwise depend on the number of chunks and be compiled anew
    for almost every batch."""
    if torch.compiler.is_compiling():
        return max(logits.size(0), 1)
    return CPU_ROWS if logits.device.type == "cpu" else GPU_ROWS


class OutputLayer:
    """hidden @ weight^T as nn.Linear without bias computes it, written into a buffer
    reused from one step to the next. Faster on a CPU: a fresh (tokens x V) tensor each
    step makes the kernel map and zero-fill new pages on first touch, a reused one does not.

    The buffer is busy from the forward pass until the backward pass has used the logits'
    gradient (written over them by SmoothedCrossEntropy); a second forward pass in that
    time, or one whose graph was dropped, gets a fresh tensor. Under autocast the
    product runs in the autocast dtype, as nn.Linear's would.
    """

    def __init__(self):
        self.buffer: Tensor | None = None
        self.busy = lambda: None  # weak reference to the busy flag of the last use

    def __call__(self, hidden: Tensor, weight: Tensor) -> Tensor:
        """hidden: (N, D), weight: (V, D) -> logits (N, V)."""
        device = hidden.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            hidden, weight = hidden.to(dtype), weight.to(dtype)
        rows, vocab = hidden.size(0), weight.size(0)
        flag = self.busy()
        if flag is None or not flag.busy:
            out = self._take(rows, vocab, hidden)
        else:
            out = hidden.new_empty(rows, vocab)
        flag = _Busy()
        logits = _Logits.apply(hidden, weight, out, flag)
        if logits.requires_grad:
            self.busy = weakref.ref(flag)
        return logits

    def _take(self, rows: int, vocab: int, like: Tensor) -> Tensor:
        """A (rows, vocab) tensor on the buffer's memory; not a view of the buffer, so
        the autograd history the logits get stays off it."""
        buffer = self.buffer
        if (buffer is None or buffer.numel() < rows * vocab or buffer.dtype != like.dtype
                or buffer.device != like.device):
            self.buffer = None  # free the old one before allocating
            self.buffer = buffer = like.new_empty(rows * vocab)
        return like.new_empty(0).set_(buffer.untyped_storage(), 0, (rows, vocab))


class _Busy:
    busy = True


class _Logits(torch.autograd.Function):
    """hidden (N, D) @ weight (V, D)^T into `out` (N, V); gradients for hidden and weight."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, out: Tensor, flag: _Busy) -> Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            torch.mm(hidden, weight.t(), out=out)
        ctx.save_for_backward(hidden, weight)
        ctx.flag = flag
        ctx.mark_dirty(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        hidden, weight = ctx.saved_tensors
        grad_hidden = grad.mm(weight) if ctx.needs_input_grad[0] else None
        grad_weight = grad.t().mm(hidden) if ctx.needs_input_grad[1] else None
        ctx.flag.busy = False  # the logits and their gradient are used up
        return grad_hidden, grad_weight, None, None


def smoothed_loss(logits: Tensor, target: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """loss.py's smoothed_loss (F.cross_entropy with label_smoothing, and the nll), by
    SmoothedCrossEntropy: faster, since no (N, V) log-probability tensor is made.

    logits: (N, V), target: (N,) -> (smoothed loss sum, nll sum). The logits must not
    be used after backward: their memory holds the gradient then.
    """
    return SmoothedCrossEntropy.apply(logits, target, eps)


class SmoothedCrossEntropy(torch.autograd.Function):
    """Label-smoothed cross entropy whose only (N, V) tensor is the logits themselves.

    Per row, with p = softmax(x) and lse = logsumexp(x):
        nll    = lse - x[t]
        smooth = lse - mean(x)                 (mean over classes of -log p)
        loss   = (1 - eps) nll + eps smooth
        d loss / d x = p - eps / V - (1 - eps) onehot(t)
    Both passes walk the logits in chunks of chunk_rows() rows, in fp32 whatever the
    logits' dtype. Backward turns each chunk into its gradient and writes it over the
    saved logits, which become the returned gradient (in their own dtype, as autograd
    wants). So bf16 logits are never copied whole to fp32 and back, and fp32 logits are
    never copied at all.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        lse, mean = [], []
        for chunk in logits.split(chunk_rows(logits)):
            chunk = chunk.float()
            lse.append(chunk.logsumexp(dim=-1))
            mean.append(chunk.mean(dim=-1))
        lse = torch.cat(lse)  # (N,)
        nll = lse - logits.gather(1, target.unsqueeze(1)).squeeze(1).float()  # (N,)
        smooth = lse - torch.cat(mean)  # (N,)
        ctx.save_for_backward(logits, lse, target)
        ctx.eps = eps
        nll_sum = nll.sum()
        ctx.mark_non_differentiable(nll_sum)
        return ((1.0 - eps) * nll + eps * smooth).sum(), nll_sum

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor) -> tuple[Tensor, None, None]:
        logits, lse, target = ctx.saved_tensors
        eps, vocab, n = ctx.eps, logits.size(1), chunk_rows(logits)
        rows = torch.arange(min(n, logits.size(0)), device=logits.device)
        for chunk, chunk_lse, chunk_target in zip(logits.split(n), lse.split(n),
                                                  target.split(n), strict=True):
            grad = chunk.float()  # chunk itself when the logits are fp32
            grad.sub_(chunk_lse.unsqueeze(1)).exp_()  # p
            grad.sub_(eps / vocab).mul_(grad_loss)
            grad[rows[: grad.size(0)], chunk_target] -= (1.0 - eps) * grad_loss
            if grad.dtype != chunk.dtype:
                chunk.copy_(grad)
        return logits, None, None
