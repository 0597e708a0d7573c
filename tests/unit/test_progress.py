"""When a run stops and how far along it is: the bookkeeping the schedule and the log use."""

import pytest
import torch

from seq2seq.config import TrainConfig
from seq2seq.training.distributed import World
from seq2seq.training.progress import (
    LossWindow,
    SkippedSteps,
    TrainState,
    duration,
    fraction_done,
    limit_reached,
    seconds_left,
)
from seq2seq.training.report import Report

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


def test_seconds_left_is_the_soonest_limit_at_the_pace_so_far():
    state = TrainState(step=100, elapsed=50.0)  # 0.5 s a step
    assert seconds_left(state, cfg(max_steps=700), 0, 0) == pytest.approx(300.0)
    # a time budget counts training time only, and is the nearer limit here
    timed = TrainState(step=100, elapsed=50.0, eval_seconds=10.0)
    assert seconds_left(timed, cfg(max_steps=700, max_time="1m"), 0, 60) == pytest.approx(20.0)
    assert seconds_left(TrainState(step=100, epoch=1, steps_in_epoch=50, elapsed=50.0),
                        cfg(max_epochs=2), 100, 0) == pytest.approx(25.0)
    assert seconds_left(TrainState(), cfg(max_steps=10), 0, 0) is None
    assert seconds_left(TrainState(step=20, elapsed=5.0), cfg(max_steps=10), 0, 0) == 0.0


def test_duration_reads_like_max_time():
    assert [duration(s) for s in (0, 42.4, 307, 3723, None)] == ["0s", "42s", "5m07s",
                                                                 "1h02m03s", "?"]


def row(step: int) -> dict:
    return {"step": step, "train_loss": 2.5, "lr": 1e-3, "tokens_per_s": 1234.4}


def test_report_lines_without_a_terminal_count_down_a_time_budget():
    lines = []
    report = Report(cfg(max_time="1h"), 3600, bar=True, main=True, log=lines.append)
    assert report.bar.disable  # stderr is captured here, not a terminal
    state = TrainState(step=50, epoch=0, elapsed=600.0)
    report.advance(state, 600 / 3600, 0)
    report.training(row(50), state, 0)
    report.close()
    assert lines == ["step 50 | epoch 0 | loss 2.500 | lr 1.00e-03 | 1234 tok/s | "
                     "elapsed 10m00s | ETA 50m00s (max_time 1h)"]


def test_report_lines_with_max_steps_and_none_off_the_main_process():
    lines = []
    Report(cfg(max_steps=700), 0, bar=False, main=True, log=lines.append).training(
        row(100), TrainState(step=100, elapsed=50.0), 0)
    assert lines == ["step 100/700 | epoch 0 | loss 2.500 | lr 1.00e-03 | 1234 tok/s | "
                     "elapsed 50s | ETA 5m00s"]
    quiet = []
    Report(cfg(max_steps=700), 0, bar=False, main=False, log=quiet.append).training(
        row(100), TrainState(step=100, elapsed=50.0), 0)
    assert quiet == []
