"""When a run stops and how far along it is: the bookkeeping the schedule and the log use."""

import pytest
import torch

from seq2seq.config import TrainConfig
from seq2seq.training.distributed import World
from seq2seq.training.progress import (
    LossWindow,
    SkippedSteps,
    TrainState,
    fraction_done,
    limit_reached,
)

YES, NO = torch.tensor(1.0), torch.tensor(0.0)  # a step's update skipped, or not


def cfg(**kw) -> TrainConfig:
    return TrainConfig(device="cpu", **kw)


def test_each_limit_names_itself_and_none_while_under_every_limit():
    c = cfg(max_steps=10, max_epochs=3, max_time="1m", patience=2)
    assert limit_reached(TrainState(step=9, epoch=2, elapsed=59.0, bad_evals=1), c, 60) is None
    assert limit_reached(TrainState(step=10), c, 60) == "max_steps=10"
    assert limit_reached(TrainState(epoch=3), c, 60) == "max_epochs=3"
    assert limit_reached(TrainState(elapsed=61.0), c, 60) == "max_time=1m"
    assert "patience" in limit_reached(TrainState(bad_evals=2), c, 60)


def test_validation_time_does_not_count_against_max_time():
    state = TrainState(elapsed=90.0, eval_seconds=40.0)  # 50 s of training
    assert limit_reached(state, cfg(max_time="1m"), 60) is None
    assert fraction_done(state, cfg(max_time="1m"), 0, 60) == pytest.approx(50 / 60)


def test_fraction_done_is_the_furthest_limit_and_stops_at_one():
    c = cfg(max_steps=100, max_epochs=4)
    # 30 of 100 steps, but 2.5 of 4 epochs (10 steps per epoch): the epochs lead
    state = TrainState(step=30, epoch=2, steps_in_epoch=5)
    assert fraction_done(state, c, epoch_len=10, budget=0) == pytest.approx(2.5 / 4)
    assert fraction_done(TrainState(step=250), c, epoch_len=10, budget=0) == 1.0
    # an epoch of unknown length yet (0) leaves max_epochs out
    assert fraction_done(TrainState(step=30, epoch=2), c, epoch_len=0, budget=0) == 0.3


def test_loss_window_averages_over_tokens_and_starts_afresh():
    window = LossWindow(step=0)
    window.add(torch.tensor(6.0), NO, 3)
    window.add(torch.tensor(2.0), NO, 1)
    row = window.flush(step=2, elapsed=1.234, lr=1e-3, world=World())
    assert row["train_loss"] == pytest.approx(2.0) and row["step"] == 2 and row["tokens_per_s"] > 0
    assert window.sums is None and window.tokens == 0 and window.step0 == 2


def test_loss_window_leaves_skipped_steps_out_of_the_loss_but_not_the_throughput():
    window = LossWindow(step=0)
    window.add(torch.tensor(6.0), NO, 3)
    window.add(torch.tensor(float("nan")), YES, 5)
    assert window.tokens == 8
    row = window.flush(step=2, elapsed=1.0, lr=1e-3, world=World())
    assert row["train_loss"] == pytest.approx(2.0)
    window.add(torch.tensor(float("inf")), YES, 5)
    row = window.flush(step=3, elapsed=2.0, lr=1e-3, world=World())
    assert "train_loss" not in row and row["tokens_per_s"] > 0


def test_skipped_steps_count_in_a_row_across_reads():
    skipped = SkippedSteps(in_row=1, device=torch.device("cpu"))  # a resumed run's count
    for flag in (YES, YES, NO, YES):
        skipped.add(flag)
    assert skipped.read() == (3, 1, 3)  # 3 new; 1 in a row now; 1 + 2 at most
    assert skipped.read() == (0, 1, 1)
    skipped.add(YES)
    assert skipped.read() == (1, 2, 2)
    skipped.add(NO)
    assert skipped.read() == (0, 0, 2)  # the most since the last read includes where it began
    assert skipped.read() == (0, 0, 0)
