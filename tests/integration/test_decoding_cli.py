"""Research decoding from the command line and the Python API, on a two-step tiny model:
n-best lists, formats, sampling, prefixes, ensembles, `score`, and their one-line errors."""

import json
from pathlib import Path

import pytest

from seq2seq.config import load_config
from seq2seq.training.loop import train
from seq2seq.translate import Translator
from tests.conftest import tiny_config_yaml, write_slice
from tests.integration.test_bad_input import assert_one_line_error, cli

SENTENCES = ["the dog sees a cat .", "a big man sleeps .", "two women walk ."]
TOL = 1e-3  # the CLI prints 4 decimals


def tiny_run(tmp: Path, vocab: int = 120) -> Path:
    data = write_slice(tmp)
    config = tiny_config_yaml(tmp, data, max_steps=2, eval_every=2)
    config.write_text(config.read_text().replace("vocab_size: 120", f"vocab_size: {vocab}"))
    return train(load_config(config), progress=False) / "best.pt"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("decoding"))


def run(capfd, monkeypatch, *args, stdin: bytes = b""):
    result = cli(capfd, monkeypatch, *args, stdin=stdin)
    assert result.code == 0, result.err
    return result


def rows(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()]


def test_nbest_lists_in_tsv_and_jsonl(ckpt, capfd, monkeypatch):
    plain = run(capfd, monkeypatch, "translate", ckpt, *SENTENCES, "--beam-size", "3")
    one = run(capfd, monkeypatch, "translate", ckpt, *SENTENCES, "--beam-size", "3", "--format",
              "tsv")
    assert [r[2] for r in rows(one.out)] == plain.out.splitlines()  # nbest 1 is translate's
    assert [(r[0], r[1]) for r in rows(one.out)] == [("0", "0"), ("1", "0"), ("2", "0")]
    three = run(capfd, monkeypatch, "translate", ckpt, *SENTENCES, "--beam-size", "3",
                "--nbest", "3", "--format", "tsv")
    table = rows(three.out)
    assert len(table) == 9 and all(len(r) == 5 for r in table)
    for i in range(3):
        group = [r for r in table if r[0] == str(i)]
        assert [r[1] for r in group] == ["0", "1", "2"] and group[0][2] == plain.out.split("\n")[i]
        scores = [float(r[4]) for r in group]
        assert scores == sorted(scores, reverse=True)
    jsonl = run(capfd, monkeypatch, "translate", ckpt, *SENTENCES, "--beam-size", "3",
                "--nbest", "2", "--format", "jsonl", "--token-scores", "--alignment")
    records = [json.loads(line) for line in jsonl.out.splitlines()]
    assert [(r["index"], r["rank"]) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1),
                                                           (2, 0), (2, 1)]
    for r in records:
        assert abs(sum(r["token_log_probs"]) - r["log_prob"]) < 1e-4
        assert len(r["token_log_probs"]) == r["length"] + r["eos"] == len(r["pieces"]) + r["eos"]
        pairs = [tuple(map(int, p.split("-"))) for p in r["alignment"].split()]
        assert [j for _, j in pairs] == list(range(r["length"]))
        assert all(0 <= i < len(r["source_pieces"]) for i, _ in pairs)


def test_the_python_api_scores_its_own_translations_as_score_does(ckpt, capfd, monkeypatch,
                                                                   tmp_path):
    translator = Translator.from_checkpoint(ckpt, "cpu")
    lists = translator.nbest(SENTENCES, n=3, beam_size=3)
    assert [g[0].text for g in lists] == translator.translate(SENTENCES, beam_size=3)
    for sentence, group in zip(SENTENCES, lists, strict=True):
        scored = translator.score([sentence] * len(group), [t.text for t in group])
        for t, s in zip(group, scored, strict=True):
            if translator.tgt_tok.encode([t.text])[0] != t.tokens:
                continue  # detokenising changed the pieces: another target
            # total log-probabilities: the length penalty only ranks
            assert abs(sum(s.token_log_probs[: len(t.tokens) + t.eos]) - t.log_prob) < 1e-4
    (tmp_path / "src").write_text("\n".join(SENTENCES) + "\n")
    (tmp_path / "hyp").write_text("\n".join(g[0].text for g in lists) + "\n")
    out = run(capfd, monkeypatch, "score", ckpt, "--src", tmp_path / "src", "--tgt",
              tmp_path / "hyp")
    api = translator.score(SENTENCES, [g[0].text for g in lists])
    for row, s in zip(rows(out.out), api, strict=True):
        assert abs(float(row[0]) - s.log_prob) < TOL and int(row[1]) == s.tokens
        assert abs(float(row[2]) - s.mean_log_prob) < TOL and abs(float(row[3]) - s.perplexity) \
            < TOL * s.perplexity
    stdin = "".join(f"{a}\t{b}\n" for a, b in zip(SENTENCES, [g[0].text for g in lists],
                                                   strict=True)).encode()
    summary = json.loads(run(capfd, monkeypatch, "score", ckpt, "--json", stdin=stdin).out)
    assert summary["pairs"] == 3 and summary["tokens"] == sum(s.tokens for s in api)
    assert abs(summary["log_prob"] - sum(s.log_prob for s in api)) < 1e-4


