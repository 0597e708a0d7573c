"""The stage before training: every input checked first, and tokenizers tied to the
settings and text they were trained on (reused, retrained, or refused under --resume)."""

import gzip
import json
import os
from pathlib import Path

import pytest

import seq2seq.store
from seq2seq.config import load_config
from seq2seq.errors import Seq2SeqError
from seq2seq.prepare import (
    check_inputs,
    load_training_data,
    manifest_path,
    prepare,
    prepare_store,
    tokenizer_paths,
    training_inputs,
)
from seq2seq.tokenizer import train_tokenizer
from seq2seq.training.distributed import World
from seq2seq.training.feed import epoch_steps
from tests.conftest import tiny_config_yaml, write_slice
from tests.integration.test_bad_input import assert_one_line_error, cli


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_slice(tmp_path, n_train=60, n_dev=4)


def config_of(tmp_path: Path, data: Path, *sets: str):
    return load_config(tiny_config_yaml(tmp_path, data), list(sets))


# ---------------------------------------------------------------- inputs


def test_a_missing_input_names_its_key_and_the_current_directory(corpus, tmp_path,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = config_of(tmp_path, corpus, "data.dev=data/dev", "data.test=")
    check_inputs(config)  # all there; an unset data.test is not looked for
    (corpus / "dev.tgt").unlink()
    with pytest.raises(Seq2SeqError) as error:
        check_inputs(config)
    message = str(error.value)
    assert "file not found: data/dev.tgt" in message and "named by data.dev" in message
    assert f"relative to the current directory {tmp_path}" in message
    absolute = config_of(tmp_path, corpus, f"data.test={tmp_path}/elsewhere/test")
    with pytest.raises(Seq2SeqError, match="named by data.test\\)") as error:
        check_inputs(absolute, splits=("train", "test"))  # data.dev is not asked for
    multi30k = config_of(tmp_path, corpus, "data.train=data/multi30k/train")
    with pytest.raises(Seq2SeqError, match="seq2seq download multi30k"):
        check_inputs(multi30k)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "it is a folder"),
    (lambda p: os.mkfifo(p), "not a regular file"),
    (lambda p: p.symlink_to(p), "cannot read"),
])
def test_an_input_that_is_not_a_readable_file(make, message, corpus, tmp_path):
    (corpus / "train.src").unlink()
    make(corpus / "train.src")
    with pytest.raises(Seq2SeqError, match=message) as error:
        check_inputs(config_of(tmp_path, corpus))
    assert "train.src" in str(error.value) and "data.train" in str(error.value)


def test_a_missing_dev_file_stops_train_before_any_work_and_leaves_no_run_dir(
        corpus, tmp_path, capfd, monkeypatch):
    (corpus / "dev.src").unlink()
    for command in ("train", "prepare"):
        result = cli(capfd, monkeypatch, command, tiny_config_yaml(tmp_path, corpus))
        assert_one_line_error(result, "file not found", "dev.src", "data.dev")
        assert "SentencePiece" not in result.out + result.err  # no tokenizer was trained
        assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- tokenizers


def test_a_tokenizer_is_reused_only_for_its_own_settings_and_text(corpus, tmp_path):
    notes = []
    config = config_of(tmp_path, corpus)
    model, _ = tokenizer_paths(config)
    first, _ = prepare(config, notes.append)
    assert json.loads(manifest_path(model).read_text())["settings"]["vocab_size"] == 120
    again, _ = prepare(config, notes.append)
    assert again.model_bytes == first.model_bytes and "reusing" in notes[-1]
    smaller = config_of(tmp_path, corpus, "tokenizer.vocab_size=60")
    with pytest.raises(Seq2SeqError, match="--resume: .*tokenizer.vocab_size 120 -> 60"):
        prepare(smaller, notes.append, resume=True)  # the checkpoints depend on it
    assert model.read_bytes() == first.model_bytes
    retrained, _ = prepare(smaller, notes.append)
    assert retrained.vocab_size <= 60 < first.vocab_size
    assert "retraining" in notes[-2] and "tokenizer.vocab_size 120 -> 60" in notes[-2]
    with open(corpus / "train.tgt", "a") as f:
        f.write("a brand new sentence .\n")
    with open(corpus / "train.src", "a") as f:
        f.write("a brand new sentence .\n")
    prepare(smaller, notes.append)
    assert "retraining" in notes[-2] and "train.src changed" in notes[-2]
    bpe = config_of(tmp_path, corpus, "tokenizer.vocab_size=60", "tokenizer.model_type=bpe")
    prepare(bpe, notes.append)
    assert "tokenizer.model_type 'unigram' -> 'bpe'" in notes[-2]


