"""Reliability: exact resume, run-dir protection, non-finite loss.

Every run is the tiny model on a slice of the toy data; in-process runs use the library
(`seq2seq.training.loop.train`); signals and kills are in test_signals.py.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

import seq2seq.loss
import seq2seq.training.loop
import seq2seq.training.start
from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.config import load_config
from seq2seq.errors import Seq2SeqError
from seq2seq.training.loop import train
from seq2seq.training.step import TrainStep
from tests.conftest import tiny_config_yaml, write_slice
from tests.integration.test_bad_input import assert_one_line_error, cli

DROPOUT = ["model.dropout=0.3", "model.attention_dropout=0.1"]  # so RNG state matters


def fit(config: Path, *overrides: str, resume: bool = False) -> Path:
    return train(load_config(config, list(overrides)), resume=resume, progress=False)


def config_in(folder: Path, data: Path, **train_keys) -> Path:
    """tiny_config_yaml in its own folder, so runs in one test do not share files."""
    folder.mkdir(parents=True, exist_ok=True)
    return tiny_config_yaml(folder, data, **train_keys)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def train_losses(run: Path) -> list[tuple[int, int, float]]:
    """(step, epoch, train_loss) of every training row of metrics.jsonl."""
    return [(r["step"], r["epoch"], r["train_loss"]) for r in metrics(run) if "train_loss" in r]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def nan_loss_on(monkeypatch, bad_calls) -> None:
    """Make the training loss NaN on the given training forward passes (1-based)."""
    real, calls = seq2seq.loss.TeacherForcedLoss.forward, []  # the fast twin's too

    def poisoned(self, *args):
        loss, nll = real(self, *args)
        if torch.is_grad_enabled():  # validation runs without grad and stays finite
            calls.append(None)
            if bad_calls(len(calls)):
                return loss * float("nan"), nll * float("nan")
        return loss, nll

    monkeypatch.setattr(seq2seq.loss.TeacherForcedLoss, "forward", poisoned)


# ---------------------------------------------------------------- exact resume


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, Path, int]:
    """8 steps in one go over a 20-pair corpus: (data, run dir, steps per epoch)."""
    tmp = tmp_path_factory.mktemp("straight")
    data = write_slice(tmp, n_train=20, n_dev=8)
    run = fit(config_in(tmp, data, max_steps=8, log_every=1, eval_every=100,
                        batch_tokens=150), *DROPOUT)
    epochs = [epoch for _, epoch, _ in train_losses(run)]
    assert len(epochs) == 8 and epochs[-1] >= 1, epochs  # the run crosses an epoch boundary
    assert 2 <= epochs.index(1) <= 6, epochs
    return data, run, epochs.index(1)


@pytest.mark.parametrize("where", ["mid-epoch", "epoch end", "after epoch end"])
def test_resume_is_bit_identical_to_training_straight(straight, where, tmp_path):
    data, straight_run, per_epoch = straight
    n = {"mid-epoch": per_epoch - 1, "epoch end": per_epoch, "after epoch end": per_epoch + 1}
    config = config_in(tmp_path, data, max_steps=n[where], log_every=1, eval_every=100,
                       batch_tokens=150)
    run = fit(config, *DROPOUT)
    assert load_checkpoint(run / "last.pt")["step"] == n[where]
    fit(config, *DROPOUT, "train.max_steps=8", resume=True)
    assert train_losses(run) == train_losses(straight_run)
    assert_same_weights(load_checkpoint(run / "last.pt")["model"],
                        load_checkpoint(straight_run / "last.pt")["model"])


@pytest.mark.parametrize("limit", ["train.max_steps=3", "train.max_epochs=1"])
def test_resuming_a_finished_run_trains_no_further(limit, tmp_path):
    data = write_slice(tmp_path, n_train=20, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, max_steps=0, log_every=1, eval_every=100,
                              batch_tokens=150)
    run = fit(config, limit)
    before, rows = load_checkpoint(run / "last.pt"), train_losses(run)
    fit(config, limit, resume=True)
    after = load_checkpoint(run / "last.pt")
    assert after["step"] == before["step"] and train_losses(run) == rows
    assert_same_weights(after["model"], before["model"])


def test_resume_survives_a_torn_metrics_row(tmp_path):
    """A crash (or power loss) mid-append leaves half a row; resume must not trip on it."""
    data = write_slice(tmp_path, n_train=60, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, max_steps=2, log_every=1)
    run = fit(config)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "elapsed": 0.1, "train_lo')
    fit(config, "train.max_steps=3", resume=True)
    assert [r["step"] for r in metrics(run) if "train_loss" in r] == [1, 2, 3]


# ---------------------------------------------------------------- the run directory


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A finished 4-step run with best-K checkpoints: (its config, its run dir)."""
    tmp = tmp_path_factory.mktemp("finished")
    data = write_slice(tmp, n_train=60, n_dev=8)
    config = tiny_config_yaml(tmp, data, max_steps=4, log_every=1, eval_every=2, keep_best=2)
    return config, fit(config)


