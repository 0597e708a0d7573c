"""GPU benchmark for scripts/gpu_check.sh: bf16 training throughput and MFU against the
GPU's matmul peak measured in the same run, the share of step time spent waiting for data
(batches built ahead on a thread, and built in line, side by side), and greedy and beam
decoding of test_2016_flickr.de. Prints one table, with the CUDA tests' outcomes when
given their JUnit file.

Usage, from the repository root:

    python -m bench.gpu [--data DIR] [--steps N] [--tests JUNIT.xml] [--json OUT]
                        [--device cuda] [--quick]

--data is a folder with Multi30k's train.de/.en and test_2016_flickr.de (.gz or plain;
default data/multi30k, else ../shared/data/multi30k); without one the bundled toy data
stands in, and the table says so. --device cpu --quick runs the same code on a CPU in
seconds (a smoke run of this script, not a measurement).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from seq2seq.config import DecodeConfig, ModelConfig, TrainConfig
from seq2seq.corpora.parallel import read_parallel
from seq2seq.data import TrainSet
from seq2seq.inspection.accounting import training_flops
from seq2seq.model.build import build_model
from seq2seq.store import build_store, built_from
from seq2seq.tokenizer import Tokenizer, train_tokenizer
from seq2seq.training.distributed import World
from seq2seq.training.feed import AHEAD, Feed, batch_of, epoch_steps
from seq2seq.training.schedule import learning_rate
from seq2seq.training.step import build_step
from seq2seq.translate import Translator

ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # name -> shape; "base" is the Transformer-base of Vaswani et al.
    "default": ModelConfig(),
    "base": ModelConfig(d_model=512, n_heads=8, d_ff=2048, encoder_layers=6, decoder_layers=6),
}


# ---------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Data:
    name: str  # for the table
    folder: Path
    langs: tuple[str, str]  # file suffixes, source then target
    test: str  # the test split's file name


def find_data(data: Path | None) -> Data:
    """Multi30k de-en where found (--data, data/multi30k, ../shared/data/multi30k), else the
    bundled toy data."""
    for folder in [data] if data else [ROOT / "data/multi30k",
                                       ROOT.parent / "shared/data/multi30k"]:
        if any((folder / f"train.de{gz}").is_file() for gz in ("", ".gz")):
            return Data("Multi30k de-en", folder, ("de", "en"), "test_2016_flickr")
    if data:
        sys.exit(f"error: no train.de or train.de.gz in {data}")
    return Data("toy (no Multi30k found)", ROOT / "data/toy", ("src", "tgt"), "test")


def load(data: Data, work: Path, vocab: int) -> tuple[Tokenizer, TrainSet, list[str]]:
    """A joint tokenizer, the training pairs as a token store in `work`, the test sources."""
    def pairs(split: str):
        return read_parallel(*(_file(data.folder, split, lang) for lang in data.langs))

    text = pairs("train")
    tok = train_tokenizer(text.src + text.tgt, vocab_size=vocab)
    store, _ = build_store(work / "store", [("train", zip(text.src, text.tgt, strict=True))],
                           tok, tok, 128, built_from(tok, tok, [], 128), log=lambda _: None)
    return tok, TrainSet(store, (1.0,)), pairs(data.test).src


def _file(folder: Path, split: str, lang: str) -> Path:
    plain = folder / f"{split}.{lang}"
    return plain if plain.is_file() else folder / f"{split}.{lang}.gz"


# ---------------------------------------------------------------- measurements


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    """Best-of-reps TFLOP/s of an (n x n) @ (n x n) product on `device`."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def train_rate(name: str, shape: ModelConfig, tok: Tokenizer, train: TrainSet,
               device: torch.device, steps: int, warmup: int, ahead: int, peak: float,
               batch_tokens: int) -> tuple[dict, torch.nn.Module]:
    """bf16 training steps through the loop's own Feed and TrainStep, timed as a whole."""
    settings = TrainConfig(precision="bf16", batch_tokens=batch_tokens, device=device.type)
    torch.manual_seed(0)
    model = build_model(shape, tok.vocab_size, tok.vocab_size, tok.pad_id, joint_vocab=True)
    step = build_step(model.to(device).train(), settings, World(), device)
    plan = epoch_steps(train, settings, World(), epoch=0)
    plan = [plan[i % len(plan)] for i in range(warmup + steps)]
    lens = train.store.lens

    def make(indices):
        return batch_of(train, tok, indices)

    with Feed(plan[:warmup], make, device, ahead) as feed:
        for i, micro in enumerate(feed):
            step.step(micro, learning_rate(i + 1, settings.lr, settings.warmup))
    sync(device)
    tokens = 0
    with Feed(plan[warmup:], make, device, ahead) as feed:
        start = time.perf_counter()
        for i, micro in enumerate(feed, warmup):
            tokens += step.step(micro, learning_rate(i + 1, settings.lr, settings.warmup))[2]
        sync(device)
        seconds, waited = time.perf_counter() - start, feed.waited
    items = [i for s in plan[warmup:] for m in s for i in m.tolist()]
    flops = training_flops(model, [int(lens["src"][i]) + 1 for i in items],
                           [int(lens["tgt"][i]) + 1 for i in items])
    row = {"model": name, "parameters": sum(p.numel() for p in model.parameters()),
           "ahead": ahead, "steps": steps, "batch_tokens": batch_tokens,
           "tokens_per_s": tokens / seconds, "ms_per_step": seconds / steps * 1e3,
           "tflops": flops / seconds / 1e12, "mfu": flops / seconds / 1e12 / peak,
           "data_wait_share": waited / seconds}
    return row, model


