"""Bad input to the decoding commands (translate, evaluate) and absurd devices and sizes:
one clear line on stderr, exit code 2, no output written. The CLI runs in-process, as in
test_bad_input.py, whose helpers these tests share."""


import pytest
import torch

from tests.integration.test_bad_input import SNOWMAN, assert_one_line_error, cli, config_for

# ---------------------------------------------------------------- translate


def test_translate_missing_or_invalid_input_writes_no_output(trained, tmp_path, capfd,
                                                              monkeypatch):
    ckpt, _ = trained
    out = tmp_path / "out.txt"
    missing = cli(capfd, monkeypatch, "translate", ckpt, "-i", tmp_path / "nope.txt", "-o", out)
    assert_one_line_error(missing, "file not found", "nope.txt")
    (tmp_path / "latin1.txt").write_bytes(b"the dog .\n" + "Gr\u00fc\u00dfe\n".encode("latin-1"))
    latin1 = cli(capfd, monkeypatch, "translate", ckpt, "-i", tmp_path / "latin1.txt", "-o", out)
    assert_one_line_error(latin1, "latin1.txt, line 2: invalid UTF-8")
    assert not out.exists()


def test_translate_invalid_utf8_on_stdin_names_the_line(trained, tmp_path, capfd, monkeypatch):
    ckpt, _ = trained
    out = tmp_path / "out.txt"
    result = cli(capfd, monkeypatch, "translate", ckpt, "-o", out,
                 stdin=b"the dog .\n\xff\xfe the cat\n")
    assert_one_line_error(result, "stdin, line 2: invalid UTF-8")
    assert not out.exists() or out.read_text() == ""


@pytest.mark.parametrize("args", [["the dog sleeps ."], ["-i", "IN"], []])
def test_translate_beam_size_zero(args, trained, tmp_path, capfd, monkeypatch):
    ckpt, _ = trained
    (tmp_path / "in.txt").write_text("the dog sleeps .\n")
    args = [str(tmp_path / "in.txt") if a == "IN" else a for a in args]
    out = tmp_path / "out.txt"
    result = cli(capfd, monkeypatch, "translate", ckpt, *args, "--beam-size", "0", "-o", out,
                 stdin=b"the dog sleeps .\n")
    assert_one_line_error(result, "beam size")
    assert not out.exists()


def test_translate_empty_stdin_prints_nothing(trained, capfd, monkeypatch):
    ckpt, _ = trained
    result = cli(capfd, monkeypatch, "translate", ckpt)
    assert (result.code, result.out, result.err) == (0, "", "")


def test_translate_spaces_unseen_characters_and_overlong_input(trained, capfd, monkeypatch):
    ckpt, _ = trained
    long = " ".join(["the big dog sees two cats ."] * 40)  # far over the 128 positions
    result = cli(capfd, monkeypatch, "translate", ckpt, "   ", SNOWMAN, long, "--beam-size", "2")
    assert result.code == 0, result.err
    lines = result.out.split("\n")
    assert len(lines) == 4 and lines[0] == "" and lines[3] == ""  # one line per input line
    assert lines[2].strip()  # something came out of the truncated sentence
    unknown, cut = result.err.strip().splitlines()  # lossy input is said, line by line
    assert unknown.startswith("warning: 3 character(s) in 1 sentence(s) have no piece")
    assert cut == "warning: 1 sentence(s) longer than the model's 127 tokens were cut to fit " \
                  "(line 3)"


def test_translate_unseen_characters_from_stdin(trained, capfd, monkeypatch):
    ckpt, _ = trained
    result = cli(capfd, monkeypatch, "translate", ckpt, stdin=f"{SNOWMAN}\n  \n".encode())
    assert result.code == 0, result.err
    assert len(result.out.split("\n")) == 3 and result.out.split("\n")[1:] == ["", ""]


# ---------------------------------------------------------------- evaluate


def test_evaluate_hypotheses_of_another_length(trained, tmp_path, capfd, monkeypatch):
    ckpt, data = trained
    hyp, out = tmp_path / "hyp.txt", tmp_path / "scored.txt"
    hyp.write_text("".join(line + "\n" for line in (data / "test.tgt").read_text()
                           .splitlines()[:-1]))
    result = cli(capfd, monkeypatch, "evaluate", ckpt, "--hyp", hyp, "--ref", data / "test.tgt",
                 "-o", out)
    assert_one_line_error(result, f"{hyp} has 39 lines", f"{data / 'test.tgt'} has 40")
    assert not out.exists()


