"""Our PyTorch search against CTranslate2 float32 and int8, side by side in one process.

Usage, from the repository root (after `make install`; the ctranslate2 extra):

    python -m bench.ctranslate2 [--threads 2] [--sentences N] [--rounds R]
                                [--toy CHECKPOINT] [--json] [--data DIR | --mirror DIR]

The model: the reference model of bench/bench.py (d_model 256, 3+3 layers, 4 heads, feed-
forward 1024, tied and shared embeddings) in configs/multi30k_de_en.yaml's setting, randomly
initialised over the joint 8000-piece vocabulary that bench/bench.py trains and caches, saved
as a checkpoint and exported by `seq2seq export` to float32 and int8. Each engine translates
test_2016_flickr.de greedy and with beam 5 through the same Translator interface `translate`
uses (decode settings from the config), with the same thread count; the engines take turns in
each of R rounds and the fastest round is kept. BLEU against test_2016_flickr.en means nothing
for a random model, so --toy adds the same rows for a trained toy checkpoint on data/toy/test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":  # run as a file: this module
    sys.path[0] = str(ROOT)  # would shadow the ctranslate2 package

import torch  # noqa: E402

from bench.bench import DEFAULT_MIRROR, _table, cached_tokenizer, multi30k_folder  # noqa: E402
from bench.timing import cpu_name  # noqa: E402
from seq2seq.checkpoint import build_checkpoint, save_checkpoint  # noqa: E402
from seq2seq.config import load_config  # noqa: E402
from seq2seq.corpora.multi30k import multi30k_paths  # noqa: E402
from seq2seq.data import read_lines, read_parallel  # noqa: E402
from seq2seq.engines import import_ctranslate2, load_translator  # noqa: E402
from seq2seq.engines.ct2_export import export_ctranslate2  # noqa: E402
from seq2seq.errors import Seq2SeqError  # noqa: E402
from seq2seq.metrics import score  # noqa: E402
from seq2seq.model.build import build_model  # noqa: E402
from seq2seq.runtime import set_threads  # noqa: E402
from seq2seq.search import length_limits  # noqa: E402

CONFIG = ROOT / "configs" / "multi30k_de_en.yaml"
REFERENCE_MODEL = ["model.d_model=256", "model.d_ff=1024", "model.encoder_layers=3",
                   "model.decoder_layers=3"]  # the reference shape, whatever the recipe's size
ENGINES = ("pytorch", "ctranslate2 float32", "ctranslate2 int8", "ctranslate2 float32, batch limit")


class BatchLimit:
    """CTranslate2 float32 batched as its own users batch it: length-sorted batches of
    decode.batch_size sentences, one call each with the batch's longest limit, where
    `translate DIR` groups each batch's sentences by their own limits. For a model that
    stops at EOS (a trained one) the outputs are the same, so the two rows' difference is
    what the grouping costs; a random model runs longer here, to the batch's limit."""

    def __init__(self, translator):
        self.translator = translator

    def translate(self, lines: list[str], beam_size: int) -> list[str]:
        t, model = self.translator, self.translator.model
        ids = t.encode(lines)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        tokens: list[list[int]] = [[] for _ in ids]
        size = t.decode.batch_size
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            lengths = torch.tensor([len(ids[i]) + 1 for i in chunk])  # EOS included
            limit = int(length_limits(lengths, t.decode.max_len_ratio, model.max_positions).max())
            sources = [[model.src_pieces[j] for j in ids[i]] for i in chunk]
            for i, result in zip(chunk, model.search(sources, beam_size, limit), strict=True):
                tokens[i] = model.hypotheses(result, beam_size, t.decode.length_penalty,
                                             1)[0].tokens
        return t.tgt_tok.decode(tokens)


def random_checkpoint(folder: Path, cache: Path, tmp: Path, seed: int = 1) -> Path:
    """The reference model, randomly initialised, as a checkpoint in tmp."""
    config = load_config(CONFIG, REFERENCE_MODEL)
    text = read_parallel(multi30k_paths(folder, "train", "de"),
                         multi30k_paths(folder, "train", "en"))
    tok = cached_tokenizer(text.src + text.tgt, cache, config.tokenizer)
    torch.manual_seed(seed)
    model = build_model(config.model, tok.vocab_size, tok.vocab_size, tok.pad_id,
                        joint_vocab=True)
    path = tmp / "random.pt"
    save_checkpoint(build_checkpoint(config, model, tok, tok, 0, 0, {}), path)
    return path


def open_engines(checkpoint: Path, tmp: Path, threads: int) -> dict:
    """The checkpoint on our search, and exported to CTranslate2 float32 and int8."""
    engines = {"pytorch": load_translator(checkpoint, "cpu")}
    for quantization in ("float32", "int8"):
        folder = tmp / f"{checkpoint.stem}-{quantization}"
        export_ctranslate2(checkpoint, folder, quantization)
        engines[f"ctranslate2 {quantization}"] = load_translator(folder, "cpu", threads)
    engines["ctranslate2 float32, batch limit"] = BatchLimit(engines["ctranslate2 float32"])
    return engines


