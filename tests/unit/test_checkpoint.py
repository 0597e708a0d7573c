"""Checkpoints: round trip, atomic writes, checksums, crafted and foreign files, averaging."""

import gzip
import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import pytest
import torch

from seq2seq.averaging import average_checkpoints, write_average
from seq2seq.checkpoint import (
    FORMAT_VERSION,
    content_checksum,
    load_checkpoint,
    rebuild,
    save_checkpoint,
)
from seq2seq.config import ModelConfig
from seq2seq.errors import Seq2SeqError
from seq2seq.model.masks import padding_mask, target_mask
from seq2seq.model.transformer import build_model
from seq2seq.tokenizer import train_tokenizer
from tests.conftest import PAD, VOCAB, random_ids, tiny_model

CONFIG = {"model": {"d_model": 32}}


def state_of(model):
    return {"config": CONFIG, "model": model.state_dict(),
            "tokenizers": {"src": b"spm", "tgt": b"spm"}, "step": 3}


def test_round_trip_gives_identical_outputs(tmp_path):
    model = tiny_model(seed=1)
    save_checkpoint(state_of(model), tmp_path / "a.pt")
    loaded = load_checkpoint(tmp_path / "a.pt")
    assert loaded["format_version"] == FORMAT_VERSION and loaded["tokenizers"]["src"] == b"spm"
    other = tiny_model(seed=2)
    other.load_state_dict(loaded["model"])
    src, tgt = random_ids(2, 6), random_ids(2, 4, seed=3)
    args = (src, tgt, padding_mask(src, PAD), target_mask(tgt, PAD))
    assert torch.equal(model(*args), other(*args))


