"""Where a training run stands: its resumable state, when it must stop, how far it has come,
and the loss and throughput of the last log window.

Pure bookkeeping over a TrainState and a TrainConfig; the loop (loop.py) does the
cross-process agreement (one clock decides for every rank).
"""

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from seq2seq.config import TrainConfig
from seq2seq.training import distributed as dist
from seq2seq.training.best import out_of_patience


@dataclass
class TrainState:
    """Everything besides weights and optimizer that resume must restore."""

    step: int = 0
    epoch: int = 0
    steps_in_epoch: int = 0  # optimizer steps already taken in this epoch
    elapsed: float = 0.0  # wall seconds so far (training and validation), across resumes
    best: list = field(default_factory=list)  # [[bleu, step], ...], best first
    bad_evals: int = 0  # validations since BLEU last improved
    nonfinite_in_row: int = 0
    nonfinite_total: int = 0
    eval_seconds: float = 0.0  # of `elapsed`, the seconds spent validating
    last_eval_step: int = 0  # the step of the latest validation; 0 = none yet

    @property
    def train_seconds(self) -> float:
        """The seconds train.max_time counts: validation is not training."""
        return self.elapsed - self.eval_seconds


def limit_reached(state: TrainState, cfg: TrainConfig, budget: float) -> str | None:
    """Which of max_steps, max_epochs, max_time (`budget` seconds; 0 = none) or patience
    ends the run now, as the log line names it; None while training goes on."""
    if cfg.max_steps and state.step >= cfg.max_steps:
        return f"max_steps={cfg.max_steps}"
    if cfg.max_epochs and state.epoch >= cfg.max_epochs:
        return f"max_epochs={cfg.max_epochs}"
    if budget and state.train_seconds >= budget:
        return f"max_time={cfg.max_time}"
    if out_of_patience(state.bad_evals, cfg.patience):
        return f"no better BLEU in {cfg.patience} validations (patience)"
    return None


def fraction_done(state: TrainState, cfg: TrainConfig, epoch_len: int, budget: float) -> float:
    """The fraction of the run done, in [0, 1]: the furthest of max_steps, max_epochs and
    max_time. Linear and cosine schedules decay along it; 0 when the run has no limit."""
    done = [0.0]
    if cfg.max_steps:
        done.append(state.step / cfg.max_steps)
    if cfg.max_epochs and epoch_len:
        done.append((state.epoch + state.steps_in_epoch / epoch_len) / cfg.max_epochs)
    if budget:
        done.append(state.train_seconds / budget)
    return min(max(done), 1.0)


def seconds_left(state: TrainState, cfg: TrainConfig, epoch_len: int, budget: float
                 ) -> float | None:
    """Wall seconds until the first of max_steps, max_epochs and max_time (`budget`) ends the
    run, at the pace so far; None before the first step or for a run with no such limit."""
    if not state.step or state.elapsed <= 0:
        return None
    per_step = state.elapsed / state.step  # validation included: it takes wall time too
    left = []
    if cfg.max_steps:
        left.append((cfg.max_steps - state.step) * per_step)
    if cfg.max_epochs and epoch_len:
        epochs_done = state.epoch + state.steps_in_epoch / epoch_len
        left.append((cfg.max_epochs - epochs_done) * epoch_len * per_step)
    if budget:
        left.append(budget - state.train_seconds)
    return max(min(left), 0.0) if left else None


def duration(seconds: float | None) -> str:
    """Seconds as train.max_time writes them: 42s, 5m07s, 1h02m03s; '?' when unknown."""
    if seconds is None:
        return "?"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class LossWindow:
    """Training loss and throughput since the last log line (one host sync per log line).

    What a step adds stays on the device. The loss averages over the steps whose update
    was not skipped; throughput counts every step's target tokens.
    """

    def __init__(self, step: int):
        self.sums: Tensor | None = None  # (nll, target tokens) of the updated steps
        self.tokens, self.t0, self.step0 = 0, time.perf_counter(), step

    def add(self, nll: Tensor, skipped: Tensor, tokens: int) -> None:
        """A step's summed nll, its skip flag (1.0 = update skipped) and target tokens."""
        kept = 1.0 - skipped
        sums = torch.stack([torch.where(kept > 0, nll, 0.0), kept * tokens])
        self.sums = sums if self.sums is None else self.sums + sums
        self.tokens += tokens

    def flush(self, step: int, elapsed: float, lr: float, world) -> dict:
        """The metrics row for the window, summed over processes; then start a new window.
        A window whose every update was skipped has no train_loss."""
        nll, kept = (0.0, 0.0) if self.sums is None else self.sums.tolist()
        nll, kept, tokens = dist.all_sum(world, [nll, kept, self.tokens])
        seconds = time.perf_counter() - self.t0
        row = {"step": step, "elapsed": round(elapsed, 2)}
        if kept:
            row["train_loss"] = nll / kept
        row.update(lr=lr, tokens_per_s=tokens / max(seconds, 1e-9))
        self.__init__(step)
        return row


class SkippedSteps:
    """Steps whose update was skipped for a non-finite loss, counted on the device.

    The optimizer skips such an update on the device (schedule.step_unless), so no step
    waits for its loss to be read; the counts are read where the host waits anyway: at
    log lines, validations and the end of the run.
    """

    def __init__(self, in_row: int, device: torch.device):
        self.in_row = torch.full((), float(in_row), device=device)  # skipped in a row, now
        self.new = torch.zeros((), device=device)  # skipped since the last read
        self.most = self.in_row.clone()  # most skipped in a row since the last read

    def add(self, skipped: Tensor) -> None:
        """One step's flag: 1.0 when its update was skipped, else 0.0."""
        self.in_row = (self.in_row + 1.0) * skipped
        self.new += skipped
        self.most = torch.maximum(self.most, self.in_row)

    def read(self) -> tuple[int, int, int]:
        """(skipped since the last read, skipped in a row now, most in a row since the
        last read); then start counting anew."""
        new, in_row, most = (int(n) for n in torch.stack([self.new, self.in_row,
                                                          self.most]).tolist())
        self.new.zero_()
        self.most = self.in_row.clone()
        return new, in_row, most
