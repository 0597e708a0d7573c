"""Learning-rate schedules and the time budget: what the training loop feeds AdamW."""

import itertools
import json
import math
import time
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import seq2seq.loss
import seq2seq.training.loop
from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import TrainConfig, load_config
from seq2seq.data import make_batch
from seq2seq.training.distributed import World
from seq2seq.training.loop import train
from seq2seq.training.progress import LossWindow, SkippedSteps
from seq2seq.training.schedule import learning_rate
from seq2seq.training.step import build_step
from tests.conftest import BOS, EOS, PAD, tiny_config_yaml, tiny_model, write_slice

PEAK, WARMUP = 1e-3, 100


def logged_lrs(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["lr"] for r in rows if "lr" in r]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decay_schedules_end_at_zero_and_meet_the_ramp_without_a_jump(schedule):
    assert learning_rate(50, PEAK, WARMUP, schedule, 0.05) == pytest.approx(PEAK / 2)
    assert learning_rate(100, PEAK, WARMUP, schedule, 0.0) == pytest.approx(PEAK)
    assert learning_rate(900, PEAK, WARMUP, schedule, 1.0) == pytest.approx(0.0, abs=1e-12)
    # the rate is continuous in progress: no jump where the decay takes over from the ramp
    rates = [learning_rate(s, PEAK, WARMUP, schedule, s / 1000) for s in range(1, 1001)]
    assert max(abs(a - b) for a, b in itertools.pairwise(rates)) < 2 * PEAK / WARMUP


def test_linear_and_cosine_halfway_values():
    assert learning_rate(500, PEAK, WARMUP, "linear", 0.5) == pytest.approx(PEAK / 2)
    assert learning_rate(500, PEAK, WARMUP, "cosine", 0.5) == pytest.approx(PEAK / 2)
    assert learning_rate(500, PEAK, WARMUP, "cosine", 0.25) == pytest.approx(
        PEAK * (1 + math.cos(math.pi / 4)) / 2)


@pytest.mark.parametrize("limit", ["train.max_steps=6", "train.max_epochs=2"])
def test_a_linear_run_decays_to_zero_at_its_limit(limit, tmp_path):
    data = write_slice(tmp_path, n_train=20, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, max_steps=0, log_every=1, eval_every=100,
                              batch_tokens=150, warmup=2)
    run = train(load_config(config, [limit, "train.schedule=linear"]), progress=False)
    lrs = logged_lrs(run)  # the rate each step applied, set from the progress before it
    assert lrs[-1] == pytest.approx(0.003 / len(lrs))  # the last step's, one step from zero
    after_warmup = lrs[1:]
    assert all(a > b for a, b in itertools.pairwise(after_warmup)), lrs


def test_max_time_counts_training_not_validation(tmp_path, monkeypatch):
    """The first validation outlasts the whole budget; training must go on regardless."""
    real, calls = seq2seq.training.loop.validate, []

    def slow_first_validation(*args, **kwargs):
        calls.append(None)
        if len(calls) == 1:
            time.sleep(3.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(seq2seq.training.loop, "validate", slow_first_validation)
    data = write_slice(tmp_path, n_train=40, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, max_steps=0, max_time="2s", eval_every=5)
    run = train(load_config(config), progress=False)
    state = load_checkpoint(run / "last.pt")["train_state"]["progress"]
    assert state["step"] > 5, "stopped at the first validation: its time was counted"
    assert state["eval_seconds"] >= 3.0
    assert 2.0 <= state["elapsed"] - state["eval_seconds"] < 4.0


def test_the_progress_bar_is_shown_when_asked(tmp_path, capfd, monkeypatch):
    """The schedule's fraction-done must not take the place of the progress-bar flag.
    (The bar is drawn on a terminal only: pretend stderr is one.)"""
    import seq2seq.training.report as report

    monkeypatch.setattr(report, "is_terminal", lambda stream: True)
    data = write_slice(tmp_path, n_train=20, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, max_steps=4, eval_every=100)
    train(load_config(config), progress=True)
    assert "4/4" in capfd.readouterr().err


# ---------------------------------------------------------------- steps the host never waits on


class HostReads(TorchDispatchMode):
    """Records the ops that copy device data to the host: on CUDA each waits for every
    kernel queued before it. .item(), bool() and float() run _local_scalar_dense;
    boolean indexing and nonzero() must learn their output's size."""

    WAITS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default}

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.WAITS:
            self.seen.append(func)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("bad", [False, True])
def test_a_training_step_never_reads_the_device(bad, monkeypatch):
    model = tiny_model()
    step = build_step(model.train(), TrainConfig(device="cpu", warmup=2, clip_norm=1.0), World(),
                      torch.device("cpu"))
    b = make_batch([[5, 6, 7], [8, 9]], [[10, 11], [12, 13, 14, 15]], PAD, BOS, EOS)
    if bad:
        real = seq2seq.loss.TeacherForcedLoss.forward  # the fast twin's too
        monkeypatch.setattr(seq2seq.loss.TeacherForcedLoss, "forward",
                            lambda *a: tuple(x * float("nan") for x in real(*a)))
    window, skipped = LossWindow(0), SkippedSteps(0, torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    with HostReads() as reads:
        for _ in range(2):
            nll, flag, tokens = step.step([b], lr=1e-3)
            skipped.add(flag)
            window.add(nll, flag, tokens)
    assert reads.seen == []
    assert skipped.read() == ((2, 2, 2) if bad else (0, 0, 0))
    changed = [not torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True)]
    assert not any(changed) if bad else all(changed)
