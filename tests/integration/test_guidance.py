"""Ordinary mistakes answered with a way forward: a run directory where a checkpoint goes,
missing or relative data files, stdin as `-`, the Python API's types, lossy input, and
help that reads like documentation (-h, --version, examples, no internal metavars)."""

import json
import re
from pathlib import Path

import pytest

from seq2seq import __version__
from seq2seq.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from seq2seq.cli import EXAMPLES
from seq2seq.config import load_config
from seq2seq.errors import Seq2SeqError
from seq2seq.prepare import manifest_path, prepare, tokenizer_paths
from seq2seq.tokenizer import UNK_ID, train_tokenizer
from seq2seq.training.loop import train
from seq2seq.translate import Translator
from tests.conftest import tiny_config_yaml, write_slice
from tests.integration.test_bad_input import SNOWMAN, assert_one_line_error, cli

COMMANDS = list(EXAMPLES)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """A two-step tiny run: (its run directory, the toy slice it was trained on)."""
    tmp = tmp_path_factory.mktemp("guidance")
    data = write_slice(tmp, n_train=200, n_dev=8)
    config = load_config(tiny_config_yaml(tmp, data, max_steps=2, eval_every=2))
    return train(config, progress=False), data


# ---------------------------------------------------------------- a folder as the checkpoint


def test_a_folder_resolves_to_best_pt_or_names_its_checkpoints(tmp_path, capsys):
    assert resolve_checkpoint(tmp_path / "x.pt") == tmp_path / "x.pt"  # files pass through
    with pytest.raises(Seq2SeqError, match="no checkpoints"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "only.pt").write_bytes(b"")
    assert resolve_checkpoint(tmp_path) == tmp_path / "only.pt"
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(Seq2SeqError) as error:  # two, and neither is best.pt: ambiguous
        resolve_checkpoint(tmp_path)
    assert f"{tmp_path}/last.pt, {tmp_path}/only.pt" in str(error.value)
    capsys.readouterr()
    (tmp_path / "best.pt").write_bytes(b"")
    assert resolve_checkpoint(tmp_path) == tmp_path / "best.pt"
    assert capsys.readouterr().err == f"using {tmp_path}/best.pt\n"
    with pytest.raises(Seq2SeqError, match="name the files in it: .*best.pt"):
        resolve_checkpoint(tmp_path, pick=False)  # averaging one of them would be wrong


def test_every_command_taking_a_checkpoint_takes_its_run_directory(run, tmp_path, capfd,
                                                                   monkeypatch):
    folder, data = run
    using = f"using {folder}/best.pt"
    result = cli(capfd, monkeypatch, "translate", folder, "the dog .")
    assert result.code == 0 and result.out.strip() and result.err.splitlines()[0] == using
    result = cli(capfd, monkeypatch, "evaluate", folder, "--json")
    assert result.code == 0 and '"bleu"' in result.out and using in result.err
    result = cli(capfd, monkeypatch, "info", folder)
    assert result.code == 0 and "parameters" in result.out and using in result.err
    result = cli(capfd, monkeypatch, "attention", folder, "the dog .", "-o",
                 tmp_path / "a.html")
    assert result.code == 0 and (tmp_path / "a.html").is_file() and using in result.err
    result = cli(capfd, monkeypatch, "average", folder, "-o", tmp_path / "avg.pt")
    assert_one_line_error(result, "is a folder", "name the files in it", "best.pt")
    assert Translator.from_checkpoint(folder, device="cpu").translate("the dog .")  # the API


# ---------------------------------------------------------------- data files


def test_a_missing_dev_file_leaves_no_folder_even_a_nested_one(tmp_path, capfd, monkeypatch):
    data = write_slice(tmp_path, n_train=30, n_dev=4)
    (data / "dev.tgt").unlink()
    config = tiny_config_yaml(tmp_path, data, run_dir=tmp_path / "runs/a/b")
    for command in (["prepare"], ["train", "--no-progress"]):
        result = cli(capfd, monkeypatch, command[0], config, *command[1:])
        assert_one_line_error(result, "file not found", "dev.tgt", "named by data.dev")
        assert not (tmp_path / "runs").exists()


