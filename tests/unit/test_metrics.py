"""Corpus scores, BLEU's breakdown, tokenizers and paired significance tests (seq2seq.metrics)."""

import importlib.util
import math
import os

import pytest

from seq2seq.data import read_lines
from seq2seq.errors import Seq2SeqError
from seq2seq.metrics import TOKENIZERS, paired_test, parse_metrics, score
from tests.conftest import ROOT

REF = read_lines(ROOT / "data/toy/test.tgt")[:200]
SHUFFLED = REF[1:] + REF[:1]  # every line scored against its neighbour's reference
SHORT = [" ".join(line.split()[:-2]) for line in REF]  # each line without its last two words
ONE_OFF = [*REF[:-1], "a different last line ."]


def test_parse_metrics_takes_any_subset_in_its_order():
    assert parse_metrics("bleu,chrf,ter") == ("bleu", "chrf", "ter")
    assert parse_metrics(" TER , bleu,ter") == ("ter", "bleu")


@pytest.mark.parametrize("text, fragment", [
    ("bleu,meteor", "unknown metric 'meteor'; known: bleu, chrf, ter"),
    (" , ", "--metrics is empty"),
])
def test_unknown_or_no_metrics_are_refused(text, fragment):
    with pytest.raises(Seq2SeqError, match=fragment):
        parse_metrics(text)


def test_a_perfect_system_scores_full_marks_with_its_breakdown():
    s = score(REF, REF, metrics=("bleu", "chrf", "ter"))
    assert s.values == pytest.approx({"bleu": 100.0, "chrf": 100.0, "ter": 0.0})
    b = s.bleu_breakdown
    assert b["precisions"] == [100.0] * 4 and b["brevity_penalty"] == 1.0 and b["ratio"] == 1.0
    assert b["hyp_len"] == b["ref_len"] > len(REF)
    assert "tok:13a" in s.signatures["bleu"] and set(s.signatures) == {"bleu", "chrf", "ter"}
    assert set(s.to_dict()) >= {"bleu", "ter", "ter_signature", "bleu_breakdown"}


def test_the_breakdown_explains_the_score_of_a_short_system():
    b = score(SHORT, REF).bleu_breakdown
    assert b["hyp_len"] < b["ref_len"] and b["brevity_penalty"] < 1 and b["ratio"] < 1
    geometric = math.exp(sum(math.log(p / 100) for p in b["precisions"]) / 4)
    assert score(SHORT, REF).bleu == pytest.approx(100 * b["brevity_penalty"] * geometric,
                                                   abs=0.05)


def test_chrf_alone_has_no_bleu_breakdown():
    s = score(SHORT, REF, metrics=("chrf",))
    assert set(s.values) == {"chrf"} and s.bleu_breakdown is None


def test_the_tokenizer_reaches_sacrebleu():
    assert {"13a", "intl", "zh", "char", "none"} <= set(TOKENIZERS)
    by_word, by_char = score(SHORT, REF), score(SHORT, REF, tokenize="char")
    assert "tok:char" in by_char.signatures["bleu"] and by_char.bleu != by_word.bleu


def test_an_unknown_tokenizer_is_refused_with_sacrebleus_list():
    with pytest.raises(Seq2SeqError, match="unknown BLEU tokenizer 'moses'; sacreBLEU knows: "
                                           "none, zh, 13a, intl, char"):
        score(REF, REF, tokenize="moses")


@pytest.mark.skipif(importlib.util.find_spec("MeCab") is not None, reason="MeCab is installed")
def test_a_tokenizer_without_its_package_is_one_error():
    with pytest.raises(Seq2SeqError, match="'ja-mecab' tokenizer is not available here.*"
                                           r"pip install sacrebleu\[ja\]"):
        score(REF, REF, tokenize="ja-mecab")


def test_lowercase_applies_to_every_metric():
    upper = [line.upper() for line in REF]
    cased = score(upper, REF, metrics=("bleu", "chrf", "ter"))
    assert cased.bleu < 10 and cased.values["ter"] > 50
    lower = score(upper, REF, lowercase=True, metrics=("bleu", "chrf", "ter"))
    assert lower.values == pytest.approx({"bleu": 100.0, "chrf": 100.0, "ter": 0.0})


def test_unequal_lengths_are_refused():
    with pytest.raises(Seq2SeqError, match="199 hypotheses but 200 references"):
        score(REF[1:], REF)
    with pytest.raises(Seq2SeqError, match="199 hypotheses but 200 references"):
        paired_test([REF, REF[1:]], REF, "bootstrap", 10)


# ---------------------------------------------------------------- paired tests


@pytest.mark.parametrize("method", ["bootstrap", "ar"])
def test_a_system_against_itself_has_p_one(method):
    result = paired_test([REF, list(REF)], REF, method, 200, metrics=("bleu", "chrf"))
    for metric in ("bleu", "chrf"):
        baseline, same = result.scores[metric]
        assert baseline.p_value is None and same.p_value == 1.0
        assert same.score == baseline.score == pytest.approx(100.0)


@pytest.mark.parametrize("method", ["bootstrap", "ar"])
def test_a_much_worse_system_differs_significantly(method):
    result = paired_test([REF, SHUFFLED], REF, method, 200, metrics=("bleu", "chrf", "ter"))
    for metric in ("bleu", "chrf", "ter"):
        assert result.scores[metric][1].p_value < 0.05, metric
    bleu = result.scores["bleu"][1]
    assert bleu.ci > 0 and abs(bleu.mean - bleu.score) < bleu.ci
    assert f"{'bs' if method == 'bootstrap' else 'ar'}:200" in result.signatures["bleu"]


def test_one_changed_line_is_no_evidence_for_bootstrap_resampling():
    result = paired_test([REF, ONE_OFF], REF, "bootstrap", 200, metrics=("bleu", "chrf", "ter"))
    for metric in ("bleu", "chrf", "ter"):
        assert result.scores[metric][1].p_value > 0.05, metric


def test_randomisation_counts_ties_strictly_as_sacrebleu_does():
    """Every trial of one changed line ties with the observed difference, and sacreBLEU counts
    only larger ones: p = 1 / (n + 1). docs/evaluation.md warns of it."""
    result = paired_test([REF, ONE_OFF], REF, "ar", 200, metrics=("bleu",))
    assert result.scores["bleu"][1].p_value == pytest.approx(1 / 201)


def test_the_seed_makes_a_test_reproducible_and_is_put_back():
    before = os.environ.get("SACREBLEU_SEED")
    runs = [paired_test([REF, SHORT, SHUFFLED], REF, "bootstrap", 50, seed=seed)
            for seed in (7, 7, 8)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert "seed:7" in runs[0].signatures["bleu"]
    assert os.environ.get("SACREBLEU_SEED") == before


@pytest.mark.parametrize("kwargs, fragment", [
    ({"seed": 0}, "--seed must be an integer >= 1"),
    ({"method": "permutation"}, "unknown method 'permutation'"),
])
def test_bad_test_settings_are_refused(kwargs, fragment):
    with pytest.raises(Seq2SeqError, match=fragment):
        paired_test([REF, SHORT], REF, **{"method": "bootstrap", "n_samples": 10, **kwargs})