def decode_rate(model: torch.nn.Module, tok: Tokenizer, lines: list[str],
                device: torch.device, beam: int) -> dict:
    """Sentences and output tokens per second of Translator.translate on `device`."""
    translator = Translator(model.eval(), tok, tok, DecodeConfig(beam_size=beam), device)
    translator.translate(lines[:8])  # set-up, not timed
    sync(device)
    start = time.perf_counter()
    out = translator.translate(lines)
    sync(device)
    seconds = time.perf_counter() - start
    generated = sum(len(ids) for ids in tok.encode(out))
    return {"beam_size": beam, "sentences": len(lines), "seconds": seconds,
            "sentences_per_s": len(lines) / seconds, "tokens_per_s": generated / seconds}


def test_outcomes(junit: Path | None) -> list[tuple[str, str]]:
    """(test name, passed | failed | skipped: reason) from a pytest --junitxml file."""
    if junit is None or not junit.is_file():
        return []
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                message = (found.get("message") or "").splitlines()[0:1]
                outcome = {"failure": "FAILED", "error": "ERROR"}.get(kind, "skipped")
                outcome += f": {message[0][:70]}" if message else ""
                break
        rows.append((case.get("name", "?"), outcome))
    return rows


# ---------------------------------------------------------------- the table


def table(result: dict) -> str:
    """Every measurement and test outcome as one two-column table."""
    rows = [("device", result["device"]), ("data", result["data"]),
            ("bf16 matmul peak", f"{result['peak_tflops']:.1f} TFLOP/s "
                                 f"({result['matmul_n']}^2, best of {result['matmul_reps']})")]
    for r in result["train"]:
        how = f"built ahead ({r['ahead']} steps)" if r["ahead"] else "built in line"
        rows.append((f"train bf16 {r['model']} ({r['parameters'] / 1e6:.0f}M), batches {how}",
                     f"{r['tokens_per_s']:,.0f} tok/s, {r['ms_per_step']:.1f} ms/step, "
                     f"MFU {r['mfu']:.1%}, waiting for data {r['data_wait_share']:.1%}"))
    for r in result["decode"]:
        search = "greedy" if r["beam_size"] == 1 else f"beam {r['beam_size']}"
        rows.append((f"decode {result['test']} {search}",
                     f"{r['sentences']} sentences in {r['seconds']:.1f}s: "
                     f"{r['sentences_per_s']:,.0f} sent/s, {r['tokens_per_s']:,.0f} tok/s"))
    rows += [(f"test {name}", outcome) for name, outcome in result["tests"]]
    width = max(len(a) for a, _ in rows)
    lines = [f"{a.ljust(width)}  {b}" for a, b in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([f"seq2seq GPU check, {result['date']}", rule, *lines, rule])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=100, help="timed training steps per row")
    parser.add_argument("--tests", type=Path, default=None, help="pytest --junitxml file")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here (torch.cuda.is_available() is false)", file=sys.stderr)
        return 2
    quick = args.quick
    data = find_data(args.data)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    models = {"tiny": ModelConfig(d_model=32, n_heads=4, d_ff=64, encoder_layers=2,
                                  decoder_layers=2)} if quick else MODELS
    n, reps = (256, 2) if quick else (8192, 10)
    with tempfile.TemporaryDirectory() as work:
        log(f"data: {data.name} from {data.folder}")
        tok, train, test = load(data, Path(work), 1000 if quick else 8000)
        test = test[:16] if quick else test
        log("matmul peak (bf16)")
        peak = matmul_peak(device, torch.bfloat16, n, reps)
        rows, model = [], None
        for model_name, shape in models.items():
            for ahead in (AHEAD, 0):
                log(f"training {model_name}, batches {'ahead' if ahead else 'in line'}")
                row, model = train_rate(model_name, shape, tok, train, device,
                                        3 if quick else args.steps, 1 if quick else 10, ahead,
                                        peak, 1000 if quick else 8192)
                rows.append(row)
        decode = []
        for beam in (1, 5):
            log(f"decoding {len(test)} sentences, beam {beam}")
            decode.append(decode_rate(model, tok, test, device, beam))
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "data": data.name, "test": data.test, "peak_tflops": peak, "matmul_n": n,
              "matmul_reps": reps, "train": rows, "decode": decode,
              "tests": test_outcomes(args.tests),
              "model_shapes": {k: dataclasses.asdict(v) for k, v in models.items()}}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