def test_evaluate_names_data_test_and_the_directory_it_read_from(run, tmp_path, capfd,
                                                                monkeypatch):
    folder, data = run
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    monkeypatch.chdir(moved)  # a relative data.test read from another directory
    state = load_checkpoint(folder / "best.pt")
    state["config"]["data"]["test"] = "data/test"
    checkpoint = tmp_path / "relative.pt"
    save_checkpoint(state, checkpoint)
    result = cli(capfd, monkeypatch, "evaluate", checkpoint)
    assert_one_line_error(result, "file not found: data/test.src", "named by data.test",
                          f"relative to the current directory {moved}")
    missing = cli(capfd, monkeypatch, "evaluate", checkpoint, "--hyp", "hyp.txt", "--ref",
                  data / "test.tgt")
    assert_one_line_error(missing, "file not found: hyp.txt",
                          f"relative to the current directory {moved}")


def test_a_multi30k_recipe_without_its_data_says_how_to_fetch_it(tmp_path, monkeypatch):
    from seq2seq.prepare import check_inputs

    monkeypatch.chdir(tmp_path)
    recipe = Path(__file__).resolve().parents[2] / "configs/multi30k_de_en.yaml"
    for prefix, command in (("data/multi30k/train", "`seq2seq download multi30k` fetches"),
                            ("corpora/multi30k/train",
                             "`seq2seq download multi30k --dir corpora/multi30k` fetches")):
        config = load_config(recipe, [f"data.train={prefix}", f"train.run_dir={tmp_path}/r"])
        with pytest.raises(Seq2SeqError) as error:
            check_inputs(config)
        message = str(error.value)
        assert command in message and "named by data.train" in message
        assert f"relative to the current directory {tmp_path}" in message


def test_evaluate_takes_both_files_or_neither(run, capfd, monkeypatch):
    folder, data = run
    src, ref = data / "test.src", data / "test.tgt"
    for args, fragments in ((["--src", src], ["--src needs --ref"]),
                            (["--hyp", ref], ["--hyp needs --ref"]),
                            (["--ref", ref], ["--ref needs --src"])):
        result = cli(capfd, monkeypatch, "evaluate", folder / "best.pt", *args)
        assert_one_line_error(result, *fragments, "data.test")


def test_a_dash_reads_stdin(run, capfd, monkeypatch):
    folder, data = run
    ckpt = folder / "best.pt"
    src = (data / "test.src").read_bytes()
    piped = cli(capfd, monkeypatch, "translate", ckpt, "-i", "-", stdin=src)
    listed = cli(capfd, monkeypatch, "translate", ckpt, "-i", data / "test.src")
    assert piped.code == 0 and piped.out == listed.out and len(piped.out.splitlines()) == 8
    hyp = data.parent / "hyp.txt"
    hyp.write_text(listed.out)
    from_file = cli(capfd, monkeypatch, "evaluate", ckpt, "--hyp", hyp, "--ref",
                    data / "test.tgt", "--json")
    from_stdin = cli(capfd, monkeypatch, "evaluate", ckpt, "--hyp", "-", "--ref",
                     data / "test.tgt", "--json", stdin=listed.out.encode())
    assert from_stdin.code == 0
    scores = [{k: v for k, v in json.loads(r.out).items() if k != "files"}
              for r in (from_stdin, from_file)]
    assert scores[0] == scores[1] and json.loads(from_stdin.out)["files"]["hyp"] == "-"
    both = cli(capfd, monkeypatch, "evaluate", ckpt, "--src", "-", "--ref", "-")
    assert_one_line_error(both, "--src and --ref both read stdin")


# ---------------------------------------------------------------- the Python API


def test_translate_takes_a_string_or_a_list_and_refuses_the_rest(run):
    translator = Translator.from_checkpoint(run[0] / "best.pt", device="cpu")
    one = translator.translate("the dog sees a cat .")
    assert isinstance(one, str) and one
    assert translator.translate(["the dog sees a cat ."]) == [one]
    assert translator.translate(("the dog sees a cat .", "  ")) == [one, ""]
    for bad in (iter(["a ."]), b"the dog .", 3, None, ["a .", 3]):
        with pytest.raises(TypeError, match="string"):
            translator.translate(bad)
    for method in (Translator, Translator.from_checkpoint, Translator.translate,
                   Translator.options, Translator.translate_ids, Translator.encode):
        assert method.__doc__ and len(method.__doc__.strip()) > 40, method


