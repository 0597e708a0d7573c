"""Speed benchmark on a CPU: training throughput, model FLOPs utilisation, decoding speed.

Usage, from the repository root (after `make install`):

    python bench/bench.py [--quick] [--json] [--threads N] [--steps N]
                            [--data DIR | --mirror DIR] [--skip-train] [--skip-decode]
                            [--skip-research] [--plain]

Everything runs in one process with one thread count: the reference model (the project's
default ModelConfig: d_model 256, 3 + 3 layers, 4 heads, feed-forward 1024, tied
embeddings, dropout 0.1) trained on Multi30k de->en with a joint 8000-piece unigram
SentencePiece vocabulary and batches of 4096 target tokens, through training's TrainStep
itself; a square matmul for the machine's peak; and decoding of test_2016_flickr.de with
a randomly initialised model of the same shape, with the research rows (sampling, forced
scoring, an ensemble of two against one; bench/research.py). The tokenizer is cached in
runs/bench-cache/, so only the first run trains SentencePiece.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from bench.research import bench_research, research_rows
from bench.timing import (
    bf16_problem,
    cpu_name,
    matmul_gflops,
    peak_rss_mib,
    time_per_step,
    time_training,
    time_translation,
    training_step,
)
from seq2seq.config import DataConfig, DecodeConfig, ModelConfig, TokenizerConfig, TrainConfig
from seq2seq.corpora.multi30k import download_multi30k, multi30k_paths
from seq2seq.data import (
    EncodedCorpus,
    encode_parallel,
    filter_long,
    read_lines,
    read_parallel,
    token_batches,
)
from seq2seq.errors import Seq2SeqError
from seq2seq.fast import accelerate
from seq2seq.model.build import build_model
from seq2seq.model.transformer import Transformer, count_parameters
from seq2seq.runtime import physical_cores, set_threads
from seq2seq.tokenizer import Tokenizer, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = ROOT.parent / "shared" / "data" / "multi30k"
STEP_LENGTHS = (10, 25, 50, 100)  # output lengths for the per-step decoding timings


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
    corpus, _ = filter_long(encode_parallel(text, tok, tok), DataConfig().max_len)
    return tok, corpus, read_lines(multi30k_paths(folder, "test_2016_flickr", "de"))


def training_batches(corpus: EncodedCorpus, batch_tokens: int, seed: int, n: int
                     ) -> list[list[int]]:
    """The first n batches (sentence indices) of epoch 0 in training's order, cycled if short."""
    batches = token_batches([len(s) for s in corpus.src], [len(t) for t in corpus.tgt],
                            batch_tokens, seed, epoch=0)
    return [batches[i % len(batches)] for i in range(n)]


def reference_model(cfg: ModelConfig, tok: Tokenizer, seed: int, fast: bool) -> Transformer:
    """A freshly initialised model of shape `cfg` over the joint vocabulary of `tok`.

    Built by the build_model that training and Translator use; on the fast path when fast.
    """
    torch.manual_seed(seed)
    model = build_model(cfg, tok.vocab_size, tok.vocab_size, tok.pad_id, joint_vocab=True)
    return accelerate(model) if fast else model