@pytest.fixture
def copy_of(finished, tmp_path) -> tuple[Path, Path]:
    """The finished run copied, with a config pointing at the copy."""
    config, run = finished
    shutil.copytree(run, tmp_path / "run")
    text = config.read_text().replace(str(run), str(tmp_path / "run"))
    (tmp_path / "tiny.yaml").write_text(text)
    return tmp_path / "tiny.yaml", tmp_path / "run"


def snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def test_checkpoints_refuse_a_fresh_start_and_overwrite_starts_afresh(
        copy_of, capfd, monkeypatch):
    config, run = copy_of
    before, old_rows = snapshot(run), train_losses(run)
    assert {"best-step2.pt", "best-step4.pt"} <= before.keys()
    refused = cli(capfd, monkeypatch, "train", config, "--no-progress")
    assert_one_line_error(refused, "already holds checkpoints", "--resume", "--overwrite")
    both = cli(capfd, monkeypatch, "train", config, "--resume", "--overwrite")
    assert_one_line_error(both, "exclude each other")
    assert snapshot(run) == before
    again = cli(capfd, monkeypatch, "train", config, "--no-progress", "--overwrite",
                "--set", "train.max_steps=2")
    assert again.code == 0, again.err
    assert train_losses(run) == old_rows[:2]  # from step 1, as the first run did
    assert load_checkpoint(run / "last.pt")["step"] == 2
    assert "best-step4.pt" not in snapshot(run)


def test_resume_with_another_model_shape_names_the_key(copy_of, capfd, monkeypatch):
    config, run = copy_of
    before = snapshot(run)
    result = cli(capfd, monkeypatch, "train", config, "--resume", "--no-progress",
                 "--set", "model.d_model=64", "--set", "train.max_steps=6")
    assert_one_line_error(result, "model.d_model: 32 -> 64", "--resume")
    assert snapshot(run) == before


def test_resume_without_last_pt_is_a_clear_error(copy_of, tmp_path, capfd, monkeypatch):
    config, _ = copy_of
    empty = tmp_path / "elsewhere"
    result = cli(capfd, monkeypatch, "train", config, "--resume", "--no-progress",
                 "--set", f"train.run_dir={empty}")
    assert_one_line_error(result, f"no {empty / 'last.pt'} to resume from")
    assert not empty.exists()


def without_optimizer(state: dict) -> dict:
    del state["train_state"]["optimizer"]
    return state


@pytest.mark.parametrize("damage, message", [
    (lambda run: shutil.copy(run / "best.pt", run / "last.pt"), "holds no training state"),
    (lambda run: (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:5000]),
     "not a readable checkpoint"),
    (lambda run: save_checkpoint(without_optimizer(load_checkpoint(run / "last.pt")),
                                 run / "last.pt"), "damaged training state ('optimizer')"),
])
def test_resume_from_an_unusable_last_pt(damage, message, copy_of, capfd, monkeypatch):
    config, run = copy_of
    damage(run)
    before = snapshot(run)
    result = cli(capfd, monkeypatch, "train", config, "--resume", "--no-progress",
                 "--set", "train.max_steps=6")
    assert_one_line_error(result, "last.pt", message)
    assert snapshot(run) == before


# ---------------------------------------------------------------- non-finite loss


def test_non_finite_steps_are_skipped_and_counted(tmp_path, monkeypatch, capfd):
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, max_steps=5, log_every=1, eval_every=100,
                              max_nonfinite=3)
    nan_loss_on(monkeypatch, lambda call: call in (3, 4))
    run = fit(config)
    out = capfd.readouterr().out
    for step, in_row in ((3, 1), (4, 2)):
        assert (f"step {step}: 1 update(s) skipped for a non-finite loss since the last "
                f"report ({in_row} in a row now, {in_row} in all)") in out
    last = load_checkpoint(run / "last.pt")
    progress = last["train_state"]["progress"]
    assert last["step"] == 5 and progress["nonfinite_total"] == 2
    assert progress["nonfinite_in_row"] == 0 and progress["steps_in_epoch"] == 5
    assert all(torch.isfinite(w).all() for w in last["model"].values())
    losses = train_losses(run)  # windows whose every update was skipped log no loss
    assert [s for s, _, _ in losses] == [1, 2, 5]
    assert all(torch.isfinite(torch.tensor(loss)) for _, _, loss in losses)