def test_save_leaves_no_temporary_files_and_replaces(tmp_path):
    save_checkpoint(state_of(tiny_model()), tmp_path / "a.pt")
    save_checkpoint({**state_of(tiny_model()), "step": 9}, tmp_path / "a.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]
    assert load_checkpoint(tmp_path / "a.pt")["step"] == 9


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    save_checkpoint(state_of(tiny_model()), tmp_path / "a.pt")

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(state_of(tiny_model()), tmp_path / "a.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "a.pt")["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    ran = []

    class Evil:
        def __reduce__(self):
            return (ran.append, ("ran",))

    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, "config": {}, "model": {}, "tokenizers": {},
                "payload": Evil()}, buffer)
    (tmp_path / "evil.pt").write_bytes(buffer.getvalue())
    with pytest.raises(Seq2SeqError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert ran == []


@pytest.mark.parametrize("cut", [0, 10, 1000, -50])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, cut):
    save_checkpoint(state_of(tiny_model()), tmp_path / "a.pt")
    data = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "bad.pt").write_bytes(data[:cut])
    with pytest.raises(Seq2SeqError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_unknown_format_version_and_missing_file(tmp_path):
    torch.save({"format_version": 99, "config": {}, "model": {}, "tokenizers": {}},
               tmp_path / "future.pt")
    with pytest.raises(Seq2SeqError, match="format 99 is not supported"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(Seq2SeqError, match="not a seq2seq checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(Seq2SeqError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    with pytest.raises(Seq2SeqError, match="is a folder, not a checkpoint"):
        load_checkpoint(tmp_path)


def test_average_is_the_mean_of_weights(tmp_path):
    a, b = tiny_model(seed=1), tiny_model(seed=2)
    save_checkpoint(state_of(a), tmp_path / "a.pt")
    save_checkpoint(state_of(b), tmp_path / "b.pt")
    averaged = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    key = "encoder.0.self_attn.q_proj.weight"
    expected = (a.state_dict()[key] + b.state_dict()[key]) / 2
    torch.testing.assert_close(averaged["model"][key], expected)
    cfg = ModelConfig(d_model=32, n_heads=4, d_ff=64, encoder_layers=1, decoder_layers=1)
    small = build_model(cfg, VOCAB, VOCAB, PAD, joint_vocab=True)
    save_checkpoint(state_of(small), tmp_path / "c.pt")
    with pytest.raises(Seq2SeqError, match="does not match"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt"])


# ---- checksums ---------------------------------------------------------------------------

def write_raw(path, state, checksum=True):
    """torch.save a crafted state as format 2, with a valid checksum unless told otherwise."""
    full = {"format_version": FORMAT_VERSION, **state}
    if checksum:
        full["checksum"] = content_checksum(full)
    torch.save(full, path)
    return path


def test_damaged_bytes_never_load_silently(tmp_path):
    weights = {"w": torch.randn(32, 32), "b": torch.randn(32), "n": torch.tensor(7)}
    save_checkpoint({**state_of(tiny_model()), "model": weights}, tmp_path / "a.pt")
    data = (tmp_path / "a.pt").read_bytes()
    original = content_checksum(load_checkpoint(tmp_path / "a.pt"))
    loaded = 0
    for offset in range(0, len(data), 11):
        damaged = bytearray(data)
        damaged[offset] ^= 0x5A
        (tmp_path / "bad.pt").write_bytes(bytes(damaged))
        try:
            state = load_checkpoint(tmp_path / "bad.pt")
        except Seq2SeqError as error:
            assert "bad.pt" in str(error) and "\n" not in str(error)
            continue
        loaded += 1  # only bytes torch never reads (zip padding, timestamps) may change
        assert content_checksum(state) == original
    assert loaded < len(data) // 11 // 2


def test_zeroed_weights_are_a_checksum_mismatch(tmp_path):
    save_checkpoint(state_of(tiny_model()), tmp_path / "a.pt")
    data = bytearray((tmp_path / "a.pt").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 256] = bytes(256)
    (tmp_path / "a.pt").write_bytes(bytes(data))
    with pytest.raises(Seq2SeqError, match="a.pt: checksum mismatch"):
        load_checkpoint(tmp_path / "a.pt")


def test_format_1_loads_with_one_warning(tmp_path, capsys):
    torch.save({"format_version": 1, **state_of(tiny_model())}, tmp_path / "old.pt")
    for _ in range(2):
        assert load_checkpoint(tmp_path / "old.pt")["step"] == 3
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and "old.pt" in warning and "not verified" in warning


def test_non_finite_weights_are_never_written(tmp_path):
    save_checkpoint(state_of(tiny_model()), tmp_path / "a.pt")
    for bad in (float("nan"), float("inf")):
        model = tiny_model()
        with torch.no_grad():
            model.encoder[0].self_attn.q_proj.weight[0, 0] = bad
        with pytest.raises(Seq2SeqError, match="NaN or infinite"):
            save_checkpoint({**state_of(model), "step": 9}, tmp_path / "a.pt")
    assert load_checkpoint(tmp_path / "a.pt")["step"] == 3
    huge = {"w": torch.full((4,), 3e38)}  # finite, though its sum overflows
    save_checkpoint({**state_of(tiny_model()), "model": huge}, tmp_path / "huge.pt")


# ---- crafted checkpoints: one line each, never a traceback -------------------------------

WEIGHTS = {"w": torch.zeros(2)}
CRAFTED = [  # (change to a valid state, None = remove the key), part of the message
    ({"config": None}, "lacks config"),
    ({"model": None, "tokenizers": None}, "lacks model, tokenizers"),
    ({"config": [1]}, "config is a list"),
    ({"config": {"model": "big"}}, "entry 'model' is a string"),
    ({"model": [torch.zeros(1)]}, "model is a list"),
    ({"model": {"w": "x"}}, "model is a mapping whose entry 'w' is a string"),
    ({"model": {1: torch.zeros(1)}}, "entry 1 is a tensor"),
    ({"tokenizers": b"spm"}, "tokenizers is bytes"),
    ({"tokenizers": {"src": b"spm"}}, "tokenizers is a mapping without 'tgt'"),
    ({"tokenizers": {"src": "spm", "tgt": b"spm"}}, "entry 'src' is a string"),
    ({"step": "3"}, "step is a string ('3')"),
    ({"step": -1}, "step is an integer (-1)"),
    ({"step": True}, "step is a boolean"),
    ({"epoch": 1.5}, "epoch is a decimal number (1.5)"),
    ({"metrics": [91.2]}, "metrics is a list"),
    ({"train_state": "x"}, "train_state is a string"),
]


@pytest.mark.parametrize(("change", "message"), CRAFTED)
def test_crafted_fields_are_one_line(tmp_path, change, message):
    state = {"config": CONFIG, "model": WEIGHTS, "tokenizers": {"src": b"s", "tgt": b"s"},
             "step": 3, "epoch": 1, "metrics": {}, "train_state": {}}
    state.update(change)
    state = {k: v for k, v in state.items() if v is not None}
    with pytest.raises(Seq2SeqError) as error:
        load_checkpoint(write_raw(tmp_path / "x.pt", state))
    assert message in str(error.value) and str(error.value).startswith(str(tmp_path / "x.pt"))
    assert "\n" not in str(error.value)


VERSIONS = [  # format_version written, part of the message
    ("1", "format_version is a string ('1'), not a whole number"),
    (1.5, "format_version is a decimal number (1.5)"),
    (2.0, "format_version is a decimal number (2.0)"),
    (True, "format_version is a boolean"),
    (None, "format_version is missing (None)"),
    (0, "format 0 is not supported; this seq2seq reads formats 1 and 2"),
    (99, "format 99 is not supported; this seq2seq reads formats 1 and 2; it was written by a "
         "newer seq2seq"),
]


@pytest.mark.parametrize(("version", "message"), VERSIONS)
def test_format_version_messages_never_repeat_a_number(tmp_path, version, message):
    torch.save({"format_version": version, **state_of(tiny_model())}, tmp_path / "v.pt")
    with pytest.raises(Seq2SeqError) as error:
        load_checkpoint(tmp_path / "v.pt")
    text = str(error.value)
    assert message in text and "\n" not in text
    said = re.search(r"format (\S+) is not supported; this seq2seq reads formats (.*?)(;|$)", text)
    assert said is None or said[1] not in said[2].split(" and ")


def test_checksum_missing_or_of_the_wrong_type(tmp_path):
    state = state_of(tiny_model())
    with pytest.raises(Seq2SeqError, match="the checkpoint has no checksum"):
        load_checkpoint(write_raw(tmp_path / "a.pt", state, checksum=False))
    torch.save({"format_version": FORMAT_VERSION, **state, "checksum": 5}, tmp_path / "b.pt")
    with pytest.raises(Seq2SeqError, match="has an integer as checksum"):
        load_checkpoint(tmp_path / "b.pt")


def test_crafted_contents_fail_in_rebuild_with_one_line(tmp_path):
    config = {"data": {"train": "data/train", "dev": "data/dev"},
              "model": {"d_model": 32, "n_heads": 4}, "train": {"max_steps": 5}}
    state = {**state_of(tiny_model()), "config": config}
    with pytest.raises(Seq2SeqError, match=r"x.pt: tokenizers.src: not a valid SentencePiece"):
        rebuild(state, torch.device("cpu"), "x.pt")
    tok = train_tokenizer(["the cat sat on the mat", "a dog ran"] * 20, vocab_size=30,
                          threads=1)
    spm = {"src": tok.model_bytes, "tgt": tok.model_bytes}
    with pytest.raises(Seq2SeqError, match="x.pt: the weights do not fit its own config"):
        rebuild({**state, "tokenizers": spm}, torch.device("cpu"), "x.pt")
    weights = {**state["model"], "w": torch.tensor([float("nan")])}
    with pytest.raises(Seq2SeqError, match="x.pt: the weight w is NaN or infinite"):
        rebuild({**state, "tokenizers": spm, "model": weights}, torch.device("cpu"), "x.pt")
    with pytest.raises(Seq2SeqError, match="x.pt config: model.d_model"):
        rebuild({**state, "tokenizers": spm, "config": {**config, "model": {"d_model": -1}}},
                torch.device("cpu"), "x.pt")


# ---- files that are not checkpoints say what they are ------------------------------------

def zipped(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


NOT_CHECKPOINTS = [  # file name, contents, what the message calls it
    ("config.yaml", b"data:\n  train: data/train\n", "a YAML file"),
    ("run.pt", b"model:\n  d_model: 32\n", "a YAML file"),
    ("metrics.json", b'{"step": 3}\n', "a JSON file"),
    ("rows.pt", b'[{"step": 3}]', "a JSON file"),
    ("spm.model", b"\n\x0b\n\x05<unk>\x15\x00\x00\x00\x00\x18\x02", "a SentencePiece model"),
    ("train.de", "die Katze schl\u00e4ft .\n".encode(), "a text file"),
    ("empty.pt", b"", "an empty file"),
    ("train.gz", gzip.compress(b"hello\n"), "a gzip file"),
    ("state.pkl", pickle.dumps({"a": 1}), "a Python pickle"),
    ("data.zip", zipped({"train.de": "die Katze ."}), "a zip archive"),
]


@pytest.mark.parametrize(("name", "data", "kind"), NOT_CHECKPOINTS)
def test_other_files_are_named_for_what_they_are(tmp_path, name, data, kind):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(Seq2SeqError) as error:
        load_checkpoint(tmp_path / name)
    text = str(error.value)
    assert text.startswith(f"{tmp_path / name} is {kind}")
    assert text.endswith(", not a checkpoint; give a *.pt file written by `seq2seq train`")
    assert ("run code" in text) == ("pickle" in kind)


def test_a_plain_pickle_with_code_is_refused_unread(tmp_path):
    ran = []

    class Evil:
        def __reduce__(self):
            return (ran.append, ("ran",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"config": Evil()}))
    with pytest.raises(Seq2SeqError, match="a Python pickle .left unread: a pickle can run"):
        load_checkpoint(tmp_path / "evil.pt")
    assert ran == []


def test_damaged_start_is_not_called_another_kind(tmp_path):
    save_checkpoint(state_of(tiny_model()), tmp_path / "a.pt")
    data = bytearray((tmp_path / "a.pt").read_bytes())
    data[:8] = bytes(8)
    (tmp_path / "a.pt").write_bytes(bytes(data))
    with pytest.raises(Seq2SeqError, match="a.pt is not a checkpoint: it does not start like one"):
        load_checkpoint(tmp_path / "a.pt")


# ---- averaging: one model, one vocabulary, finite weights, never over an input -----------

def differing_checkpoint(kind, model):
    if kind == "tokenizer":
        return write_raw_state(state_of(model), tokenizers={"src": b"spm", "tgt": b"other"})
    if kind == "config":
        return write_raw_state(state_of(model), config={"model": {"d_model": 32, "dropout": 0.3}})
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    weights["encoder.0.self_attn.q_proj.weight"][0, 0] = float("nan")
    return write_raw_state(state_of(model), model=weights)


def write_raw_state(state, **change):
    return {**state, **change}


@pytest.mark.parametrize(("kind", "message"), [
    ("tokenizer", r"b.pt has a different target tokenizer \(vocabulary\) than"),
    ("config", "b.pt has a different model config than .*model.dropout: None -> 0.3"),
    ("nan", "b.pt holds NaN or infinite weights .encoder.0.self_attn.q_proj.weight"),
])
def test_average_refuses_checkpoints_that_differ(tmp_path, kind, message):
    save_checkpoint(state_of(tiny_model(seed=1)), tmp_path / "a.pt")
    write_raw(tmp_path / "b.pt", differing_checkpoint(kind, tiny_model(seed=2)))
    with pytest.raises(Seq2SeqError, match=f"average: .*{message}"):
        write_average([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "avg.pt")
    assert not (tmp_path / "avg.pt").exists()


def test_average_never_writes_over_an_input(tmp_path, monkeypatch):
    save_checkpoint(state_of(tiny_model(seed=1)), tmp_path / "a.pt")
    save_checkpoint(state_of(tiny_model(seed=2)), tmp_path / "b.pt")
    (tmp_path / "link.pt").symlink_to(tmp_path / "a.pt")
    os.link(tmp_path / "b.pt", tmp_path / "hard.pt")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")}
    inputs = [tmp_path / "a.pt", Path("../b.pt")]
    for output in (Path("../a.pt"), tmp_path / "link.pt", tmp_path / "hard.pt",
                   tmp_path / "sub/../b.pt"):
        with pytest.raises(Seq2SeqError, match="is also the input"):
            write_average(inputs, output)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")} == before
    with pytest.raises(Seq2SeqError, match="is a folder; give a file name"):
        write_average(inputs, tmp_path)
    write_average(inputs, Path("avg.pt"))
    assert load_checkpoint(Path("avg.pt"))["averaged_from"] == [str(p) for p in inputs]


def test_average_keeps_whole_number_tensors_of_the_first(tmp_path):
    for name, (w, n) in {"a.pt": (1.0, 3), "b.pt": (2.0, 8)}.items():
        weights = {"w": torch.full((2,), w, dtype=torch.float16), "n": torch.tensor([n])}
        save_checkpoint({**state_of(tiny_model()), "model": weights}, tmp_path / name)
    averaged = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])["model"]
    assert averaged["w"].dtype == torch.float16 and averaged["w"].tolist() == [1.5, 1.5]
    assert averaged["n"].tolist() == [3]
