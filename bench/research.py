"""The research-decoding rows of the speed benchmark (bench/bench.py): sampling and forced
scoring throughput, and an ensemble of two models against one, through Translator."""

import time
from collections.abc import Callable

import torch

from seq2seq.config import DecodeConfig
from seq2seq.ensemble import Ensemble
from seq2seq.model.transformer import Transformer
from seq2seq.tokenizer import Tokenizer
from seq2seq.translate import Translator

CPU = torch.device("cpu")


def bench_research(model: Transformer, other: Transformer, tok: Tokenizer,
                   sentences: list[str], log) -> list[dict]:
    """Sentences per second of sampling, scoring, and beam 5 with one model and two.

    model, other: two models of one shape (the ensemble's second); sentences: the test
    text. Scoring scores each sentence as its own target, a target of a source's length.
    """
    one = Translator(model.eval(), tok, tok, DecodeConfig(), CPU)
    two = Translator(Ensemble([model, other.eval()]), tok, tok, DecodeConfig(), CPU)
    runs: list[tuple[str, Callable[[list[str]], object]]] = [
        ("sample (temperature 1)", lambda s: one.sample(s, seed=0)),
        ("sample top-p 0.9, 4 each", lambda s: one.sample(s, n=4, top_p=0.9, seed=0)),
        ("score (forced decoding)", lambda s: one.score(s, s)),
        ("beam 5, one model", lambda s: one.translate(s, beam_size=5)),
        ("beam 5, ensemble of two", lambda s: two.translate(s, beam_size=5)),
    ]
    rows = []
    for name, run in runs:
        log(f"research decoding: {name}, {len(sentences)} sentences")
        run(sentences[:4])  # library set-up, not timed
        start = time.perf_counter()
        run(sentences)
        seconds = time.perf_counter() - start
        rows.append({"run": name, "sentences": len(sentences), "seconds": seconds,
                     "sentences_per_s": len(sentences) / seconds})
    return rows


def research_rows(rows: list[dict]) -> list[tuple[str, ...]]:
    """The rows of the report's table."""
    return [(r["run"], str(r["sentences"]), f"{r['seconds']:.1f}", f"{r['sentences_per_s']:.1f}")
            for r in rows]
