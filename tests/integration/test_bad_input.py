"""Bad input at the command line: one clear line on stderr, exit code 2, nothing written.

The CLI runs in this process (`seq2seq.cli.main` with sys.argv and sys.stdin replaced), so
a test costs no interpreter start; an uncaught exception, which would print a traceback
from the real command, fails the test.  tests/test_data.py and tests/test_config.py check
the library messages; test_cli.py runs a few of these errors in a real subprocess.
"""

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.cli import main
from tests.conftest import tiny_config_yaml

SNOWMAN = "\u2603 \u6f22\u5b57"  # characters the toy tokenizer never saw


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(capfd, monkeypatch, *args, stdin: bytes | Path = b"") -> Result:
    """Run `seq2seq ARGS` in-process; stdout and stderr are captured at the file level.

    stdin is the bytes to read, or a file to open as stdin (as `< FILE` would).
    """
    capfd.readouterr()
    monkeypatch.setattr(sys, "argv", ["seq2seq", *map(str, args)])
    if isinstance(stdin, Path):
        stream = open(stdin, encoding="utf-8")  # noqa: SIM115 (closed below)
    else:
        stream = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stream)
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        stream.close()
    out, err = capfd.readouterr()
    return Result(code, out, err)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    lines = result.err.strip().splitlines()
    assert result.code == 2, result
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in run.glob("*.pt")) if run.exists() else []


def config_for(tmp_path: Path, data: Path) -> Path:
    tmp_path.mkdir(exist_ok=True)
    return tiny_config_yaml(tmp_path, data, max_steps=1, eval_every=1)


# ---------------------------------------------------------------- training data


def damage_missing(data: Path) -> list[str]:
    (data / "train.tgt").unlink()
    return ["file not found", "train.tgt"]


def damage_missing_dev(data: Path) -> list[str]:
    (data / "dev.src").unlink()
    return ["file not found", "dev.src"]


def damage_directory(data: Path) -> list[str]:
    (data / "train.src").unlink()
    (data / "train.src").mkdir()  # unreadable even for root, unlike chmod 000
    return ["cannot read", "train.src"]


def damage_line_counts(data: Path) -> list[str]:
    lines = (data / "train.tgt").read_text().splitlines()
    (data / "train.tgt").write_text("\n".join(lines[:-3]) + "\n")
    return [f"{data / 'train.src'} has 60 lines", f"{data / 'train.tgt'} has 57"]


def damage_empty(data: Path) -> list[str]:
    (data / "train.src").write_text("")
    (data / "train.tgt").write_text("")
    return ["no sentence pairs", "train.src", "train.tgt"]


def damage_utf8(data: Path) -> list[str]:
    lines = (data / "train.src").read_bytes().split(b"\n")
    lines[4] = "Gr\u00fc\u00dfe".encode("latin-1")
    (data / "train.src").write_bytes(b"\n".join(lines))
    return [f"{data / 'train.src'}, line 5: invalid UTF-8"]


def damage_dev_utf8(data: Path) -> list[str]:
    (data / "dev.tgt").write_bytes(b"ok\n\xff\xfe\n" * 4)
    return [f"{data / 'dev.tgt'}, line 2: invalid UTF-8"]


@pytest.mark.parametrize("damage", [damage_missing, damage_missing_dev, damage_directory,
                                    damage_line_counts, damage_empty, damage_utf8,
                                    damage_dev_utf8])
def test_bad_training_data_is_one_line_and_writes_no_checkpoint(
        damage, corpus, tmp_path, capfd, monkeypatch):
    fragments = damage(corpus)
    result = cli(capfd, monkeypatch, "train", config_for(tmp_path, corpus), "--no-progress")
    assert_one_line_error(result, *fragments)
    assert checkpoints(tmp_path / "run") == []
    if "dev" not in damage.__name__:  # the training text is read before anything is written
        assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_training_file(corpus, tmp_path, capfd, monkeypatch):
    (corpus / "train.src").chmod(0)
    try:
        result = cli(capfd, monkeypatch, "train", config_for(tmp_path, corpus), "--no-progress")
    finally:
        (corpus / "train.src").chmod(0o644)
    assert_one_line_error(result, "cannot read", "train.src")
    assert checkpoints(tmp_path / "run") == []


def test_empty_lines_are_dropped_counted_and_logged(corpus, tmp_path, capfd, monkeypatch):
    src = (corpus / "train.src").read_text().splitlines()
    tgt = (corpus / "train.tgt").read_text().splitlines()
    src[3], tgt[10], src[20], tgt[20] = "", "   ", "", ""  # three pairs lose a side
    (corpus / "train.src").write_text("\n".join(src) + "\n\n")  # and a blank last line
    (corpus / "train.tgt").write_text("\n".join(tgt) + "\n\n")
    result = cli(capfd, monkeypatch, "train", config_for(tmp_path, corpus), "--no-progress")
    assert result.code == 0, result.err
    assert "data: 57 training pairs; dropped 4 with an empty side" in result.out
    assert checkpoints(tmp_path / "run") == ["best.pt", "last.pt"]


def test_pairs_longer_than_the_model_are_dropped_not_fatal(corpus, tmp_path, capfd,
                                                           monkeypatch):
    long = " ".join(["the big dog sees two cats ."] * 30)  # ~300 tokens, 128 positions
    for name in ("train.src", "train.tgt", "dev.src", "dev.tgt"):
        with open(corpus / name, "a") as f:
            f.write(long + "\n")
    result = cli(capfd, monkeypatch, "train", config_for(tmp_path, corpus), "--no-progress",
                 "--set", "data.max_len=1000")
    assert result.code == 0, result.err
    assert ("data: dropped 1 training and 1 validation pairs longer than "
            "model.max_positions - 1 = 127 tokens") in result.out


