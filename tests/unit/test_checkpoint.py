"""Checkpoints: round trip, atomic writes, safe loading, corrupt files, averaging."""

import io

import pytest
import torch

from seq2seq.checkpoint import (
    FORMAT_VERSION,
    average_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from seq2seq.config import ModelConfig
from seq2seq.errors import Seq2SeqError
from seq2seq.model.masks import padding_mask, target_mask
from seq2seq.model.transformer import build_model
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
