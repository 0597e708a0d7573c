"""Reliability under signals: SIGINT/SIGTERM mid-step and during the final save, and
SIGKILL at random moments, in real `python -m seq2seq` processes where it matters."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import seq2seq.loss
import seq2seq.training.loop
import seq2seq.training.start
from seq2seq.checkpoint import load_checkpoint
from seq2seq.errors import Seq2SeqError
from seq2seq.training.loop import Interrupted
from tests.conftest import ROOT, tiny_config_yaml, write_slice
from tests.integration.test_reliability import assert_same_weights, config_in, fit, metrics

# ---------------------------------------------------------------- signals


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_step_finishes_that_step_then_saves_last(signum, tmp_path, monkeypatch):
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    three = fit(config_in(tmp_path / "three", data, max_steps=3, log_every=1, eval_every=100))
    run = tmp_path / "stopped/run"
    config = config_in(tmp_path / "stopped", data, max_steps=1000, log_every=1, eval_every=100)
    real, calls = seq2seq.loss.TeacherForcedLoss.forward, []

    def signalling(self, *args):
        if torch.is_grad_enabled():
            calls.append(None)
            if len(calls) == 3:
                signal.raise_signal(signum)  # arrives during the forward pass of step 3
        return real(self, *args)

    monkeypatch.setattr(seq2seq.loss.TeacherForcedLoss, "forward", signalling)
    handler = signal.getsignal(signum)
    with pytest.raises(Interrupted) as stop:
        fit(config)
    assert signal.getsignal(signum) is handler  # restored
    message = str(stop.value)
    assert "--resume" in message and "\n" not in message and "step 3" in message
    last = load_checkpoint(run / "last.pt")
    assert last["step"] == 3 and last["train_state"]["progress"]["step"] == 3
    assert [r["step"] for r in metrics(run)] == [1, 2, 3]
    # Step 3 ran to its end: the weights are those of a run told to stop after 3 steps.
    assert_same_weights(last["model"], load_checkpoint(three / "last.pt")["model"])


def command_env() -> dict[str, str]:
    """The environment for `python -m seq2seq`: this checkout first, one thread, no buffering."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def spawn(*args: str, log: Path) -> subprocess.Popen:
    """`python -m seq2seq ARGS` in the background; stdout and stderr go to log.out, log.err."""
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "seq2seq", *args], cwd=ROOT,
                                env=command_env(), stdout=out, stderr=err)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended early (exit {proc.returncode})"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def rows_written(run: Path) -> int:
    path = run / "metrics.jsonl"
    return path.read_text().count("\n") if path.is_file() else 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_the_train_command_saves_and_exits_130(signum, tmp_path):
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, max_steps=100_000, log_every=1,
                              eval_every=100_000)
    run, log = tmp_path / "run", tmp_path / "train"
    proc = spawn("train", str(config), "--no-progress", log=log)
    try:
        wait_for(lambda: rows_written(run) >= 2, proc)  # inside the training loop
        proc.send_signal(signum)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    err = Path(f"{log}.err").read_text()
    assert code == 130, err
    assert len(err.strip().splitlines()) == 1 and "--resume" in err, err
    assert "Traceback" not in err
    last = load_checkpoint(run / "last.pt")
    assert "train_state" in last
    assert last["step"] == metrics(run)[-1]["step"] >= 2  # the step in flight was finished
    assert f"interrupted at step {last['step']};" in err


# Runs `python -m seq2seq ARGS` with each save of a resumable checkpoint slowed down, after
# it has written a marker file: a signal sent once the marker appears lands inside the save.
SLOW_SAVES = """
import pathlib, runpy, sys, time, torch
real_save, marker = torch.save, pathlib.Path(sys.argv[1])
def slow_save(obj, *args, **kwargs):
    if isinstance(obj, dict) and "train_state" in obj:
        marker.write_text("saving")
        time.sleep(1.0)
    real_save(obj, *args, **kwargs)
torch.save = slow_save
sys.argv = ["seq2seq", *sys.argv[2:]]
runpy.run_module("seq2seq", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_during_the_final_save_loses_nothing(second, tmp_path):
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, max_steps=100_000, log_every=1,
                              eval_every=100_000)
    run, log, marker = tmp_path / "run", tmp_path / "train", tmp_path / "saving"
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", SLOW_SAVES, str(marker), "train", str(config),
             "--no-progress"], cwd=ROOT, env=command_env(), stdout=out, stderr=err)
    try:
        wait_for(lambda: rows_written(run) >= 2, proc)
        proc.send_signal(signal.SIGINT)
        wait_for(marker.is_file, proc)  # the final save of last.pt has begun
        proc.send_signal(second)
        time.sleep(0.2)
        proc.send_signal(second)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    err = Path(f"{log}.err").read_text()
    assert code == 130 and "Traceback" not in err, err
    # Signals that arrive while the main thread waits in C may be handled as one.
    assert f"{signal.Signals(second).name} again: finishing the step and saving" in err, err
    last = load_checkpoint(run / "last.pt")
    assert last["step"] == metrics(run)[-1]["step"] >= 2  # no step lost
    assert err.strip().splitlines()[-1] == (
        f"interrupted at step {last['step']}; {run}/last.pt saved; continue with: "
        f"seq2seq train {config} --no-progress --resume"), err  # not an error: no prefix


# ---------------------------------------------------------------- SIGKILL


def test_sigkill_at_random_moments_leaves_loadable_checkpoints(tmp_path):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, max_steps=100_000, log_every=1, eval_every=1,
                              eval_max_sentences=2, keep_best=2)
    run, steps = tmp_path / "run", [0]
    for kill in range(3):
        resume = ["--resume"] if kill else []
        log = tmp_path / f"k{kill}"
        proc = spawn("train", str(config), "--no-progress", *resume, log=log)
        try:
            if kill:  # kill it while it trains, not while Python starts
                wait_for(lambda log=log: "resumed from" in Path(f"{log}.out").read_text(), proc)
            else:  # the first run must have written a checkpoint to be resumable
                wait_for(lambda: (run / "last.pt").is_file(), proc)
            time.sleep(rng.uniform(0.0, 1.0))
        finally:
            proc.kill()
            proc.wait()
        where = f"(kill {kill}, random seed {seed})"
        try:
            last = load_checkpoint(run / "last.pt")
            load_checkpoint(run / "best.pt")
        except Seq2SeqError as error:
            pytest.fail(f"{error} {where}")
        assert "train_state" in last, where
        assert last["step"] >= steps[-1], where
        steps.append(last["step"])
    # After the last kill the run still resumes and finishes cleanly.
    final = subprocess.run(
        [sys.executable, "-m", "seq2seq", "train", str(config), "--no-progress", "--resume",
         "--set", f"train.max_steps={steps[-1] + 2}"], cwd=ROOT, capture_output=True, text=True,
        env=command_env(), timeout=120)
    assert final.returncode == 0, final.stderr
    assert load_checkpoint(run / "last.pt")["step"] == steps[-1] + 2
    train_steps = [r["step"] for r in metrics(run) if "train_loss" in r]
    assert train_steps == list(range(1, steps[-1] + 3)), f"steps {steps}, seed {seed}"
