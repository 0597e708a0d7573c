"""The CLI end to end on a slice of the toy data, and its one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, tiny_config_yaml, write_slice


def run(*args, stdin: str | None = None, cwd: Path | None = None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "seq2seq", *map(str, args)], input=stdin,
                          capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """prepare + a few training steps, once for the module."""
    tmp = tmp_path_factory.mktemp("cli")
    data = write_slice(tmp)
    config = tiny_config_yaml(tmp, data)
    prepared = run("prepare", config)
    assert prepared.returncode == 0, prepared.stderr
    assert "SentencePiece" in prepared.stderr and "trainer_interface" not in prepared.stderr
    trained = run("train", config, "--no-progress")
    assert trained.returncode == 0, trained.stderr
    return tmp, config, data


def test_train_writes_run_directory(trained):
    tmp, _, _ = trained
    run_dir = tmp / "run"
    for name in ("best.pt", "last.pt", "config.yaml", "metrics.jsonl", "spm.model"):
        assert (run_dir / name).is_file(), name
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("train_loss" in r for r in rows) and any("bleu" in r for r in rows)


def test_translate_from_arguments_stdin_and_files(trained, tmp_path):
    tmp, _, data = trained
    ckpt = tmp / "run/best.pt"
    args = run("translate", ckpt, "the dog sees a cat .", "", "the big man sleeps .",
               cwd=tmp_path)  # any working directory: the checkpoint is self-contained
    assert args.returncode == 0, args.stderr
    lines = args.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""
    piped = run("translate", ckpt, "--beam-size", "1", stdin="the dog sees a cat .\n\n   \n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.split("\n")[1:] == ["", "", ""]
    out = tmp_path / "out.txt"
    files = run("translate", ckpt, "-i", data / "dev.src", "-o", out, "--beam-size", "2")
    assert files.returncode == 0, files.stderr
    assert len(out.read_text().splitlines()) == 40


def test_evaluate_json(trained):
    tmp, _, data = trained
    result = run("evaluate", tmp / "run/best.pt", "--src", data / "test.src", "--ref",
                 data / "test.tgt", "--json", "--beam-size", "2")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert 0 <= scores["bleu"] <= 100 and scores["sentences"] == 40
    assert scores["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert scores["decoding"]["beam_size"] == 2 and scores["files"]["hyp"] is None
    plain = run("evaluate", tmp / "run/best.pt")  # data.test from the checkpoint's config
    assert plain.returncode == 0 and "BLEU =" in plain.stdout and "chrF2" in plain.stdout


def test_training_again_refuses_to_overwrite(trained):
    _, config, _ = trained
    again = run("train", config, "--no-progress")
    assert again.returncode == 2
    assert "already holds checkpoints" in again.stderr and "Traceback" not in again.stderr


def test_average_command(trained, tmp_path):
    tmp, _, _ = trained
    out = tmp_path / "avg.pt"
    result = run("average", tmp / "run/best.pt", tmp / "run/last.pt", "-o", out)
    assert result.returncode == 0, result.stderr
    assert run("translate", out, "the dog sleeps .").returncode == 0


@pytest.mark.parametrize("args, message", [
    (["train", "missing.yaml"], "config file not found"),
    (["translate", "missing.pt", "hello"], "checkpoint not found"),
    (["train", "configs/toy.yaml", "--set", "train.lr=-1"], "train.lr must be > 0"),
    (["train", "configs/toy.yaml", "--set", "data.train=nowhere/x"], "nowhere/x.src"),
    (["download", "wmt14"], "unknown corpus"),
])
def test_user_errors_are_one_line_exit_2(args, message, tmp_path):
    if "data.train=nowhere/x" in args:
        args = [*args, "--set", f"train.run_dir={tmp_path}/run"]
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_output_that_is_the_shell_input_is_refused(trained, tmp_path):
    tmp, _, data = trained
    text = tmp_path / "in.txt"
    text.write_bytes((data / "dev.src").read_bytes())
    before = text.read_bytes()
    with open(text, encoding="utf-8") as stdin:  # `translate CK -o in.txt < in.txt`
        result = subprocess.run([sys.executable, "-m", "seq2seq", "translate",
                                 str(tmp / "run/best.pt"), "-o", str(text)], stdin=stdin,
                                capture_output=True, text=True, cwd=ROOT, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "is the file read on stdin" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert text.read_bytes() == before


def test_help_for_every_command():
    for command in ("prepare", "train", "translate", "evaluate", "compare", "average",
                    "download", "info", "attention", "plot"):
        result = run(command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout


def test_prepare_refuses_a_run_with_checkpoints(trained):
    _, config, _ = trained
    result = run("prepare", config)
    assert result.returncode == 2 and "already holds checkpoints" in result.stderr