def test_a_tokenizer_seq2seq_did_not_record_is_never_replaced(corpus, tmp_path):
    notes = []
    config = config_of(tmp_path, corpus)
    model, _ = tokenizer_paths(config)
    prepare(config, notes.append)
    manifest_path(model).unlink()  # a user's own model, or one from before manifests
    mine = model.read_bytes()
    prepare(config_of(tmp_path, corpus, "tokenizer.vocab_size=60"), notes.append)
    assert model.read_bytes() == mine and "used as it is" in notes[-1]
    (tmp_path / "other").mkdir()
    prepare(config_of(tmp_path / "other", corpus, "tokenizer.vocab_size=60"), notes.append)
    (model.parent / "spm.model.json").write_text(
        (tmp_path / "other/run/spm.model.json").read_text())
    model.write_bytes(mine)  # a file its manifest does not describe
    with pytest.raises(Seq2SeqError, match="not the model spm.model.json describes"):
        prepare(config, notes.append)
    assert model.read_bytes() == mine
    manifest_path(model).write_text("{not json")  # an unreadable record is seq2seq's own
    prepare(config, notes.append)
    assert "manifest spm.model.json is unreadable" in notes[-2]


def test_separate_tokenizers_have_a_manifest_each(corpus, tmp_path):
    config = config_of(tmp_path, corpus, "tokenizer.joint=false", "model.share_embeddings=false")
    src_tok, tgt_tok = prepare(config, lambda _: None)
    for path, side in zip(tokenizer_paths(config), ("src", "tgt"), strict=True):
        assert json.loads(manifest_path(path).read_text())["settings"]["side"] == side
    notes = []
    again = prepare(config, notes.append)
    assert [t.model_bytes for t in again] == [src_tok.model_bytes, tgt_tok.model_bytes]
    assert len(notes) == 2 and all("reusing" in n for n in notes)


def test_resume_with_another_tokenizer_config_is_refused_in_one_line(
        corpus, tmp_path, capfd, monkeypatch):
    config = tiny_config_yaml(tmp_path, corpus, max_steps=1, eval_every=1)
    trained = cli(capfd, monkeypatch, "train", config, "--no-progress")
    assert trained.code == 0, trained.err
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    result = cli(capfd, monkeypatch, "train", config, "--no-progress", "--resume",
                 "--set", "tokenizer.vocab_size=60", "--set", "train.max_steps=2")
    assert_one_line_error(result, "--resume", "tokenizer.vocab_size 120 -> 60")
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert after == before
    fresh = cli(capfd, monkeypatch, "train", config, "--no-progress", "--overwrite",
                "--set", "tokenizer.vocab_size=60")
    assert fresh.code == 0, fresh.err
    assert "tokenizer: retraining" in fresh.out + fresh.err


# ---------------------------------------------------------------- the sample and the store


def test_sentencepiece_trains_on_a_sample_reproducible_from_its_seed(corpus, tmp_path):
    def trained(name: str, *sets: str) -> bytes:
        config = config_of(tmp_path, corpus, f"train.run_dir={tmp_path / name}", *sets)
        return prepare(config, notes.append)[0].model_bytes

    notes = []
    first = trained("a", "tokenizer.sample_size=20")
    assert "from 20 pairs drawn at random (tokenizer.sample_size)" in notes[-1]
    assert trained("b", "tokenizer.sample_size=20") == first
    assert trained("c", "tokenizer.sample_size=20", "tokenizer.sample_seed=7") != first
    # A corpus no larger than the sample trains on every pair, as before sampling.
    src = (corpus / "train.src").read_text().splitlines()
    tgt = (corpus / "train.tgt").read_text().splitlines()
    assert trained("d") == train_tokenizer(src + tgt, vocab_size=120).model_bytes
    assert f"from all {len(src):,} non-empty pairs" in notes[-1]