# ---------------------------------------------------------------- lossy input


def test_cut_sentences_are_named_by_line_and_unknown_characters_counted(run, capfd,
                                                                         monkeypatch):
    ckpt = run[0] / "best.pt"
    long = " ".join(["the big dog sees two cats ."] * 40)  # far over the 128 positions
    lines = ["the dog .", long, "a cat .", long, SNOWMAN, *[long] * 6]
    result = cli(capfd, monkeypatch, "translate", ckpt, *lines, "--beam-size", "1")
    assert result.code == 0 and len(result.out.splitlines()) == len(lines)
    warnings = result.err.strip().splitlines()
    assert len(warnings) == 2, warnings
    assert ("3 character(s) in 1 sentence(s)" in warnings[0]
            and "tokenizer.byte_fallback: true" in warnings[0])
    assert warnings[1].startswith("warning: 8 sentence(s) longer than the model's 127 tokens")
    assert warnings[1].endswith("(lines 2, 4, 6, 7, 8, ...)")


def test_byte_fallback_spells_unknown_characters_as_bytes(run, tmp_path):
    _, data = run
    lines = (data / "train.src").read_text().splitlines()
    plain = train_tokenizer(lines, 300, "unigram")
    full = train_tokenizer(lines, 300, "unigram", byte_fallback=True)
    assert not plain.byte_fallback and full.byte_fallback
    assert UNK_ID in plain.encode([SNOWMAN])[0] and plain.unknown_characters(SNOWMAN) == [
        "\u2603", "\u6f22", "\u5b57"]
    ids = full.encode([SNOWMAN])
    assert UNK_ID not in ids[0] and full.decode(ids) == [SNOWMAN]
    config = load_config(tiny_config_yaml(tmp_path, data), ["tokenizer.byte_fallback=true",
                                                             "tokenizer.vocab_size=300"])
    src, _ = prepare(config, log=lambda message: None)
    assert src.byte_fallback
    with pytest.raises(Seq2SeqError, match="tokenizer.byte_fallback needs model_type"):
        load_config(tiny_config_yaml(tmp_path, data), ["tokenizer.byte_fallback=true",
                                                        "tokenizer.model_type=word"])


def test_a_manifest_without_byte_fallback_still_matches(run, tmp_path):
    _, data = run
    config = load_config(tiny_config_yaml(tmp_path, data))
    prepare(config, log=lambda message: None)
    manifest = manifest_path(tokenizer_paths(config)[0])
    saved = json.loads(manifest.read_text())
    del saved["settings"]["byte_fallback"]  # written before the key existed
    manifest.write_text(json.dumps(saved))
    notes = []
    prepare(config, log=notes.append)
    assert notes and "reusing" in notes[0], notes


# ---------------------------------------------------------------- help and version


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_and_version_for_the_app_and_every_command(command, capfd, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    words = [command] if command else []
    short, long = (cli(capfd, monkeypatch, *words, flag) for flag in ("-h", "--help"))
    assert short.code == long.code == 0 and short.out == long.out and "Usage" in short.out
    internal = re.findall(r"<[a-z][\w\[\]|, .]*>", short.out)
    assert not internal, internal  # <bool>, <list[str]>, <path>: Typer's, not ours
    if command:
        assert "Examples:" in short.out and EXAMPLES[command].splitlines()[0] in short.out
    version = cli(capfd, monkeypatch, *words, "--version")
    assert (version.code, version.out) == (0, f"seq2seq {__version__}\n")


def test_attention_decodes_with_the_checkpoints_beam(run, tmp_path, monkeypatch):
    from seq2seq.inspection import commands

    seen = []
    real = commands.sentence_attention

    def spy(translator, sentence, beam_size):
        seen.append((beam_size, translator.decode.beam_size))
        return real(translator, sentence, beam_size)

    monkeypatch.setattr(commands, "sentence_attention", spy)
    commands.attention(run[0] / "best.pt", "the dog .", tmp_path / "a.html")
    commands.attention(run[0] / "best.pt", "the dog .", tmp_path / "b.html", beam_size=1)
    assert seen == [(2, 2), (1, 2)]  # tiny_config_yaml's decode.beam_size is 2
