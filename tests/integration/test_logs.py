"""Training and translating as people do it: logs that read well in a file, translate driven
line by line through a pipe, fine-tuning from a checkpoint, finished runs left alone,
TensorBoard events, and the interrupt message."""

import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seq2seq.checkpoint import load_checkpoint
from seq2seq.commands.training import resume_command
from seq2seq.config import load_config
from seq2seq.prepare import manifest_path
from seq2seq.training.loop import train
from tests.conftest import ROOT, tiny_config_yaml, write_slice
from tests.integration.test_bad_input import cli

# step 4/6 | epoch 0 | loss 5.123 | lr 3.00e-03 | 812 tok/s | elapsed 2s | ETA 1s
LINE = re.compile(r"step (\d+)/6 \| epoch \d+ \| loss \d+\.\d{3} \| lr \d\.\d\de-\d\d \| "
                  r"\d+ tok/s \| elapsed \d+s \| ETA \d+s$")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 6-step tiny run, once for the module: (tmp folder, config, data folder)."""
    tmp = tmp_path_factory.mktemp("logs")
    data = write_slice(tmp, n_train=200, n_dev=8)
    config = tiny_config_yaml(tmp, data)
    train(load_config(config), progress=False)
    return tmp, config, data


def command_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


# ---------------------------------------------------------------- logs


@pytest.mark.parametrize("flags", [[], ["--no-progress"]])
def test_training_output_in_a_file_is_one_plain_line_per_log_step(flags, tmp_path, capfd,
                                                                  monkeypatch):
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    config = tiny_config_yaml(tmp_path, data)  # 6 steps, a line every 2
    result = cli(capfd, monkeypatch, "train", config, *flags)  # stdout, stderr: not a terminal
    assert result.code == 0, result.err
    assert "\r" not in result.out + result.err  # no progress-bar redraws
    lines = [line for line in result.out.splitlines() if LINE.match(line)]
    assert [int(LINE.match(line)[1]) for line in lines] == [2, 4, 6], result.out
    assert lines[-1].endswith("ETA 0s")


# ---------------------------------------------------------------- continuing and finishing


def test_resume_on_a_finished_run_changes_nothing(trained, capfd, monkeypatch):
    tmp, config, _ = trained
    run = tmp / "run"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()
              if p.is_file()}
    result = cli(capfd, monkeypatch, "train", config, "--resume", "--no-progress")
    assert result.code == 0, result.err
    assert "is finished: max_steps=6 reached at step 6; nothing changed" in result.out
    assert "val loss" not in result.out
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()
             if p.is_file()}
    assert after == before


def test_init_from_starts_a_new_run_from_the_weights_and_tokenizer(trained, tmp_path, capfd,
                                                                   monkeypatch):
    tmp, config, _ = trained
    best = tmp / "run/best.pt"
    new = tmp_path / "tuned"
    result = cli(capfd, monkeypatch, "train", config, "--no-progress", "--set",
                 f"train.init_from={best}", "--set", f"train.run_dir={new}", "--set",
                 "train.max_steps=2", "--set", "train.lr=0.0005", "--set", "model.dropout=0.3")
    assert result.code == 0, result.err
    parent, tuned = load_checkpoint(best), load_checkpoint(new / "last.pt")
    assert f"init_from: weights of {best} (step {parent['step']}, BLEU" in result.out
    assert "taken from" in result.out and "SentencePiece model" not in result.out  # no retraining
    assert tuned["tokenizers"] == parent["tokenizers"]
    assert (new / "spm.model").read_bytes() == parent["tokenizers"]["src"]
    assert "adopted_from" in json.loads(manifest_path(new / "spm.model").read_text())
    progress = tuned["train_state"]["progress"]
    assert tuned["step"] == 2 and progress["best"][0][1] == 2  # a fresh run, not step 8
    # and it resumes like any run, keeping the adopted tokenizer
    again = cli(capfd, monkeypatch, "train", config, "--no-progress", "--resume", "--set",
                f"train.init_from={best}", "--set", f"train.run_dir={new}", "--set",
                "train.max_steps=3", "--set", "train.lr=0.0005", "--set", "model.dropout=0.3")
    assert again.code == 0, again.err
    assert load_checkpoint(new / "last.pt")["step"] == 3


@pytest.mark.parametrize("override, named", [
    ("model.d_ff=128", "model.d_ff: 64 -> 128"),
    ("tokenizer.vocab_size=200", "tokenizer.vocab_size: 120 -> 200"),
])
def test_init_from_a_checkpoint_that_does_not_fit_is_one_line(override, named, trained,
                                                              tmp_path, capfd, monkeypatch):
    tmp, config, _ = trained
    new = tmp_path / "tuned"
    result = cli(capfd, monkeypatch, "train", config, "--no-progress", "--set",
                 f"train.init_from={tmp / 'run/best.pt'}", "--set", f"train.run_dir={new}",
                 "--set", override)
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and named in lines[0], result.err
    assert not new.exists()  # nothing left behind


def test_resume_command_keeps_the_users_config_and_overrides_quoted():
    command = resume_command(Path("my configs/a.yaml"), ["train.lr=0.001", "train.run_dir=r x"],
                             progress=False)
    assert command == ("seq2seq train 'my configs/a.yaml' --set train.lr=0.001 --set "
                       "'train.run_dir=r x' --no-progress --resume")


# ---------------------------------------------------------------- tracking


def test_tensorboard_events_beside_the_metrics(tmp_path, capfd, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = write_slice(tmp_path, n_train=100, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, tensorboard="true")
    result = cli(capfd, monkeypatch, "train", config, "--no-progress")
    assert result.code == 0, result.err
    events = EventAccumulator(str(tmp_path / "run/tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "train/tokens_per_s", "valid/bleu",
            "valid/chrf", "valid/loss"} <= tags, tags
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6]


def test_tensorboard_without_the_package_is_one_line(tmp_path, capfd, monkeypatch):
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, tensorboard="true")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    result = cli(capfd, monkeypatch, "train", config, "--no-progress")
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1, result.err
    assert "pip install 'seq2seq[tensorboard]'" in lines[0]
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- translate and evaluate


def read_line(proc: subprocess.Popen, timeout: float = 60.0) -> str:
    """One line of the process's stdout, failing after `timeout` seconds."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no answer: translate waits for more input"
    return proc.stdout.readline()