# ---------------------------------------------------------------- the whole benchmark


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much of each measurement to run."""

    warmup: int = 5  # untimed training steps per precision
    steps: int = 30  # timed training steps per precision
    matmul_n: int = 2048  # side of the square matmul for the peak
    matmul_reps: int = 5  # best of this many
    block: int = 5  # timed training steps between two matmul probes (paired MFU)
    probe_reps: int = 3  # a probe is the best of this many matmuls
    decode_sentences: int = 1000  # test sentences translated (every k-th when fewer than all)
    step_batch: int = 64  # sentences in the per-step decoding timings
    step_lengths: tuple[int, ...] = STEP_LENGTHS
    skip_train: bool = False
    skip_decode: bool = False
    skip_research: bool = False


def measure(tok: Tokenizer, corpus: EncodedCorpus, test: list[str], model_cfg: ModelConfig,
            train_cfg: TrainConfig, plan: Plan, log) -> dict:
    """Matmul peak, training and decoding, in this process; returns a JSON-able dict."""
    model = reference_model(model_cfg, tok, train_cfg.seed, train_cfg.fast)
    result = {"fast": train_cfg.fast, "threads": torch.get_num_threads(),
              "physical_cores": physical_cores(),
              "load_average_at_start": os.getloadavg()[0], "torch": torch.__version__,
              "cpu": f"{cpu_name()}, {torch.backends.cpu.get_cpu_capability()}",
              "model": {**dataclasses.asdict(model_cfg), "vocab_size": tok.vocab_size,
                        "parameters": count_parameters(model)},
              "batch_tokens": train_cfg.batch_tokens}
    del model
    bf16 = bf16_problem()
    log(f"matmul peak: {plan.matmul_n}^2, best of {plan.matmul_reps}")
    peak = {"fp32": matmul_gflops(plan.matmul_n, torch.float32, plan.matmul_reps)}
    if bf16 is None:
        peak["bf16"] = matmul_gflops(plan.matmul_n, torch.bfloat16, plan.matmul_reps)
    result["peak_gflops"], result["bf16_skipped"] = peak, bf16
    if not plan.skip_train:
        result["train"] = bench_training(tok, corpus, model_cfg, train_cfg, plan, peak, log)
    if not plan.skip_decode:
        result["decode"] = bench_decoding(tok, test, model_cfg, train_cfg, plan, log)
    if not plan.skip_research:
        stride = max(1, len(test) // max(plan.decode_sentences, 1))
        seed = train_cfg.seed
        result["research"] = bench_research(
            reference_model(model_cfg, tok, seed, train_cfg.fast),
            reference_model(model_cfg, tok, seed + 1, train_cfg.fast), tok,
            test[::stride][: plan.decode_sentences], log)
    result["notes"] = notes(result, len(test))
    return result


def bench_training(tok: Tokenizer, corpus: EncodedCorpus, model_cfg: ModelConfig,
                   train_cfg: TrainConfig, plan: Plan, peak: dict, log) -> dict:
    """time_training for each precision in `peak`, a fresh model each, on the same batches."""
    batches = training_batches(corpus, train_cfg.batch_tokens, train_cfg.seed,
                               plan.warmup + plan.steps)
    out = {"rss_before_mib": peak_rss_mib(), "block": plan.block, "probe_reps": plan.probe_reps}
    for precision in peak:
        log(f"training {precision}: {plan.warmup} warm-up + {plan.steps} timed steps")
        cfg = dataclasses.replace(train_cfg, precision=precision)
        step = training_step(reference_model(model_cfg, tok, cfg.seed, cfg.fast), cfg)
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        row = time_training(step, cfg, corpus, tok, batches, plan.warmup, block=plan.block,
                            probe=lambda d=dtype: matmul_gflops(plan.matmul_n, d, plan.probe_reps))
        row["mfu"] = row["gflops_per_s"] / peak[precision]
        out[precision] = row
        del step
    return out


def bench_decoding(tok: Tokenizer, test: list[str], model_cfg: ModelConfig,
                   train_cfg: TrainConfig, plan: Plan, log) -> dict:
    """Translate (a strided subset of) `test` greedy and beam 5; then per-step timings."""
    model = reference_model(model_cfg, tok, train_cfg.seed, train_cfg.fast).eval()
    stride = max(1, len(test) // max(plan.decode_sentences, 1))
    subset = test[::stride][: plan.decode_sentences]
    out = {"search": [], "per_step": []}
    for beam in (1, 5):
        log(f"decoding {len(subset)} sentences, beam {beam}")
        out["search"].append(time_translation(model, tok, subset, beam))
    ids = tok.encode(test[: plan.step_batch])
    for beam in (1, 5):
        log(f"decoding {len(ids)} sentences to lengths {plan.step_lengths}, beam {beam}, no EOS")
        out["per_step"].append(time_per_step(model, tok, ids, beam, plan.step_lengths))
    return out


def notes(result: dict, n_test: int) -> list[str]:
    """What a reader needs to know to read the numbers right."""
    out = []
    peak, load = result["peak_gflops"], result["load_average_at_start"]
    if load >= 1.0:
        out.append(f"The 1-minute load average was {load:.1f} when the benchmark started: other "
                   "processes may have shared the CPU, which makes every number here low and "
                   "noisy (small decoding steps suffer most).")
    if result["bf16_skipped"]:
        out.append(f"bf16 skipped: {result['bf16_skipped']}.")
    elif peak["bf16"] < peak["fp32"]:
        out.append("bf16 matmul is slower than fp32 on this CPU: bf16 autocast cannot speed "
                   "training up here.")
    if "train" in result:
        out.append("MFU = training FLOPs (seq2seq.inspection.accounting: matrix products "
                   "only, 3 x forward, real lengths, so padding is not useful work) per second / "
                   "the measured "
                   "matmul peak of the same precision and thread count. paired MFU: the timed "
                   f"steps run in blocks of {result['train']['block']}, each just after a "
                   "matmul probe (the same product, best of "
                   f"{result['train']['probe_reps']}); it is the median over blocks of the "
                   "block's FLOP rate over its probe's, which a host whose speed drifts "
                   "during the run moves less.")
        out.append("RSS high-water is the process's peak resident memory (ru_maxrss) so far; "
                   f"before training it was {result['train']['rss_before_mib']:.0f} MiB "
                   "(data, tokenizer, and SentencePiece training on a first run).")
    if "decode" in result:
        search = result["decode"]["search"]
        limit = ", ".join(f"{s['at_length_limit']:.0%} ({_search_name(s)})" for s in search)
        ratio = DecodeConfig().max_len_ratio
        out.append(f"Decoding uses a RANDOMLY INITIALISED model, which rarely emits EOS: {limit} "
                   f"of outputs ran to the length limit ({ratio} x source + 10), so sentences/s "
                   "is a pessimistic bound for a trained model, which stops earlier; ms per "
                   "step carries over to a trained model of this shape.")
        if search and search[0]["sentences"] < n_test:
            n = search[0]["sentences"]
            eta = ", ".join(f"{n_test / s['sentences_per_s']:.0f} s ({_search_name(s)})"
                            for s in search)
            out.append(f"Translated a strided subset, {n} of the {n_test} test sentences; all "
                       f"{n_test} would take about {eta}.")
        out.append("Per-step timings: EOS disabled, so every output has exactly L tokens; the "
                   "encoder pass is subtracted. Flat across L means the key/value cache works.")
    return out


def _search_name(row: dict) -> str:
    return "greedy" if row["beam_size"] == 1 else f"beam {row['beam_size']}"


# ---------------------------------------------------------------- report and command line


def format_report(result: dict) -> str:
    """The result as text tables, one section per measurement, then the notes."""
    m, peak = result["model"], result["peak_gflops"]
    lines = [f"seq2seq benchmark: {result['cpu']}, {result['threads']} threads "
             f"({result['physical_cores']} physical cores), torch {result['torch']}",
             f"model: d_model {m['d_model']}, {m['encoder_layers']}+{m['decoder_layers']} layers, "
             f"{m['n_heads']} heads, feed-forward {m['d_ff']}, vocabulary {m['vocab_size']}, "
             f"tied {m['tie_embeddings']}, dropout {m['dropout']}; {m['parameters']:,} parameters",
             "path: " + ("fast (seq2seq/fast)" if result.get("fast", True)
                         else "plain (train.fast false)"),
             "matmul peak: " + ", ".join(f"{p} {g:.1f} GFLOP/s" for p, g in peak.items())]
    if "train" in result:
        lines += ["", f"training, batches of {result['batch_tokens']} target tokens", _table(
            ("precision", "steps", "tok/s", "s/step", "GFLOP/s", "MFU", "paired MFU", "padding",
             "nll/tok", "RSS high-water MiB"),
            [(r["precision"], f"{r['warmup_steps']}+{r['steps']}", f"{r['tokens_per_s']:.0f}",
              f"{r['seconds_per_step']:.2f}", f"{r['gflops_per_s']:.1f}", f"{r['mfu']:.1%}",
              f"{r['paired_mfu']:.1%}",
              f"{r['padding_fraction']:.1%}", f"{r['nll_per_token']:.2f}",
              f"{r['peak_rss_mib']:.0f}")
             for p, r in result["train"].items() if p in peak])]
    if "decode" in result:
        lines += ["", "decoding test_2016_flickr.de, randomly initialised model", _table(
            ("search", "sentences", "seconds", "sent/s", "tok/s", "at length limit"),
            [(_search_name(r), str(r["sentences"]), f"{r['seconds']:.1f}",
              f"{r['sentences_per_s']:.1f}", f"{r['tokens_per_s']:.0f}",
              f"{r['at_length_limit']:.0%}") for r in result["decode"]["search"]])]
        per_step = result["decode"]["per_step"]
        lengths = list(per_step[0]["ms_per_step"]) if per_step else []
        lines += ["", f"ms per decoder step at output length L, batch {per_step[0]['batch']}, "
                  "EOS disabled", _table(
                      ("search", *(f"L={n}" for n in lengths), "encoder ms"),
                      [(_search_name(r), *(f"{r['ms_per_step'][n]:.1f}" for n in lengths),
                        f"{r['encode_ms']:.1f}") for r in per_step])]
    if "research" in result:
        lines += ["", "research decoding of test_2016_flickr.de, randomly initialised models",
                  _table(("run", "sentences", "seconds", "sent/s"),
                         research_rows(result["research"]))]
    return "\n".join(lines + ["", "notes:", *(f"- {n}" for n in result["notes"])])


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Aligned columns: the first left-aligned, the rest right-aligned."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    def line(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True)))
    return "\n".join([line(header), "-" * len(line(header)), *map(line, rows)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (None means sys.argv)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a run of about a minute: fewer steps, sentences and lengths")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object on stdout (the table goes to stderr)")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads; 0 = physical cores (seq2seq.runtime.set_threads)")
    parser.add_argument("--steps", type=int, default=0,
                        help="timed training steps per precision (default 30, --quick 3)")
    parser.add_argument("--decode-sentences", type=int, default=0,
                        help="test sentences to translate (default 1000, --quick 64)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with Multi30k's train.de, train.en, test_2016_flickr.de")
    parser.add_argument("--mirror", type=Path, default=None,
                        help=f"folder of Multi30k .gz files to copy into data/multi30k "
                             f"(default {DEFAULT_MIRROR} when it exists, else download)")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "bench-cache",
                        help="where the tokenizer is cached")
    parser.add_argument("--skip-train", action="store_true", help="no training measurements")
    parser.add_argument("--skip-decode", action="store_true", help="no decoding measurements")
    parser.add_argument("--skip-research", action="store_true",
                        help="no sampling, scoring and ensemble measurements")
    parser.add_argument("--plain", action="store_true",
                        help="measure the plain reference path (train.fast false)")
    args = parser.parse_args(argv)
    for name in ("threads", "steps", "decode_sentences"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    """The Plan for these options: the full run, or --quick, then explicit overrides."""
    base = Plan(warmup=1, steps=3, matmul_reps=3, decode_sentences=64,
                step_lengths=(10, 50)) if args.quick else Plan()
    return dataclasses.replace(
        base, steps=args.steps or base.steps,
        decode_sentences=args.decode_sentences or base.decode_sentences,
        skip_train=args.skip_train, skip_decode=args.skip_decode,
        skip_research=args.skip_research)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the report; returns the exit code."""
    args = parse_args(argv)
    log = _log_stderr
    try:
        set_threads(args.threads)
        folder = multi30k_folder(args.data, args.mirror)
        log(f"data: {folder}; tokenizer cached in {args.cache}")
        tok, corpus, test = load_multi30k(folder, args.cache)
        train_cfg = TrainConfig(device="cpu", fast=not args.plain)
        result = measure(tok, corpus, test, ModelConfig(), train_cfg, make_plan(args), log)
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = format_report(result)
    if args.json:
        print(report, file=sys.stderr)
        print(json.dumps(result, indent=2))
    else:
        print(report)
    return 0


def _log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
