"""Where a training run stands: its resumable state, when it must stop, how far it has come,
and the loss and throughput of the last log window.

Pure bookkeeping over a TrainState and a TrainConfig; the loop in train.py does the
cross-process agreement (one clock decides for every rank).
"""

import time
from dataclasses import dataclass, field

from torch import Tensor

from seq2seq import distributed as dist
from seq2seq.config import TrainConfig


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
    if cfg.patience and state.bad_evals >= cfg.patience:
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


class LossWindow:
    """Training loss and throughput since the last log line (one host sync per log line)."""

    def __init__(self, step: int):
        self.nll, self.tokens, self.t0, self.step0 = None, 0, time.perf_counter(), step

    def add(self, nll: Tensor, tokens: int) -> None:
        self.nll = nll if self.nll is None else self.nll + nll
        self.tokens += tokens

    def flush(self, step: int, elapsed: float, lr: float, world, device) -> dict:
        """The metrics row for the window, summed over processes; then start a new window."""
        nll = dist.all_sum(world, 0.0 if self.nll is None else self.nll.item(), device)
        tokens = dist.all_sum(world, self.tokens, device)
        seconds = time.perf_counter() - self.t0
        row = {"step": step, "elapsed": round(elapsed, 2), "train_loss": nll / max(tokens, 1),
               "lr": lr, "tokens_per_s": tokens / max(seconds, 1e-9)}
        self.__init__(step)
        return row