def test_translate_answers_a_pipe_line_by_line(trained):
    tmp, _, _ = trained
    proc = subprocess.Popen([sys.executable, "-m", "seq2seq", "translate", str(tmp / "run/best.pt"),
                             "--beam-size", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env=command_env(), bufsize=0)
    try:
        answers = []
        for sentence in (b"the dog sees a cat .\n", b"two cats .\n"):
            proc.stdin.write(sentence)
            proc.stdin.flush()
            answers.append(read_line(proc))  # before the next line is written
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert len(answers) == 2 and all(a.endswith(b"\n") for a in answers)
    assert "translated 2 sentences in" in proc.stderr.read().decode()


def test_translate_and_evaluate_end_with_a_summary_line(trained, tmp_path, capfd, monkeypatch):
    tmp, _, data = trained
    ckpt = tmp / "run/best.pt"
    done = cli(capfd, monkeypatch, "translate", ckpt, "-i", data / "test.src", "-o",
               tmp_path / "out.txt")
    assert done.code == 0, done.err
    assert re.fullmatch(r"translated 8 sentences in \d+\.\ds \(\d+\.\d sentences/s\)\n", done.err)
    scored = cli(capfd, monkeypatch, "evaluate", ckpt, "--src", data / "test.src", "--ref",
                 data / "test.tgt")
    assert scored.code == 0, scored.err
    assert "translated 8 sentences in" in scored.err and "BLEU" in scored.out


def test_stdin_chunks_take_what_has_arrived_without_waiting(monkeypatch):
    from seq2seq.commands.translating import _chunks

    read, write = os.pipe()
    try:
        os.write(write, b"one\ntwo\nthr")
        chunks = _chunks(os.fdopen(read, "rb", buffering=0), 100)
        assert next(chunks) == ["one", "two"]  # the partial line waits for its end
        os.write(write, b"ee\n")
        start = time.monotonic()
        assert next(chunks) == ["three"]
        assert time.monotonic() - start < 5
        os.write(write, b"last")
        os.close(write)
        write = None
        assert list(chunks) == [["last"]]
    finally:
        if write is not None:
            os.close(write)
