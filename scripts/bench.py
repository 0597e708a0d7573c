"""Speed benchmark on a CPU: training throughput, model FLOPs utilisation, decoding speed.

Usage, from the repository root (after `make install`):

    python scripts/bench.py [--quick] [--json] [--threads N] [--steps N]
                            [--data DIR | --mirror DIR] [--skip-train] [--skip-decode]

Everything runs in one process with one thread count: the reference model (the project's
default ModelConfig: d_model 256, 3 + 3 layers, 4 heads, feed-forward 1024, tied
embeddings, dropout 0.1) trained on Multi30k de->en with a joint 8000-piece unigram
SentencePiece vocabulary and batches of 4096 target tokens, through Trainer.train_step
itself; a square matmul for the machine's peak; and decoding of test_2016_flickr.de with
a randomly initialised model of the same shape. The tokenizer and token ids are cached in
runs/bench-cache/, so only the first run trains SentencePiece.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch

from seq2seq.accounting import training_flops
from seq2seq.config import DataConfig, DecodeConfig, ModelConfig, TokenizerConfig, TrainConfig
from seq2seq.corpora.multi30k import download_multi30k, multi30k_paths
from seq2seq.data import (
    EncodedCorpus,
    encode_parallel,
    filter_long,
    make_batch,
    make_source,
    padding_fraction,
    read_lines,
    read_parallel,
    token_batches,
)
from seq2seq.distributed import World
from seq2seq.errors import Seq2SeqError
from seq2seq.loss import TeacherForcedLoss
from seq2seq.model.transformer import Transformer, build_model, count_parameters
from seq2seq.runtime import set_threads
from seq2seq.search import beam_search, greedy_search, max_output_lengths
from seq2seq.tokenizer import Tokenizer, train_tokenizer
from seq2seq.train import Trainer, TrainState, learning_rate
from seq2seq.translate import Translator

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = ROOT.parent / "shared" / "data" / "multi30k"
CPU = torch.device("cpu")
STEP_LENGTHS = (10, 25, 50, 100)  # output lengths for the per-step decoding timings
NO_EOS = -1  # an eos_id no token has: every hypothesis runs to its length limit


# ---------------------------------------------------------------- data


def multi30k_folder(data: Path | None, mirror: Path | None) -> Path:
    """The folder holding Multi30k's plain-text files: `data`, or data/multi30k after fetching."""
    if data is not None:
        return data
    if mirror is None and DEFAULT_MIRROR.is_dir():
        mirror = DEFAULT_MIRROR
    dest = ROOT / "data" / "multi30k"
    download_multi30k(dest, mirror=mirror, progress=False)
    return dest


def cached_tokenizer(lines: list[str], cache: Path, cfg: TokenizerConfig) -> Tokenizer:
    """A SentencePiece model trained on `lines`, kept in `cache` under a hash of text + settings."""
    key = hashlib.sha256(f"{cfg.vocab_size}:{cfg.model_type}:{cfg.character_coverage}".encode())
    key.update("\n".join(lines).encode())
    path = cache / f"spm-{key.hexdigest()[:16]}.model"
    if path.is_file():
        return Tokenizer.load(path)
    tok = train_tokenizer(lines, cfg.vocab_size, cfg.model_type, cfg.character_coverage)
    tok.save(path)
    return tok


def load_multi30k(folder: Path, cache: Path) -> tuple[Tokenizer, EncodedCorpus, list[str]]:
    """Joint tokenizer, length-filtered de->en training ids, and the test_2016_flickr.de lines."""
    text = read_parallel(multi30k_paths(folder, "train", "de"),
                         multi30k_paths(folder, "train", "en"))
    tok = cached_tokenizer(text.src + text.tgt, cache, TokenizerConfig())
    corpus, _ = filter_long(encode_parallel(text, tok, tok, cache), DataConfig().max_len)
    return tok, corpus, read_lines(multi30k_paths(folder, "test_2016_flickr", "de"))


def training_batches(corpus: EncodedCorpus, batch_tokens: int, seed: int, n: int
                     ) -> list[list[int]]:
    """The first n batches (sentence indices) of epoch 0, as training draws them; cycled if short."""
    batches = token_batches([len(s) for s in corpus.src], [len(t) for t in corpus.tgt],
                            batch_tokens, seed, epoch=0)
    return [batches[i % len(batches)] for i in range(n)]


def reference_model(cfg: ModelConfig, tok: Tokenizer, seed: int) -> Transformer:
    """A freshly initialised model of shape `cfg` over the joint vocabulary of `tok`."""
    torch.manual_seed(seed)
    return build_model(cfg, tok.vocab_size, tok.vocab_size, tok.pad_id, joint_vocab=True)


# ---------------------------------------------------------------- training


def step_trainer(model: Transformer, cfg: TrainConfig) -> Trainer:
    """A Trainer holding just what Trainer.train_step reads, so the timed step is training's own.

    Trainer.__init__ would also claim a run directory and load a corpus; the loss module,
    optimizer and scaler are built with the arguments it uses (one process, no compile).
    """
    trainer = Trainer.__new__(Trainer)
    trainer.cfg, trainer.world, trainer.device = cfg, World(), CPU
    trainer.model, trainer.state = model.train(), TrainState()
    trainer.loss_module = TeacherForcedLoss(model, cfg.label_smoothing)
    trainer.optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate(1, cfg.lr, cfg.warmup), betas=cfg.betas,
        eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    trainer.scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
    return trainer


