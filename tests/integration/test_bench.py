"""Smoke test of bench/bench.py: every measurement on a tiny model and synthetic text."""

import json
import random

import pytest
import torch

from bench import bench
from seq2seq.config import ModelConfig, TrainConfig
from seq2seq.data import EncodedCorpus
from seq2seq.tokenizer import train_tokenizer

WORDS = "haus katze hund baum wasser kind frau mann rot blau gross klein".split()


def synthetic_lines(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 9))) for _ in range(n)]


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and a busy machine hurts them least there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_measure_runs_every_section_and_reports_it(one_thread):
    src, tgt = synthetic_lines(120, seed=1), synthetic_lines(120, seed=2)
    tok = train_tokenizer(src + tgt, vocab_size=40)
    corpus = EncodedCorpus(src=tok.encode(src), tgt=tok.encode(tgt))
    model_cfg = ModelConfig(d_model=32, n_heads=4, d_ff=64, encoder_layers=2, decoder_layers=2,
                            max_positions=64)
    plan = bench.Plan(warmup=1, steps=3, matmul_n=64, matmul_reps=1, block=2, probe_reps=1,
                      decode_sentences=6, step_batch=4, step_lengths=(3, 6))
    result = bench.measure(tok, corpus, src[:12], model_cfg,
                           TrainConfig(device="cpu", batch_tokens=200), plan, log=lambda m: None)

    for precision in result["peak_gflops"]:  # fp32, and bf16 where the CPU supports it
        row = result["train"][precision]
        assert row["steps"] == 3 and row["target_tokens"] > 0
        assert row["tokens_per_s"] > 0 and row["mfu"] > 0  # a 64 x 64 peak is noisy: no bound
        assert row["mfu"] == pytest.approx(row["gflops_per_s"] / result["peak_gflops"][precision])
        assert 0 <= row["padding_fraction"] < 1
        blocks = row["paired_mfu_blocks"]  # steps 1-2 and 3, each after its own probe
        assert len(blocks) == 2 and min(blocks) <= row["paired_mfu"] <= max(blocks)
    for row in result["decode"]["search"]:
        assert row["sentences"] == 6 and row["generated_tokens"] > 0
        assert 0 <= row["at_length_limit"] <= 1
    for row in result["decode"]["per_step"]:
        assert set(row["ms_per_step"]) == {3, 6} and row["batch"] == 4
    report = bench.format_report(result)
    assert "fp32" in report and "beam 5" in report and "RANDOMLY INITIALISED" in report
    json.dumps(result)


def test_quick_plan_and_overrides():
    args = bench.parse_args(["--quick", "--steps", "4", "--skip-decode"])
    plan = bench.make_plan(args)
    assert plan.steps == 4 and plan.warmup == 1 and plan.skip_decode and not plan.skip_train
    assert bench.make_plan(bench.parse_args([])) == bench.Plan()
