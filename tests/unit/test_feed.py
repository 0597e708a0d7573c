"""Feeding the loop: the epoch's steps from the store, and batches built ahead on a thread
(the GPU path, run here on the CPU) equal to those built in line."""

import threading

import pytest
import torch

import seq2seq.training.loop
from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import TrainConfig, load_config
from seq2seq.data import TrainSet, token_batches
from seq2seq.errors import Seq2SeqError
from seq2seq.store import build_store, built_from
from seq2seq.tokenizer import train_tokenizer
from seq2seq.training.distributed import World
from seq2seq.training.feed import Feed, batch_of, epoch_steps
from seq2seq.training.loop import train
from tests.conftest import tiny_config_yaml, write_slice

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    data = write_slice(tmp_path_factory.mktemp("feed"), n_train=120, n_dev=4)
    src = (data / "train.src").read_text().splitlines()
    tgt = (data / "train.tgt").read_text().splitlines()
    tok = train_tokenizer(src + tgt, vocab_size=100)
    folder = data.parent / "store"
    store, _ = build_store(folder, [("toy", zip(src, tgt, strict=True))], tok, tok, 64,
                           built_from(tok, tok, [], 64), log=lambda _: None)
    return TrainSet(store, weights=(1.0,)), tok


def test_an_epoch_of_the_store_is_token_batches_of_its_lengths(train_set):
    train, _ = train_set
    settings = TrainConfig(batch_tokens=200, accumulate=2, seed=4)
    steps = epoch_steps(train, settings, World(), epoch=3)
    lens = train.store.lens
    reference = token_batches(lens["src"].tolist(), lens["tgt"].tolist(), 200, 4, 3)
    assert [m.tolist() for step in steps for m in step] == reference
    assert all(len(step) == 2 for step in steps[:-1])


def test_batches_built_ahead_on_a_thread_equal_those_built_in_line(train_set):
    train, tok = train_set
    steps = epoch_steps(train, TrainConfig(batch_tokens=150), World(), epoch=0)

    def make(indices):
        return batch_of(train, tok, indices)

    with Feed(steps, make, CPU, ahead=0) as feed:
        inline = list(feed)
    with Feed(steps, make, CPU, ahead=2) as feed:
        ahead = list(feed)
        assert feed.waited >= 0.0
    assert len(inline) == len(ahead) == len(steps)
    for a, b in zip(inline, ahead, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x.src, y.src) and torch.equal(x.tgt_out, y.tgt_out)
            assert torch.equal(x.tgt_mask, y.tgt_mask) and x.n_tokens == y.n_tokens
    with Feed(steps, make, CPU, ahead=2) as feed:  # the loop stops early: the thread ends
        next(iter(feed))
    assert not any(t.name == "seq2seq-feed" for t in threading.enumerate())


def test_an_error_while_building_ahead_reaches_the_loop(train_set):
    train, tok = train_set
    steps = epoch_steps(train, TrainConfig(batch_tokens=150), World(), epoch=0)

    def make(indices):
        if 7 in indices.tolist():
            raise Seq2SeqError("a batch that cannot be built")
        return batch_of(train, tok, indices)

    with pytest.raises(Seq2SeqError, match="cannot be built"), Feed(steps, make, CPU, 2) as feed:
        for _ in feed:
            pass


def test_training_with_batches_built_ahead_is_bit_identical(tmp_path, monkeypatch):
    data = write_slice(tmp_path, n_train=40, n_dev=4)
    runs, threads, build = {}, [], Feed._build
    monkeypatch.setattr(Feed, "_build", lambda feed: (threads.append(feed), build(feed)))
    for ahead in (0, 2):
        monkeypatch.setattr(seq2seq.training.loop, "ahead_for", lambda device, n=ahead: n)
        (tmp_path / str(ahead)).mkdir()
        config = load_config(tiny_config_yaml(tmp_path / str(ahead), data, max_steps=4,
                                              eval_every=100, batch_tokens=150),
                             ["model.dropout=0.2"])
        runs[ahead] = load_checkpoint(train(config, progress=False) / "last.pt")["model"]
        assert bool(threads) == bool(ahead)  # built ahead on a thread only when asked
    for key, value in runs[0].items():
        assert torch.equal(value, runs[2][key]), key
