"""Timing primitives for the speed benchmark (bench/bench.py).

A training step through Trainer.train_step itself, the machine's matmul peak, decoding
throughput through Translator, and milliseconds per decoder step at a fixed output length.
Each returns plain numbers; what to run and how to report it is the benchmark's business.
"""

import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch

from seq2seq.config import DecodeConfig, TrainConfig
from seq2seq.data import EncodedCorpus, make_batch, make_source, padding_fraction
from seq2seq.fast import accelerate
from seq2seq.inspection.accounting import training_flops
from seq2seq.loss import TeacherForcedLoss
from seq2seq.model.transformer import Transformer
from seq2seq.search import beam_search, greedy_search, max_output_lengths
from seq2seq.tokenizer import Tokenizer
from seq2seq.training.distributed import World
from seq2seq.training.loop import Trainer
from seq2seq.training.progress import TrainState
from seq2seq.training.schedule import adamw, learning_rate
from seq2seq.translate import Translator

CPU = torch.device("cpu")
NO_EOS = -1  # an eos_id no token has: every hypothesis runs to its length limit


# ---------------------------------------------------------------- training


def step_trainer(model: Transformer, cfg: TrainConfig) -> Trainer:
    """A Trainer holding just what Trainer.train_step reads, so the timed step is training's own.

    Trainer.__init__ would also claim a run directory and load a corpus; the loss module,
    optimizer and scaler are built with the arguments it uses (one process, no compile;
    the fast path when cfg.fast).
    """
    trainer = Trainer.__new__(Trainer)
    trainer.cfg, trainer.world, trainer.device = cfg, World(), CPU
    trainer.model, trainer.state, trainer.done = model.train(), TrainState(), 0.0
    loss = TeacherForcedLoss(model, cfg.label_smoothing)
    trainer.loss_module = accelerate(loss) if cfg.fast else loss
    trainer.optimizer = adamw(model, cfg, CPU, learning_rate(1, cfg.lr, cfg.warmup))
    trainer.scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
    return trainer


def time_training(trainer: Trainer, corpus: EncodedCorpus, tok: Tokenizer,
                  batches: list[list[int]], warmup: int,
                  probe: Callable[[], float] | None = None, block: int = 5) -> dict:
    """Train on batches[:warmup] untimed, then time the optimizer steps on the rest.

    Each step builds its Batch and calls trainer.train_step, as Trainer.fit does. Returns
    target tokens per second, training FLOPs (seq2seq.inspection.accounting, real
    lengths, so padding is not counted as useful work) per second, padding fraction and
    peak resident memory.
    With probe (a matmul's GFLOP/s), the timed steps run in blocks of `block` with a probe
    just before each, and "paired_mfu" is the median over blocks of the block's GFLOP/s
    over its probe's: on a shared host whose speed drifts, a ratio of two rates measured
    seconds apart moves less than one against a peak taken before training.
    """
    def step(indices: list[int]) -> tuple[int, float]:
        batch = make_batch([corpus.src[i] for i in indices], [corpus.tgt[i] for i in indices],
                           tok.pad_id, tok.bos_id, tok.eos_id)
        nll, skipped, _ = trainer.train_step([batch])
        trainer.state.step += 1
        return batch.n_tokens, (float("nan") if skipped.item() else nll.item())

    def flops(part: list[list[int]]) -> float:
        return training_flops(trainer.model, [len(corpus.src[i]) + 1 for b in part for i in b],
                              [len(corpus.tgt[i]) + 1 for b in part for i in b])

    for indices in batches[:warmup]:
        step(indices)
    timed = batches[warmup:]
    size = block if probe is not None else max(len(timed), 1)
    tokens = nll = seconds = total = 0.0
    ratios = []
    for start in range(0, len(timed), size):
        part = timed[start : start + size]
        peak = probe() if probe is not None else None
        began = time.perf_counter()
        for indices in part:
            n, loss = step(indices)
            tokens, nll = tokens + n, nll + loss
        took, part_flops = time.perf_counter() - began, flops(part)
        seconds, total = seconds + took, total + part_flops
        if peak is not None:
            ratios.append(part_flops / took / 1e9 / peak)
    row = {"precision": trainer.cfg.precision, "warmup_steps": warmup, "steps": len(timed),
           "seconds": seconds, "target_tokens": tokens, "tokens_per_s": tokens / seconds,
           "seconds_per_step": seconds / len(timed), "train_flops": total,
           "gflops_per_s": total / seconds / 1e9, "nll_per_token": nll / tokens,
           "padding_fraction": padding_fraction(timed, [len(s) for s in corpus.src],
                                                [len(t) for t in corpus.tgt]),
           "peak_rss_mib": peak_rss_mib()}
    if ratios:
        row["paired_mfu"], row["paired_mfu_blocks"] = statistics.median(ratios), ratios
    return row


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss: KiB on Linux, B on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


# ---------------------------------------------------------------- the machine's peak


def cpu_name() -> str:
    """The processor's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    """A Translator that keeps the token ids of its last translate() call, for counting."""

    def translate_ids(self, ids: list[list[int]], beam_size: int, alpha: float, ratio: float,
                      batch_size: int) -> list[list[int]]:
        out = super().translate_ids(ids, beam_size, alpha, ratio, batch_size)
        self.inputs, self.outputs = ids, out
        return out


def time_translation(model: Transformer, tok: Tokenizer, sentences: list[str],
                     beam_size: int) -> dict:
    """Sentences and generated target tokens per second of Translator.translate.

    Uses DecodeConfig's defaults otherwise (batch 128, max_len_ratio 1.5). Also returns the
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