def test_evaluate_source_of_another_length_and_missing_files(trained, tmp_path, capfd,
                                                            monkeypatch):
    ckpt, data = trained
    src, out = tmp_path / "short.src", tmp_path / "scored.txt"
    src.write_text("the dog .\n")
    result = cli(capfd, monkeypatch, "evaluate", ckpt, "--src", src, "--ref", data / "test.tgt",
                 "-o", out)
    assert_one_line_error(result, f"{src} has 1 lines", "has 40")
    missing = cli(capfd, monkeypatch, "evaluate", ckpt, "--hyp", tmp_path / "nope.txt",
                  "--ref", data / "test.tgt", "-o", out)
    assert_one_line_error(missing, "file not found", "nope.txt")
    assert not out.exists()


def test_empty_evaluate_files_are_one_line(trained, tmp_path, capfd, monkeypatch):
    ckpt, data = trained
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    ref, src = data / "test.tgt", data / "test.src"
    for args, kind in ((["--src", empty, "--ref", empty], "reference"),
                       (["--src", empty, "--ref", ref], "source"),
                       (["--hyp", empty, "--ref", ref], "hypothesis"),
                       (["--src", src, "--ref", empty], "reference")):
        result = cli(capfd, monkeypatch, "evaluate", ckpt, *args, "-o", tmp_path / "out.txt")
        assert_one_line_error(result, f"the {kind} file {empty} is empty")
    assert not (tmp_path / "out.txt").exists()


# ---------------------------------------------------------------- devices and sizes


@pytest.mark.parametrize("args, fragments", [
    (["--device", "foo"], ["unknown device 'foo'"]),
    (["--device", "cuda:-1"], ["unknown device 'cuda:-1'"]),
    (["--device", "mps"], ["device 'mps' is not supported"]),
    (["--beam-size", "1000000000"], ["beam size must be between 1", "got 1000000000"]),
    (["--beam-size", "-4"], ["beam size must be between 1"]),
    (["--batch-size", "-5"], ["batch size must be >= 1"]),
    (["--batch-size", "0"], ["batch size must be >= 1"]),
    (["--max-len-ratio", "inf"], ["max-len-ratio must be a finite number"]),
    (["--length-penalty", "nan"], ["length penalty must be a finite number"]),
    (["--length-penalty", "1e308"], ["length penalty must be a finite number in [0, 10]"]),
])
def test_unknown_devices_and_absurd_sizes_are_one_line(args, fragments, trained, tmp_path,
                                                       capfd, monkeypatch):
    ckpt, data = trained
    out = tmp_path / "out.txt"
    for command in (["translate", ckpt, "the dog .", "-o", out],
                    ["translate", ckpt, "-o", out],
                    ["evaluate", ckpt, "--src", data / "test.src", "--ref", data / "test.tgt"]):
        if command[0] == "evaluate" and "--max-len-ratio" in args:
            continue  # evaluate has no --max-len-ratio
        result = cli(capfd, monkeypatch, *command, *args, stdin=b"the dog .\n")
        assert_one_line_error(result, *fragments)
    assert not out.exists()


def test_unknown_train_device_and_missing_gpu_are_one_line(corpus, tmp_path, capfd,
                                                           monkeypatch):
    config = config_for(tmp_path, corpus)
    result = cli(capfd, monkeypatch, "train", config, "--set", "train.device=tpu")
    assert_one_line_error(result, "train.device")
    if not torch.cuda.is_available():
        gpu = cli(capfd, monkeypatch, "translate", "CK", "--device", "cuda:99")
        assert_one_line_error(gpu, "cuda:99")


def test_an_allocation_failure_in_search_says_to_lower_the_sizes(trained, capfd, monkeypatch):
    from seq2seq import translate

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 8000000000000 bytes")

    ckpt, _ = trained
    monkeypatch.setattr(translate, "beam_search", no_memory)
    result = cli(capfd, monkeypatch, "translate", ckpt, "the dog .", "--beam-size", "50")
    assert_one_line_error(result, "out of memory", "lower --beam-size or --batch-size")
