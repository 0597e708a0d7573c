"""The optimizer and its learning-rate schedule: warm-up, then a decay."""

import math

import torch
from torch import nn

from seq2seq.config import TrainConfig


def adamw(model: nn.Module, cfg: TrainConfig, device: torch.device, lr: float
          ) -> torch.optim.AdamW:
    """The optimizer training uses; fused (one kernel over all parameters) on CPU and CUDA."""
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=cfg.betas, eps=cfg.adam_eps,
                             weight_decay=cfg.weight_decay,
                             fused=device.type in ("cpu", "cuda"))


def step_unless(optimizer: torch.optim.Optimizer, skip: torch.Tensor) -> None:
    """optimizer.step(), unless `skip` (a 0-d float tensor on the device, 1.0 = skip) is set.

    The fused AdamW reads the flag on the device, as it reads a GradScaler's found_inf:
    a skipped step changes no weight, moment or step count, and the host queues the
    next step without waiting to learn whether this one was skipped. An optimizer that
    is not fused cannot, and the host asks (one synchronisation).
    """
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = skip
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not skip.item():
        optimizer.step()


def learning_rate(step: int, peak: float, warmup: int, schedule: str = "inverse_sqrt",
                  done: float = 0.0) -> float:
    """Linear warm-up to `peak` over `warmup` steps, then one of three decays:

    inverse_sqrt: peak * sqrt(warmup / step), the Transformer paper's, with no end point;
    linear, cosine: down to 0 at the end of the run, `done` being the fraction of the
    run done (of max_steps, max_epochs or max_time, whichever is furthest along).
    The rate is the smaller of the ramp and the decay, so the two meet without a jump.
    """
    step = max(step, 1)
    ramp = step / warmup if warmup > 0 else 1.0
    if schedule == "linear":
        decay = 1.0 - done
    elif schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * done))
    else:
        decay = math.sqrt(warmup / step) if warmup > 0 else 1.0
    return peak * max(min(ramp, decay), 0.0)
