"""What a run shows while it trains: a progress bar on a terminal, plain lines anywhere else.

The bar is drawn only on a terminal's stderr; the lines (one every train.log_every steps)
are printed whenever there is no bar, or stdout is not the terminal the bar is drawn on
(`train ... > log.txt`), so a log file reads cleanly line by line, with no redraws.
"""

import sys
from collections.abc import Callable

from tqdm import tqdm

from seq2seq.config import TrainConfig
from seq2seq.training.progress import TrainState, duration, seconds_left

Log = Callable[[str], None]


def is_terminal(stream) -> bool:
    """Whether a stream is a terminal (a replaced or closed stream is not)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def write_line(message: str) -> None:
    """One line on stdout, above the progress bar when there is one, flushed at once so a
    log read under nohup or a scheduler is current."""
    tqdm.write(message)
    sys.stdout.flush()


class Report:
    """The progress bar and the training log lines of the main process.

    cfg: the run's train section; budget: train.max_time in seconds (0 = none); bar:
    whether a bar may be drawn (--no-progress says no); main: whether this process reports.
    """

    def __init__(self, cfg: TrainConfig, budget: float, bar: bool, main: bool, log: Log):
        self.cfg, self.budget, self.log = cfg, budget, log
        drawn = main and bar and is_terminal(sys.stderr)
        self.lines = main and not (drawn and is_terminal(sys.stdout))
        # The bar measures the fraction of the run done, so a time budget fills it too.
        self.bar = tqdm(total=1.0, disable=not drawn, dynamic_ncols=True,
                        bar_format="{percentage:3.0f}% |{bar:20}| {desc}")
        self.numbers = ["loss -"]  # of the latest training row

    def advance(self, state: TrainState, done: float, epoch_len: int) -> None:
        """After each step: the bar to `done` (the fraction of the run, in [0, 1])."""
        if self.bar.disable:
            return
        self.bar.set_description_str(self._status(state, epoch_len, self.numbers),
                                     refresh=False)
        self.bar.update(max(done - self.bar.n, 0.0))

    def training(self, row: dict, state: TrainState, epoch_len: int) -> None:
        """A training metrics row (loss, lr, throughput): on the bar, and as a line."""
        loss = f"{row['train_loss']:.3f}" if "train_loss" in row else "-"
        self.numbers = [f"loss {loss}", f"lr {row['lr']:.2e}", f"{row['tokens_per_s']:.0f} tok/s"]
        if self.lines:
            self.log(self._status(state, epoch_len, self.numbers))

    def _status(self, state: TrainState, epoch_len: int, numbers: list[str]) -> str:
        """'step 40/700 | epoch 0 | NUMBERS | elapsed 1m05s | ETA 6m30s'."""
        steps = f"step {state.step}" + (f"/{self.cfg.max_steps}" if self.cfg.max_steps else "")
        left = seconds_left(state, self.cfg, epoch_len, self.budget)
        eta = f"ETA {duration(left)}"
        if self.budget:  # the time budget is what the run counts down
            eta += f" (max_time {self.cfg.max_time})"
        return " | ".join([steps, f"epoch {state.epoch}", *numbers,
                           f"elapsed {duration(state.elapsed)}", eta])

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "Report":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
