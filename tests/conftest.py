"""Shared fixtures: a tiny model (d_model 32, two layers) and toy-data slices."""

from pathlib import Path

import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.model.build import build_model

ROOT = Path(__file__).resolve().parents[1]
PAD, UNK, BOS, EOS = 0, 1, 2, 3
VOCAB = 40


def tiny_model(attention: str = "scaled_dot", norm: str = "pre", dropout: float = 0.0,
               vocab: int = VOCAB, seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=32, n_heads=4, d_ff=64, encoder_layers=2, decoder_layers=2,
                      dropout=dropout, attention=attention, norm=norm, max_positions=64)
    return build_model(cfg, vocab, vocab, PAD, joint_vocab=True).eval()


def random_ids(batch: int, length: int, seed: int = 1, vocab: int = VOCAB) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, vocab, (batch, length), generator=g)


@pytest.fixture
def model():
    return tiny_model()


def write_slice(tmp_path: Path, n_train: int = 400, n_dev: int = 40) -> Path:
    """The first lines of the bundled toy data, as a small corpus in tmp_path/data."""
    out = tmp_path / "data"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_dev)):
        for side in ("src", "tgt"):
            lines = (ROOT / "data/toy" / f"{split}.{side}").read_text().splitlines()[:n]
            (out / f"{split}.{side}").write_text("\n".join(lines) + "\n")
    return out


def tiny_config_yaml(tmp_path: Path, data: Path, **train) -> Path:
    """A config for a seconds-long run on a toy slice; extra train keys override."""
    train_keys = {"run_dir": str(tmp_path / "run"), "max_steps": 6, "eval_every": 3,
                  "log_every": 2, "batch_tokens": 400, "warmup": 2, "lr": 0.003,
                  "eval_max_sentences": 8, "threads": 1, **train}
    lines = [
        "data:", f"  train: {data}/train", f"  dev: {data}/dev", f"  test: {data}/test",
        "tokenizer:", "  vocab_size: 120",
        "model:", "  d_model: 32", "  n_heads: 4", "  d_ff: 64", "  encoder_layers: 2",
        "  decoder_layers: 2", "  max_positions: 128",
        "train:", *[f"  {k}: {v}" for k, v in train_keys.items()],
        "decode:", "  beam_size: 2", "  batch_size: 16",
    ]
    path = tmp_path / "tiny.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
