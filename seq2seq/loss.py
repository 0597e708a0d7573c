"""The training objective: label-smoothed cross entropy of the teacher-forced decoder."""

import weakref

import torch
from torch import Tensor, nn

# Rows of logits per chunk: (rows x V) fp32 temporaries, never (N x V). On a CPU a
# 64 x 8000 chunk (2 MB) stays in cache through a chunk's passes. Against 512 rows, on
# the reference model: bf16 training's peak memory fell by about 180 MB and its steps
# ran 2% faster; fp32 steps ran the same. On a GPU, bigger chunks mean fewer launches.
CPU_ROWS, GPU_ROWS = 64, 512


def chunk_rows(logits: Tensor) -> int:
    """Rows of `logits` the loss handles at a time: all of them under torch.compile,
    whose graph would otherwise depend on the number of chunks and be compiled anew
    for almost every batch."""
    if torch.compiler.is_compiling():
        return max(logits.size(0), 1)
    return CPU_ROWS if logits.device.type == "cpu" else GPU_ROWS


class TeacherForcedLoss(nn.Module):
    """Label-smoothed cross entropy of the teacher-forced decoder (what DDP wraps).

    Only non-pad target positions reach the output layer, and the smoothed loss is
    computed from the logits and their logsumexp, so a single (tokens x V) tensor is
    materialised: loss = (1 - eps) * nll + eps * (lse - mean(logits)), the same value
    as F.cross_entropy(..., label_smoothing=eps). Under bf16 autocast the logits stay
    bf16; the loss works on them in fp32 a chunk of rows at a time (SmoothedCrossEntropy).

    With keep_logits, the logits are written into a buffer kept from one step to the
    next (see OutputLayer) instead of a fresh (tokens x V) tensor each step.
    """

    def __init__(self, model: nn.Module, label_smoothing: float, keep_logits: bool = False):
        super().__init__()
        self.model, self.eps = model, label_smoothing
        self.buffered_output = OutputLayer() if keep_logits else None

    def forward(self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor, src_mask: Tensor,
                tgt_mask: Tensor, n_tokens: int | None = None) -> tuple[Tensor, Tensor]:
        """Returns (smoothed loss, nll), each summed over target tokens.

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
        output = self.model.output
        if self.buffered_output is None or output.bias is not None:
            logits = self.model.logits(hidden)  # (N, V)
        else:
            logits = self.buffered_output(hidden, output.weight)
        return smoothed_loss(logits, tgt_out.flatten().index_select(0, at), self.eps)


class OutputLayer:
    """hidden @ weight^T, written into a buffer that is reused from one step to the next.

    The logits are the one (tokens x V) tensor of a step: 125 MB at the speed
    benchmark's reference setting. Allocated afresh, glibc maps new pages for them every
    step and the kernel zero-fills each on first touch, some 30,000 page faults a step
    on a CPU. Reusing one buffer, grown when a batch needs more rows, avoids that. The
    buffer is busy from the forward pass until the backward pass has used the logits'
    gradient (written over them by SmoothedCrossEntropy); a second forward pass in that
    time, or one whose graph was dropped, gets a fresh tensor. Under autocast the
    product runs in the autocast dtype, as nn.Linear's would.
    """

    def __init__(self):
        self.buffer: Tensor | None = None
        self.busy = lambda: None  # weak reference to the busy flag of the last use

    def __call__(self, hidden: Tensor, weight: Tensor) -> Tensor:
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
    Both passes walk the logits in chunks of chunk_rows() rows, in fp32 whatever the
    logits' dtype. Backward turns each chunk into its gradient and writes it over the
    saved logits, which become the returned gradient (in their own dtype, as autograd
    wants).
    So bf16 logits are never copied whole to fp32 and back, and fp32 logits are never
    copied at all. The logits must not be used after backward.
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