def test_the_store_is_built_once_and_rebuilt_when_an_input_changes(corpus, tmp_path):
    notes = []
    config = config_of(tmp_path, corpus)
    src_tok, tgt_tok = prepare(config, notes.append)
    store = prepare_store(config, src_tok, tgt_tok, training_inputs(config), notes.append)
    assert len(store) == 60 and notes[-1].startswith("prepare: 60 pairs read, 60 kept;")
    assert "built in" in notes[-1] and "MiB on disk" in notes[-1]
    prepare_store(config, src_tok, tgt_tok, training_inputs(config), notes.append)
    assert "reused" in notes[-1]
    for name in ("train.src", "train.tgt"):
        with open(corpus / name, "a") as f:
            f.write("the cat .\n")
    with pytest.raises(Seq2SeqError, match="cannot be used here .*train.src changed"):
        prepare_store(config, src_tok, tgt_tok, training_inputs(config), notes.append,
                      build=False)  # a rank other than 0 never builds
    store = prepare_store(config, src_tok, tgt_tok, training_inputs(config), notes.append)
    assert "train.src changed" in notes[-2] and len(store) == 61
    shorter = config_of(tmp_path, corpus, "data.max_len=5")
    store = prepare_store(shorter, src_tok, tgt_tok, training_inputs(shorter), notes.append)
    assert "data.max_len changed (128 -> 5)" in notes[-2] and len(store) < 61
    other = train_tokenizer(["the cat sat on the mat ."] * 10, vocab_size=30)
    prepare_store(config, other, other, training_inputs(config), notes.append)
    assert "the tokenizer changed" in notes[-2]


def test_prepare_encodes_the_store_with_progress_lines_and_a_summary(corpus, tmp_path, capfd,
                                                                    monkeypatch):
    monkeypatch.setattr(seq2seq.store, "LINE_EVERY", 25)
    result = cli(capfd, monkeypatch, "prepare", tiny_config_yaml(tmp_path, corpus))
    assert result.code == 0, result.err
    lines = result.err.strip().splitlines()
    # One chunk of 60 pairs passes two multiples of 25: one line, when it is written.
    assert [line.split(" (")[0] for line in lines if "encoded" in line] == [
        "prepare: encoded 60 pairs"]
    assert lines[-1].startswith("prepare: 60 pairs read, 60 kept; dropped 0 with an empty "
                                "side and 0 too long; tokens ")
    assert (tmp_path / "run/store/manifest.json").is_file()


def test_gzip_tsv_and_several_corpora_give_the_batches_of_the_plain_files(tmp_path):
    data = write_slice(tmp_path, n_train=120, n_dev=4)
    src = (data / "train.src").read_text().splitlines()
    tgt = (data / "train.tgt").read_text().splitlines()
    for side, lines in (("src", src), ("tgt", tgt)):
        (data / f"part.{side}.gz").write_bytes(gzip.compress("\n".join(lines[:60]).encode()))
    (data / "rest.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in zip(src[60:], tgt[60:],
                                                                         strict=True)))
    mixed = f"data.train=[{data}/part, {{tsv: {data}/rest.tsv, weight: WEIGHT}}]"

    def epoch(name: str, *sets: str):
        config = config_of(tmp_path, data, f"train.run_dir={tmp_path / name}", *sets)
        corpora = training_inputs(config)
        src_tok, tgt_tok = prepare(config, lambda _: None, corpora=corpora)
        train = load_training_data(config, src_tok, tgt_tok, lambda _: None, corpora).train
        steps = epoch_steps(train, config.train, World(), epoch=1)
        return src_tok.model_bytes, [m.tolist() for step in steps for m in step]

    plain = epoch("plain")
    assert epoch("mixed", mixed.replace("WEIGHT", "1")) == plain
    _, weighted = epoch("weighted", mixed.replace("WEIGHT", "2"))
    drawn = [i for batch in weighted for i in batch]
    # 120 pairs an epoch; the TSV's 60 weigh twice: 120 * 120 / 180 = 80 of them.
    assert len(drawn) == 120 and sum(i >= 60 for i in drawn) == 80