def time_training(trainer: Trainer, corpus: EncodedCorpus, tok: Tokenizer,
                  batches: list[list[int]], warmup: int) -> dict:
    """Train on batches[:warmup] untimed, then time the optimizer steps on the rest.

    Each step builds its Batch and calls trainer.train_step, as Trainer.fit does. Returns
    target tokens per second, training FLOPs (seq2seq.accounting, real lengths, so padding
    is not counted as useful work) per second, padding fraction and peak resident memory.
    """
    def step(indices: list[int]) -> tuple[int, float]:
        batch = make_batch([corpus.src[i] for i in indices], [corpus.tgt[i] for i in indices],
                           tok.pad_id, tok.bos_id, tok.eos_id)
        result = trainer.train_step([batch])
        trainer.state.step += 1
        return batch.n_tokens, (float("nan") if result is None else result[0].item())

    for indices in batches[:warmup]:
        step(indices)
    timed = batches[warmup:]
    start = time.perf_counter()
    tokens, nll = map(sum, zip(*(step(indices) for indices in timed), strict=True))
    seconds = time.perf_counter() - start
    flops = training_flops(trainer.model, [len(corpus.src[i]) + 1 for b in timed for i in b],
                           [len(corpus.tgt[i]) + 1 for b in timed for i in b])
    return {"precision": trainer.cfg.precision, "warmup_steps": warmup, "steps": len(timed),
            "seconds": seconds, "target_tokens": tokens, "tokens_per_s": tokens / seconds,
            "seconds_per_step": seconds / len(timed), "train_flops": flops,
            "gflops_per_s": flops / seconds / 1e9, "nll_per_token": nll / tokens,
            "padding_fraction": padding_fraction(timed, [len(s) for s in corpus.src],
                                                 [len(t) for t in corpus.tgt]),
            "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss: KiB on Linux, B on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


# ---------------------------------------------------------------- the machine's peak


def matmul_gflops(n: int, dtype: torch.dtype, reps: int) -> float:
    """Best-of-reps GFLOP/s of an (n x n) @ (n x n) product in `dtype` (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = a @ b  # first call: library set-up, not timed
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def bf16_problem() -> str | None:
    """Why bf16 autocast cannot be benchmarked here, or None when it can."""
    try:
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        native = True  # no way to ask: let the trial below decide
    if not native:
        return "this CPU has no native bf16 matrix instructions (oneDNN would emulate them)"
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.ones(8, 8) @ torch.ones(8, 8)
    except RuntimeError as error:
        return f"bf16 autocast failed: {str(error).splitlines()[0]}"
    return None


# ---------------------------------------------------------------- decoding


class CountingTranslator(Translator):
    """A Translator that keeps the token ids it was given and generated, for counting."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inputs: list[list[int]] = []
        self.outputs: list[list[int]] = []

    def translate_ids(self, ids: list[list[int]], beam_size: int, alpha: float, ratio: float,
                      batch_size: int) -> list[list[int]]:
        out = super().translate_ids(ids, beam_size, alpha, ratio, batch_size)
        self.inputs, self.outputs = ids, out
        return out


def time_translation(model: Transformer, tok: Tokenizer, sentences: list[str],
                     beam_size: int) -> dict:
    """Sentences and generated target tokens per second of Translator.translate.

    Uses DecodeConfig's defaults otherwise (batch 64, max_len_ratio 1.5). Also returns the
    fraction of outputs that stopped at their length limit instead of at EOS.
    """
    decode = DecodeConfig(beam_size=beam_size)
    translator = CountingTranslator(model.eval(), tok, tok, decode, CPU)
    translator.translate(sentences[:4])  # library set-up, not timed
    start = time.perf_counter()
    translator.translate(sentences)
    seconds = time.perf_counter() - start
    _, src_mask = make_source(translator.inputs, tok.pad_id, tok.eos_id)
    limits = max_output_lengths(src_mask, decode.max_len_ratio, model.max_positions).tolist()
    generated = [len(t) for t in translator.outputs]
    at_limit = sum(n >= limit for n, limit in zip(generated, limits, strict=True))
    return {"beam_size": beam_size, "sentences": len(sentences), "seconds": seconds,
            "sentences_per_s": len(sentences) / seconds, "generated_tokens": sum(generated),
            "tokens_per_s": sum(generated) / seconds,
            "at_length_limit": at_limit / max(len(sentences), 1)}


@torch.no_grad()
def time_per_step(model: Transformer, tok: Tokenizer, src_ids: list[list[int]],
                  beam_size: int, lengths: tuple[int, ...]) -> dict:
    """Milliseconds per decoder step when every output runs to exactly L tokens.

    EOS is disabled (eos_id = NO_EOS), so the batch never shrinks; the encoder pass, timed
    on its own, is subtracted. Steps stay flat across L when the key/value cache works.
    """
    model.eval()
    src, src_mask = make_source(src_ids, tok.pad_id, tok.eos_id)  # (B, S), (B, 1, 1, S)
    encode_s = min(_seconds(lambda: model.encode(src, src_mask)) for _ in range(3))

    def search(length: int) -> None:
        max_lens = torch.full((src.size(0),), length, dtype=torch.long)  # (B,)
        if beam_size == 1:
            greedy_search(model, src, src_mask, tok.bos_id, NO_EOS, max_lens)
        else:
            beam_search(model, src, src_mask, tok.bos_id, NO_EOS, max_lens, beam_size)

    search(2)  # library set-up, not timed
    ms = {length: (_seconds(lambda n=length: search(n)) - encode_s) / length * 1e3
          for length in lengths}
    return {"beam_size": beam_size, "batch": len(src_ids), "encode_ms": encode_s * 1e3,
            "ms_per_step": ms}


def _seconds(fn) -> float:
    """Wall-clock seconds of one call of fn()."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