def race(name: str, engines: dict, lines: list[str], refs: list[str], rounds: int, log
         ) -> list[dict]:
    """Each engine translates `lines` greedy and with beam 5, taking turns, R rounds; the
    fastest round of each, its BLEU, and how many outputs equal our search's."""
    rows = []
    for beam in (1, 5):
        best: dict[str, float] = {}
        outputs: dict[str, list[str]] = {}
        for translator in engines.values():
            translator.translate(lines[:4], beam_size=beam)  # library set-up, not timed
        for r in range(rounds):
            for engine, translator in engines.items():
                log(f"{name}: {engine}, beam {beam}, round {r + 1} of {rounds}")
                start = time.perf_counter()
                outputs[engine] = translator.translate(lines, beam_size=beam)
                seconds = time.perf_counter() - start
                best[engine] = min(best.get(engine, seconds), seconds)
        for engine in engines:
            rows.append({
                "model": name, "search": "greedy" if beam == 1 else f"beam {beam}",
                "engine": engine, "sentences": len(lines), "seconds": best[engine],
                "sentences_per_s": len(lines) / best[engine],
                "bleu": score(outputs[engine], refs, metrics=("bleu",)).bleu,
                "same_as_pytorch": sum(a == b for a, b in zip(outputs[engine],
                                                              outputs["pytorch"], strict=True))
                / len(lines),
                "time_vs_ct2_float32": best[engine] / best["ctranslate2 float32"]})
    return rows


def format_report(result: dict) -> str:
    """The rows as one table, with the host, threads and notes."""
    header = ("model", "search", "engine", "sentences", "seconds", "sent/s", "BLEU",
              "same as ours", "time / CT2 f32")
    rows = [(r["model"], r["search"], r["engine"], str(r["sentences"]), f"{r['seconds']:.2f}",
             f"{r['sentences_per_s']:.1f}", f"{r['bleu']:.2f}", f"{r['same_as_pytorch']:.1%}",
             f"{r['time_vs_ct2_float32']:.2f}x") for r in result["rows"]]
    lines = [f"decoding engines: {result['cpu']}, {result['threads']} threads each, torch "
             f"{result['torch']}, ctranslate2 {result['ctranslate2']}, best of "
             f"{result['rounds']} rounds", _table(header, rows), "", "notes:"]
    if "load_average" in result:
        start, end = result["load_average"]
        lines.append(f"- 1-minute load average {start:.1f} when the benchmark started, "
                     f"{end:.1f} at its end (it adds about {result['threads']} itself): above "
                     "about 1 at the start, other processes shared the CPU, which slows every "
                     "engine and makes the timings noisy.")
    lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines)


def notes(result: dict) -> list[str]:
    out = ["multi30k-random: the reference model (d_model 256, 3+3 layers), randomly "
           "initialised: it rarely emits EOS, so nearly every output runs to its length limit "
           "(1.5 x source + 10) and its BLEU means nothing; the timings are those of a trained "
           "model of this shape producing outputs that long."]
    if any(r["model"] == "toy" for r in result["rows"]):
        out.append("toy: the trained --toy checkpoint on data/toy/test (its BLEU is "
                   "meaningful).")
    out.append("time / CT2 f32: an engine's seconds over CTranslate2 float32's on the same "
               "rows; our PyTorch search's target is <= 1.5x.")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads of every engine")
    parser.add_argument("--sentences", type=int, default=0,
                        help="test sentences to translate (default all 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="turns each engine takes")
    parser.add_argument("--toy", type=Path, default=None,
                        help="a trained toy checkpoint to add rows for (data/toy/test)")
    parser.add_argument("--json", action="store_true", help="print JSON (the table to stderr)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with Multi30k's train.de, train.en, test_2016_flickr.*")
    parser.add_argument("--mirror", type=Path, default=None,
                        help=f"folder of Multi30k .gz files (default {DEFAULT_MIRROR})")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "bench-cache",
                        help="where bench/bench.py caches the tokenizer")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or args.sentences < 0:
        parser.error("--threads and --rounds must be >= 1, --sentences >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    try:
        ct2 = import_ctranslate2()
        set_threads(args.threads)
        folder = multi30k_folder(args.data, args.mirror)
        test = read_lines(multi30k_paths(folder, "test_2016_flickr", "de"))
        refs = read_lines(multi30k_paths(folder, "test_2016_flickr", "en"))
        n = args.sentences or len(test)
        rows, load = [], os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = random_checkpoint(folder, args.cache, Path(tmp))
            engines = open_engines(checkpoint, Path(tmp), args.threads)
            rows += race("multi30k-random", engines, test[:n], refs[:n], args.rounds, log)
            if args.toy is not None:
                toy = open_engines(args.toy, Path(tmp), args.threads)
                rows += race("toy", toy, read_lines(ROOT / "data/toy/test.src"),
                             read_lines(ROOT / "data/toy/test.tgt"), args.rounds, log)
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
              "ctranslate2": ct2.__version__, "rounds": args.rounds, "rows": rows,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "load_average": [load, os.getloadavg()[0]]}
    result["notes"] = notes(result)
    report = format_report(result)
    print(report, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
