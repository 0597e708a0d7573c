"""One optimizer step: forward and backward over the micro-batches, clip, AdamW.

Nothing in a step waits for the device: a non-finite loss or gradient norm skips the
update on the device (schedule.step_unless), and the caller reads the counts later.
"""

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from seq2seq.config import TrainConfig
from seq2seq.data import Batch
from seq2seq.fast import accelerate
from seq2seq.loss import TeacherForcedLoss
from seq2seq.runtime import autocast, resolve_precision
from seq2seq.training import distributed as dist
from seq2seq.training.distributed import World
from seq2seq.training.schedule import adamw, learning_rate, step_unless


@dataclass
class TrainStep:
    """The parts one step touches; `loss` is the (possibly DDP-wrapped, compiled) loss module."""

    model: nn.Module
    loss: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    world: World
    device: torch.device
    precision: str
    clip_norm: float

    def step(self, micro: list[Batch], lr: float) -> tuple[Tensor, Tensor, int]:
        """Forward/backward over the micro-batches of one step, then clip and update at `lr`.

        The loss is normalised by the step's target tokens summed over all processes,
        so N processes with batch B train like one process with batch N x B.
        Returns (summed nll on this rank, 1.0 if the update was skipped else 0.0, both
        0-d tensors on the device; target tokens on this rank).
        """
        tokens = sum(b.n_tokens for b in micro)
        scale = self.world.size / dist.sum_tensor(self.world, tokens, self.device)
        nll_sum = torch.zeros((), device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        for i, b in enumerate(micro):
            sync = not self.world.active or i == len(micro) - 1
            no_sync = contextlib.nullcontext() if sync else self.loss.no_sync()
            with no_sync:
                with autocast(self.device, self.precision):
                    loss, nll = self.loss(b.src, b.tgt_in, b.tgt_out, b.src_mask, b.tgt_mask,
                                          b.n_tokens)
                self.scaler.scale(loss * scale).backward()
            loss_sum += loss.detach()
            nll_sum += nll
        skipped = self._update(loss_sum, lr)
        return nll_sum, skipped, tokens

    def _update(self, loss_sum: Tensor, lr: float) -> Tensor:
        """Clip, then step the optimizer unless the loss or the norm is not finite."""
        self.scaler.unscale_(self.optimizer)
        norm = (nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
                if self.clip_norm > 0 else torch.zeros((), device=self.device))
        # Under fp16 the scaler skips steps with non-finite gradients itself (and lowers
        # its scale): there only a non-finite loss counts as a skipped step.
        finite = torch.isfinite(loss_sum) & (torch.isfinite(norm) | self.scaler.is_enabled())
        # Ranks skip together: with clip_norm 0 a rank's own loss is all it would look at.
        skipped = dist.max_tensor_(self.world, (~finite).float())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
        else:
            step_unless(self.optimizer, skipped)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return skipped


# The two losses are built here and nowhere else in training.
def training_loss_module(model: nn.Module, train: TrainConfig) -> nn.Module:
    """The teacher-forced loss training differentiates, with label smoothing; with
    train.fast, it and the model run seq2seq.fast's CPU kernels (the one switch)."""
    loss = TeacherForcedLoss(model, train.label_smoothing)
    return accelerate(loss) if train.fast else loss


def validation_loss_module(model: nn.Module) -> nn.Module:
    """The same loss without label smoothing, for the validation loss and perplexity."""
    return TeacherForcedLoss(model, label_smoothing=0.0)


def build_step(model: nn.Module, train: TrainConfig, world: World, device: torch.device
               ) -> TrainStep:
    """The step a training run takes, for a model already on `device`."""
    autocast(device, train.precision)  # refuses fp16 off CUDA now, not at the first step
    loss = training_loss_module(model, train)
    if world.active:
        ids = [device.index] if device.type == "cuda" else None
        loss = DistributedDataParallel(loss, device_ids=ids)
    if train.compile:
        loss = torch.compile(loss, dynamic=True)
    # Every step sets its own rate; the first one's is the optimizer's starting value.
    optimizer = adamw(model, train, device, learning_rate(1, train.lr, train.warmup,
                                                          train.schedule))
    scaler = torch.amp.GradScaler("cuda", enabled=train.precision == "fp16")
    return TrainStep(model, loss, optimizer, scaler, world, device,
                     resolve_precision(train.precision, device),
                     train.clip_norm)