def test_nothing_left_to_train_on_is_an_error(corpus, tmp_path, capfd, monkeypatch):
    # max_epochs keeps a regression from looping forever over empty epochs.
    result = cli(capfd, monkeypatch, "train", config_for(tmp_path, corpus), "--no-progress",
                 "--set", "data.max_len=2", "--set", "train.max_epochs=3")
    assert_one_line_error(result, "no training pairs left", "data.max_len=2")
    assert checkpoints(tmp_path / "run") == []


def test_crlf_corpus_trains_like_lf(corpus, tmp_path, capfd, monkeypatch):
    lf = cli(capfd, monkeypatch, "train", config_for(tmp_path / "lf", corpus), "--no-progress")
    assert lf.code == 0, lf.err
    crlf = tmp_path / "crlf"
    crlf.mkdir()
    for path in corpus.iterdir():
        (crlf / path.name).write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    result = cli(capfd, monkeypatch, "train", config_for(tmp_path, crlf), "--no-progress")
    assert result.code == 0, result.err
    assert "data: 60 training pairs; dropped 0" in result.out
    weights = load_checkpoint(tmp_path / "run/last.pt")["model"]
    lf_weights = load_checkpoint(tmp_path / "lf/run/last.pt")["model"]
    assert all(torch.equal(weights[k], lf_weights[k]) for k in lf_weights)


# ---------------------------------------------------------------- config files


@pytest.mark.parametrize("edit, fragments", [
    (lambda text: text.replace("  d_model: 32", "  d_model: [32"), ["invalid YAML at line 9"]),
    (lambda text: text.replace("  d_ff: 64", "  d_fff: 64"), ["unknown key 'd_fff'", "d_ff"]),
    (lambda text: text.replace("  n_heads: 4", "  n_heads: four"),
     ["model.n_heads: expected int, got str"]),
    (lambda text: text.replace("  lr: 0.003", "  lr: -0.003"), ["train.lr must be > 0"]),
    (lambda text: text.replace("  beam_size: 2", "  beam_size: 0"), ["decode.beam_size"]),
    (lambda text: text.replace("  n_heads: 4", "  n_heads: 5"),
     ["model.d_model", "divisible by model.n_heads (5)"]),
])
def test_bad_config_file_is_one_line_and_creates_nothing(
        edit, fragments, corpus, tmp_path, capfd, monkeypatch):
    path = config_for(tmp_path, corpus)
    path.write_text(edit(path.read_text()))
    result = cli(capfd, monkeypatch, "train", path, "--no-progress")
    assert_one_line_error(result, str(path), *fragments)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config(corpus, tmp_path, capfd, monkeypatch):
    path = config_for(tmp_path, corpus)
    path.chmod(0)
    try:
        result = cli(capfd, monkeypatch, "train", path)
    finally:
        path.chmod(0o644)
    assert_one_line_error(result, "cannot read config")


# ---------------------------------------------------------------- paths that are not files


def _not_a_file(kind: str, tmp_path: Path) -> tuple[Path, str]:
    if kind == "folder":
        (tmp_path / "config.yaml").mkdir()
        return tmp_path / "config.yaml", "is a folder"
    if kind == "fifo":  # reading it would wait forever for a writer
        os.mkfifo(tmp_path / "config.yaml")
        return tmp_path / "config.yaml", "is a FIFO"
    if kind == "device":
        return Path(os.devnull), "not a regular file"
    (tmp_path / "config.yaml").symlink_to(tmp_path / "config.yaml")
    return tmp_path / "config.yaml", "symbolic link loop"


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "looping link"])
def test_a_config_path_that_is_not_a_regular_file_is_one_line(kind, tmp_path, capfd,
                                                              monkeypatch):
    path, why = _not_a_file(kind, tmp_path)
    for command in (["train", path, "--no-progress"], ["prepare", path], ["info", path]):
        result = cli(capfd, monkeypatch, *command)
        assert_one_line_error(result, str(path), why)


# ---------------------------------------------------------------- messages that tell the truth


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-16-le"])
def test_utf16_input_is_named_utf16(encoding, trained, corpus, tmp_path, capfd, monkeypatch):
    ckpt, _ = trained
    text = "the dog sleeps .\nthe cat runs .\n".encode(encoding)  # "utf-16" adds a BOM
    (tmp_path / "in.txt").write_bytes(text)
    (corpus / "train.src").write_bytes(text * 30)
    runs = [cli(capfd, monkeypatch, "translate", ckpt, "-i", tmp_path / "in.txt"),
            cli(capfd, monkeypatch, "translate", ckpt, stdin=text),
            cli(capfd, monkeypatch, "train", config_for(tmp_path, corpus), "--no-progress")]
    for result in runs:
        assert_one_line_error(result, "UTF-16", "iconv -f UTF-16 -t UTF-8")
        assert "latin1" not in result.err


def test_the_last_resort_names_the_path_and_keeps_programming_errors(
        trained, tmp_path, capfd, monkeypatch):
    from seq2seq import translate

    ckpt, _ = trained
    for error in (PermissionError(13, "Permission denied", str(tmp_path / "x")),
                  OSError(36, "File name too long", str(tmp_path / "y"))):
        def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(translate.Translator, "from_checkpoint", fail)
        result = cli(capfd, monkeypatch, "translate", ckpt, "the dog .")
        assert_one_line_error(result, error.filename)
    monkeypatch.setattr(translate.Translator, "from_checkpoint",
                        lambda *a, **k: 1 + "a bug")  # a TypeError is not the user's doing
    with pytest.raises(TypeError):
        cli(capfd, monkeypatch, "translate", ckpt, "the dog .")