def test_a_skipped_step_changes_no_weight_or_optimizer_state(tmp_path, monkeypatch):
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    one = fit(config_in(tmp_path / "one", data, max_steps=1, eval_every=1))
    nan_loss_on(monkeypatch, lambda call: call == 2)
    two = fit(config_in(tmp_path / "two", data, max_steps=2, eval_every=1))
    one, two = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    assert two["train_state"]["progress"]["nonfinite_total"] == 1
    assert_same_weights(one["model"], two["model"])
    adam_one, adam_two = (c["train_state"]["optimizer"]["state"] for c in (one, two))
    for key, state in adam_one.items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state[name], adam_two[key][name]), (key, name)


@pytest.mark.slow
def test_compiled_training_runs_with_dropout(tmp_path):
    """train.compile: true trains with dropout on (about 30 s on one thread)."""
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    run = fit(tiny_config_yaml(tmp_path, data, max_steps=4, eval_every=4, compile="true"),
              "model.dropout=0.3")
    last = load_checkpoint(run / "last.pt")
    assert last["step"] == 4 and all(torch.isfinite(w).all() for w in last["model"].values())


def test_too_many_non_finite_steps_in_a_row_stop_training(tmp_path, monkeypatch):
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, max_steps=50, eval_every=1, max_nonfinite=3)
    nan_loss_on(monkeypatch, lambda call: call >= 3)
    with pytest.raises(Seq2SeqError, match="not finite for 3 steps in a row by step 5; lower"):
        fit(config)
    # Skipped steps change no weight; the third in a row stops before its checkpoint.
    last = load_checkpoint(tmp_path / "run/last.pt")
    assert last["step"] == 4 and last["train_state"]["progress"]["nonfinite_in_row"] == 2
    assert all(torch.isfinite(w).all() for w in last["model"].values())


def test_weights_that_turn_non_finite_are_never_saved(tmp_path, monkeypatch, capfd):
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, max_steps=6, eval_every=2, log_every=1)
    real, calls = TrainStep.step, []

    def poisoning(self, micro, lr):
        out = real(self, micro, lr)
        calls.append(None)
        if len(calls) == 3:  # a finite loss, then weights no later step can repair
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("inf"))
        return out

    monkeypatch.setattr(TrainStep, "step", poisoning)
    result = cli(capfd, monkeypatch, "train", config, "--no-progress")
    assert_one_line_error(result, "step 4: weight", "not finite", "earlier ones are kept")
    for name in ("last.pt", "best.pt"):  # the files of step 2 stay
        last = load_checkpoint(tmp_path / "run" / name)
        assert last["step"] == 2 and all(torch.isfinite(w).all() for w in last["model"].values())


# ---------------------------------------------------------------- what cannot train


def test_a_dev_set_longer_than_the_positions_is_refused_before_training(tmp_path, capfd,
                                                                        monkeypatch):
    data = write_slice(tmp_path, n_train=60, n_dev=8)
    for side in ("src", "tgt"):  # every dev pair far over model.max_positions
        lines = (data / f"dev.{side}").read_text().splitlines()
        (data / f"dev.{side}").write_text("".join(" ".join([line] * 40) + "\n" for line in lines))
    config = tiny_config_yaml(tmp_path, data)
    result = cli(capfd, monkeypatch, "train", config, "--no-progress",
                 "--set", "data.max_len=60000")
    assert_one_line_error(result, "no validation pairs left", "model.max_positions - 1 = 127")
    assert not list((tmp_path / "run").glob("*.pt"))


def test_a_model_too_large_to_allocate_is_one_line(tmp_path, capfd, monkeypatch):
    data = write_slice(tmp_path, n_train=60, n_dev=8)
    # The config's bounds refuse absurd sizes first; a size inside them can still fail
    # to allocate on a small machine, which is what building the model reports.
    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 TB")

    monkeypatch.setattr(seq2seq.training.start, "build_model", no_memory)
    result = cli(capfd, monkeypatch, "train", tiny_config_yaml(tmp_path, data),
                 "--no-progress", "--set", "model.d_model=4096", "--set", "model.n_heads=4")
    assert_one_line_error(result, "could not build the model", "model.d_model=4096",
                          "not enough memory")


def test_a_model_larger_than_the_machine_is_refused_before_allocating(tmp_path, capfd,
                                                                      monkeypatch):
    # About 7.5e9 parameters: inside the config's bounds, far beyond 24 GiB of training state.
    data = write_slice(tmp_path, n_train=60, n_dev=8)
    result = cli(capfd, monkeypatch, "train", tiny_config_yaml(tmp_path, data), "--no-progress",
                 "--set", "model.d_model=8192", "--set", "model.d_ff=32768",
                 "--set", "model.n_heads=8", "--set", "model.encoder_layers=4",
                 "--set", "model.decoder_layers=4")
    assert_one_line_error(result, "parameters; training them needs at least", "GiB")
    assert not list((tmp_path / "run").glob("*.pt"))

