"""Shared fixtures: a tiny model (d_model 32, two layers) and toy-data slices."""

from pathlib import Path

import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.model.build import build_model
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared" / "data" / "multi30k"  # Multi30k's files, beside the repo
PAD, UNK, BOS, EOS = PAD_ID, UNK_ID, BOS_ID, EOS_ID  # the ids every tokenizer here uses
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


def assert_cached_decoding_matches_full(model, src, src_mask, tgt) -> None:
    """Step-by-step decoding with the model's cache equals one teacher-forced pass."""
    from seq2seq.model.masks import target_mask

    memory, _ = model.encode(src, src_mask)
    full, _ = model.decode(tgt, memory, src_mask, target_mask(tgt, PAD))
    cache = model.new_cache()
    steps = [model.decode(tgt[:, t : t + 1], memory, src_mask, None, cache)[0]
             for t in range(tgt.size(1))]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.length == tgt.size(1)


def assert_overfits_one_batch(model, lr: float, steps: int) -> None:
    """Training on one tiny batch drives the loss near zero and greedy search recalls it."""
    from seq2seq.data import make_batch
    from seq2seq.loss import TeacherForcedLoss
    from seq2seq.search import greedy_search

    src = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16]]
    tgt = [[20, 21, 22], [23, 24, 25, 26], [27, 28]]
    b = make_batch(src, tgt, PAD, BOS, EOS)
    loss_fn = TeacherForcedLoss(model.train(), label_smoothing=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss, _ = loss_fn(b.src, b.tgt_in, b.tgt_out, b.src_mask, b.tgt_mask)
        opt.zero_grad()
        (loss / b.n_tokens).backward()
        opt.step()
    assert loss.item() / b.n_tokens < 0.05
    model.eval()
    hyps = greedy_search(model, b.src, b.src_mask, BOS, EOS, torch.tensor([10, 10, 10]))
    assert hyps.tokens == tgt


class Uncached:
    """The same model decoding without a key/value cache: every step reruns the decoder
    over the whole prefix, which its 'cache' (the token ids so far) keeps per row."""

    class Prefix:
        def __init__(self):
            self.ids: torch.Tensor | None = None  # (N, t)

        def select(self, index: torch.Tensor) -> None:
            self.ids = self.ids[index]

        def copy_rows(self, src: torch.Tensor, dst: torch.Tensor) -> None:
            self.ids[dst] = self.ids[src]

    beams_share_memory = False  # the full decoder reruns on memory copied for every beam

    def __init__(self, model):
        self.model, self.pad_id, self.max_positions = model, model.pad_id, model.max_positions
        self.encode, self.logits, self.top_k = model.encode, model.logits, model.top_k

    def new_cache(self, capacity: int = 0) -> "Uncached.Prefix":
        return Uncached.Prefix()

    def decode(self, last, memory, src_mask, tgt_mask, cache):
        from seq2seq.model.masks import target_mask

        cache.ids = last if cache.ids is None else torch.cat([cache.ids, last], dim=1)
        hidden, _ = self.model.decode(cache.ids, memory, src_mask,
                                      target_mask(cache.ids, PAD))  # (N, t, D)
        return hidden[:, -1:], None


@pytest.fixture(scope="module")
def mirror() -> Path:
    """The reference Multi30k mirror (``<repo>/../shared/data/multi30k``); skip without it."""
    if not (MIRROR / "train.de.gz").is_file():
        pytest.skip(f"no Multi30k mirror at {MIRROR}")
    return MIRROR


def train_tiny(tmp: Path) -> tuple[Path, Path]:
    """A two-step tiny model trained on a toy slice in tmp: (best.pt, the slice's folder)."""
    from seq2seq.config import load_config
    from seq2seq.training.loop import train

    data = write_slice(tmp)
    run = train(load_config(tiny_config_yaml(tmp, data, max_steps=2, eval_every=2)),
                progress=False)
    return run / "best.pt", data
