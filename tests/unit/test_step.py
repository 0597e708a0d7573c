"""One optimizer step, built alone: its rate, its token normalisation, its checks."""

import pytest
import torch

from seq2seq.config import TrainConfig
from seq2seq.data import make_batch
from seq2seq.errors import Seq2SeqError
from seq2seq.training.distributed import World
from seq2seq.training.step import build_step
from tests.conftest import BOS, EOS, PAD, tiny_model

CPU = torch.device("cpu")
SRC = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
TGT = [[14, 15], [16, 17, 18, 19], [20]]


def step_for(seed: int = 0, **train):
    return build_step(tiny_model(seed=seed).train(), TrainConfig(device="cpu", **train), World(),
                      CPU)


def test_the_step_applies_the_rate_it_is_given():
    step = step_for()
    step.step([make_batch(SRC, TGT, PAD, BOS, EOS)], lr=1.25e-4)
    assert all(group["lr"] == 1.25e-4 for group in step.optimizer.param_groups)


def test_micro_batches_train_like_one_batch_of_their_tokens():
    """The loss is normalised by the step's target tokens, not per micro-batch."""
    whole, split = step_for(), step_for()
    whole.step([make_batch(SRC, TGT, PAD, BOS, EOS)], lr=1e-3)
    split.step([make_batch(SRC[:1], TGT[:1], PAD, BOS, EOS),
                make_batch(SRC[1:], TGT[1:], PAD, BOS, EOS)], lr=1e-3)
    # Adam's first moment after one step is (1 - beta1) times the gradient.
    for a, b in zip(whole.model.parameters(), split.model.parameters(), strict=True):
        torch.testing.assert_close(whole.optimizer.state[a]["exp_avg"],
                                   split.optimizer.state[b]["exp_avg"], rtol=1e-4, atol=1e-7)


def test_fp16_off_cuda_is_refused_when_the_step_is_built():
    with pytest.raises(Seq2SeqError, match="fp16 needs a CUDA device"):
        step_for(precision="fp16")


def test_auto_precision_is_resolved_once_when_the_step_is_built(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert step_for(precision="auto").precision == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert step_for(precision="auto").precision == "fp32"