def test_sampling_is_reproducible_and_top_k_one_is_greedy(ckpt, capfd, monkeypatch):
    greedy = run(capfd, monkeypatch, "translate", ckpt, *SENTENCES, "--beam-size", "1")
    top1 = run(capfd, monkeypatch, "translate", ckpt, *SENTENCES, "--sample", "--top-k", "1")
    assert top1.out == greedy.out
    args = ("translate", ckpt, *SENTENCES, "--sample", "--nbest", "4", "--format", "tsv")
    first = run(capfd, monkeypatch, *args, "--seed", "3")
    assert run(capfd, monkeypatch, *args, "--seed", "3").out == first.out
    assert run(capfd, monkeypatch, *args, "--seed", "4").out != first.out
    assert [r[:2] for r in rows(first.out)][:4] == [["0", str(k)] for k in range(4)]
    api = Translator.from_checkpoint(ckpt, "cpu").sample(SENTENCES, n=4, seed=3)
    assert [t.text for g in api for t in g] == [r[2] for r in rows(first.out)]


def test_prefixes_from_the_option_and_from_a_tsv_column(ckpt, capfd, monkeypatch):
    for search in (["--beam-size", "1"], ["--beam-size", "3"], ["--sample"]):
        out = run(capfd, monkeypatch, "translate", ckpt, *SENTENCES, "--prefix", "a dog", *search)
        assert all(line.startswith("a dog") for line in out.out.splitlines()), out.out
    stdin = b"the dog sees a cat .\ttwo men\na big man sleeps .\n"
    out = run(capfd, monkeypatch, "translate", ckpt, "--prefix-tsv", "--beam-size", "2",
              stdin=stdin)
    lines = out.out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("two men")
    free = run(capfd, monkeypatch, "translate", ckpt, "a big man sleeps .", "--beam-size", "2")
    assert lines[1] == free.out.strip()


def test_an_ensemble_of_copies_translates_as_the_checkpoint(ckpt, capfd, monkeypatch,
                                                             tmp_path):
    copy = tmp_path / "copy.pt"
    copy.write_bytes(ckpt.read_bytes())
    for search in (["--beam-size", "3", "--nbest", "2"], ["--sample", "--nbest", "2"]):
        alone = run(capfd, monkeypatch, "translate", ckpt, *SENTENCES, *search, "--format", "tsv")
        both = run(capfd, monkeypatch, "translate", ckpt, copy, *SENTENCES, *search, "--format",
                   "tsv")
        a, b = rows(alone.out), rows(both.out)
        assert [r[:3] for r in a] == [r[:3] for r in b]
        assert all(abs(float(x[-1]) - float(y[-1])) < TOL for x, y in zip(a, b, strict=True))


def test_bad_research_options_fail_in_one_line_and_write_nothing(ckpt, capfd, monkeypatch,
                                                                  tmp_path, tmp_path_factory):
    out = tmp_path / "out.txt"
    (tmp_path / "src").write_text("a\nb\n")
    (tmp_path / "tgt").write_text("a\n")
    long_prefix = " ".join(["dog"] * 80)
    cases = [
        (["translate", ckpt, "a dog", "--beam-size", "2", "--nbest", "3", "--format", "tsv"],
         "nbest must be between 1 and the beam size (2), got 3"),
        (["translate", ckpt, "a dog", "--nbest", "2"], "--format tsv or jsonl"),
        (["translate", ckpt, "a dog", "--token-scores"], "--format jsonl"),
        (["translate", ckpt, "a dog", "--sample", "--top-p", "0"], "top-p must be in (0, 1]"),
        (["translate", ckpt, "a dog", "--sample", "--top-p", "1.5"], "top-p must be in (0, 1]"),
        (["translate", ckpt, "a dog", "--sample", "--temperature", "0"], "temperature"),
        (["translate", ckpt, "a dog", "--sample", "--temperature", "nan"], "temperature"),
        (["translate", ckpt, "a dog", "--sample", "--temperature", "inf"], "temperature"),
        (["translate", ckpt, "a dog", "--prefix", long_prefix], "the prefix of sentence 1 has"),
        (["translate", ckpt, "a dog", "--format", "jsonl", "--alignment",
          "--alignment-layer", "5"], "alignment layer must be between -2 and 1"),
        (["score", ckpt, "--src", tmp_path / "src", "--tgt", tmp_path / "tgt"],
         "has 2 lines but --tgt"),
        (["score", ckpt, "--src", tmp_path / "src"], "give both --src and --tgt"),
    ]
    for args, fragment in cases:
        result = cli(capfd, monkeypatch, *args, "-o", out)
        assert_one_line_error(result, fragment)
        assert not out.exists()
    stdin = cli(capfd, monkeypatch, "score", ckpt, "-o", out, stdin=b"a\tb\nno tab\n")
    assert_one_line_error(stdin, "line 2 has no TAB")
    other = tiny_run(tmp_path_factory.mktemp("other_vocab"), vocab=100)
    for command in (["translate", ckpt, other, "a dog"], ["score", ckpt, other, "--src",
                                                           tmp_path / "src", "--tgt",
                                                           tmp_path / "src"]):
        result = cli(capfd, monkeypatch, *command, "-o", out)
        assert_one_line_error(result, "vocabulary", "same tokenizers")
        assert not out.exists()


@pytest.mark.parametrize("fmt", ["text", "tsv"])
def test_a_cut_line_from_a_pipe_is_named_by_its_line_in_the_whole_input(ckpt, capfd,
                                                                       monkeypatch, fmt):
    monkeypatch.setattr("seq2seq.commands.translating.STDIN_CHUNK", 2)  # lines 1-2, then 3
    long = " ".join(["the big dog sees two cats ."] * 40)  # over the model's positions
    stdin = "\n".join(["a man sleeps .", "two women walk .", long]).encode() + b"\n"
    result = run(capfd, monkeypatch, "translate", ckpt, "--format", fmt, stdin=stdin)
    assert "were cut to fit (line 3)" in result.err
