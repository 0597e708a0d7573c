"""Tests for the toy corpus: determinism, splits, sizes, and the grammar it teaches."""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from seq2seq.corpora import toy
from seq2seq.corpora.toy import (
    Clause,
    NounPhrase,
    generate_pairs,
    render_pair,
    source_noun_phrase,
    target_noun_phrase,
    write_toy_corpus,
)
from seq2seq.errors import Seq2SeqError

REPO_ROOT = Path(__file__).resolve().parents[2]
SPLITS = ("train", "dev", "test")
FILES = [f"{split}.{side}" for split in SPLITS for side in ("src", "tgt")]


def _read_pairs(folder: Path, split: str) -> list[tuple[str, str]]:
    """The (source, target) lines of one split in `folder`."""
    sources = (folder / f"{split}.src").read_text(encoding="utf-8").splitlines()
    targets = (folder / f"{split}.tgt").read_text(encoding="utf-8").splitlines()
    return list(zip(sources, targets, strict=True))


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the corpus written with the default arguments."""
    out = tmp_path_factory.mktemp("toy")
    write_toy_corpus(out)
    return out


@pytest.fixture(scope="module")
def corpus(default_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """The default corpus read back as {split: [(source, target), ...]}."""
    return {split: _read_pairs(default_dir, split) for split in SPLITS}


# --- determinism, sizes, splits ----------------------------------------------------------


def test_same_seed_gives_same_pairs_and_different_seed_does_not() -> None:
    assert generate_pairs(300, seed=7) == generate_pairs(300, seed=7)
    assert generate_pairs(300, seed=7) != generate_pairs(300, seed=8)


def test_generation_leaves_global_random_state_alone() -> None:
    before = random.getstate()
    generate_pairs(50, seed=3)
    assert random.getstate() == before


def test_written_files_are_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_toy_corpus(tmp_path / name, seed=5, n_train=100, n_dev=10, n_test=10)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_sizes_and_line_format(tmp_path: Path) -> None:
    counts = write_toy_corpus(tmp_path, seed=2, n_train=120, n_dev=30, n_test=20)
    assert counts == {"train": 120, "dev": 30, "test": 20}
    for name in FILES:
        data = (tmp_path / name).read_bytes()
        lines = data.decode("utf-8").split("\n")
        assert lines[-1] == "" and b"\r" not in data
        assert len(lines) - 1 == counts[name.split(".")[0]]
        assert all(line.strip() == line and line for line in lines[:-1])


def test_default_sizes(corpus: dict[str, list[tuple[str, str]]]) -> None:
    assert {split: len(pairs) for split, pairs in corpus.items()} == {
        "train": 20000,
        "dev": 500,
        "test": 500,
    }


def test_held_out_sources_are_disjoint_from_train_and_each_other(
    corpus: dict[str, list[tuple[str, str]]],
) -> None:
    train, dev, test = ({source for source, _ in corpus[split]} for split in SPLITS)
    assert len(train) == 20000 and len(dev) == 500 and len(test) == 500  # no repeats
    assert not dev & train
    assert not test & train
    assert not dev & test


def test_test_split_does_not_depend_on_train_size(tmp_path: Path) -> None:
    write_toy_corpus(tmp_path / "small", seed=4, n_train=10, n_dev=20, n_test=20)
    write_toy_corpus(tmp_path / "large", seed=4, n_train=200, n_dev=20, n_test=20)
    assert _read_pairs(tmp_path / "small", "test") == _read_pairs(tmp_path / "large", "test")


def test_negative_sizes_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="dev"):
        write_toy_corpus(tmp_path, n_dev=-1)
    with pytest.raises(Seq2SeqError):
        generate_pairs(-1, seed=1)


def test_committed_toy_data_matches_the_generator(default_dir: Path) -> None:
    committed = REPO_ROOT / "data" / "toy"
    for name in FILES:
        assert (committed / name).read_bytes() == (default_dir / name).read_bytes(), (
            f"data/toy/{name} is stale; run: python scripts/make_toy_data.py"
        )


def test_script_runs_from_the_repo_root(tmp_path: Path) -> None:
    command = [sys.executable, "scripts/make_toy_data.py", "--out", str(tmp_path)]
    command += ["--seed", "3", "--train", "20", "--dev", "5", "--test", "5"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert "train: 20 lines" in result.stdout
    assert len(_read_pairs(tmp_path, "dev")) == 5


# --- corpus statistics -------------------------------------------------------------------


def test_sentence_lengths(corpus: dict[str, list[tuple[str, str]]]) -> None:
    lengths = [len(source.split()) for source, _ in corpus["train"]]
    # Shortest "he sleeps ."; longest: 3 (subject) + 1 + 3 (object) + 4 (place) + 1 + 1 (".").
    assert min(lengths) == 3 and max(lengths) == 13
    assert 7 <= statistics.mean(lengths) <= 9


def test_vocabulary_has_at_least_100_words_per_side(
    corpus: dict[str, list[tuple[str, str]]],
) -> None:
    sources = {word for source, _ in corpus["train"] for word in source.split()}
    targets = {word for _, target in corpus["train"] for word in target.split()}
    assert len(sources) >= 100 and len(targets) >= 100


def test_every_lexicon_entry_is_frequent_in_train(
    corpus: dict[str, list[tuple[str, str]]],
) -> None:
    counts = Counter(word for source, _ in corpus["train"] for word in source.split())
    verbs = {**toy.TRANSITIVE_VERBS, **toy.INTRANSITIVE_VERBS}
    entries = {noun: counts[noun] + counts[entry.plural] for noun, entry in toy.NOUNS.items()}
    for verb, entry in verbs.items():
        entries[verb] = counts[verb] + counts[entry.third_singular] + counts[entry.past]
    for table in (toy.ADJECTIVES, toy.NUMBERS, toy.PRONOUNS, toy.PREPOSITIONS, toy.ADVERBS):
        entries |= {word: counts[word] for word in table}
    rare = {word: count for word, count in entries.items() if count < 100}
    assert not rare, f"lexicon entries seen fewer than 100 times in train: {rare}"


def test_translation_is_a_function_of_the_source() -> None:
    # Drawn without removing repeats, so short sentences come up many times.
    rng = random.Random(0)
    targets: dict[str, set[str]] = defaultdict(set)
    for _ in range(5000):
        source, target = render_pair(toy._sample_clause(rng))
        targets[source].add(target)
    assert all(len(found) == 1 for found in targets.values())
    assert len(targets) < 5000  # some sources did repeat, so the check had teeth


def test_each_morvan_word_form_comes_from_one_lexicon_entry() -> None:
    # Then every target token names its English word: no accidental homographs.
    forms: list[str] = []
    for noun in toy.NOUNS.values():
        forms += [noun.stem, noun.stem + toy.PLURAL_SUFFIX[noun.cls]]
    for stem in (*toy.ADJECTIVES.values(), *toy.ARTICLE_STEMS.values()):
        forms += [stem + suffix for suffix in toy.AGREEMENT_SUFFIX.values()]
    for verb in (*toy.TRANSITIVE_VERBS.values(), *toy.INTRANSITIVE_VERBS.values()):
        forms += [
            verb.stem + tense + person
            for tense in toy.TENSE_SUFFIX.values()
            for person in toy.PERSON_SUFFIX.values()
        ]
    forms += [word for word, _ in toy.PRONOUNS.values()]
    for table in (toy.NUMBERS, toy.PREPOSITIONS, toy.ADVERBS):
        forms += table.values()
    assert len(forms) == len(set(forms))


# --- the grammar, on hand-built sentences ------------------------------------------------


def test_docstring_example() -> None:
    clause = Clause(
        NounPhrase("dog", "the", adjective="big"),
        "see",
        obj=NounPhrase("cat", "two", plural=True, adjective="small"),
        place=("in", NounPhrase("garden", "the")),
    )
    source, target = render_pair(clause)
    assert source == "the big dog sees two small cats in the garden ."
    assert target == "muk vasta ta hort te da sivol liptoi oda vidat ."
    assert f"    {source}\n    {target}\n" in toy.__doc__


def test_verb_goes_last_after_the_object() -> None:
    clause = Clause(NounPhrase("woman", "the"), "carry", obj=NounPhrase("box", "a"))
    assert render_pair(clause) == ("the woman carries a box .", "lish te kist no nosat .")


def test_place_phrase_moves_next_to_the_subject_and_adverb_precedes_the_verb() -> None:
    clause = Clause(
        NounPhrase("man", "the"),
        "find",
        obj=NounPhrase("key", "a"),
        place=("under", NounPhrase("bridge", "the")),
        adverb="today",
    )
    source, target = render_pair(clause)
    assert source == "the man finds a key under the bridge today ."
    # subject | place phrase with postposition | object | adverb | verb
    assert target == "dorn ta most te pod zok no hodi trovat ."


def test_intransitive_verb_also_goes_last() -> None:
    clause = Clause(NounPhrase("cat", "the"), "sleep", place=("in", NounPhrase("garden", "the")))
    assert render_pair(clause) == ("the cat sleeps in the garden .", "siv to hort te da spavat .")


@pytest.mark.parametrize(
    ("phrase", "english", "morvan"),
    [
        (NounPhrase("dog", "the", adjective="big"), "the big dog", "muk vasta ta"),
        (NounPhrase("dog", "the", True, "big"), "the big dogs", "mukan vastai tai"),
        (NounPhrase("cat", "a", adjective="big"), "a big cat", "siv vasto no"),
        (NounPhrase("cat", "three", True, "big"), "three big cats", "sivol vastoi tiru"),
        (NounPhrase("garden", "the", adjective="big"), "the big garden", "hort vaste te"),
        (NounPhrase("garden", "the", True, "big"), "the big gardens", "hortet vastei tei"),
    ],
)
def test_noun_phrase_is_mirrored_and_agrees_with_class_and_number(
    phrase: NounPhrase, english: str, morvan: str
) -> None:
    assert " ".join(source_noun_phrase(phrase)) == english
    assert " ".join(target_noun_phrase(phrase)) == morvan


@pytest.mark.parametrize(
    ("subject", "tense", "english_verb", "morvan_verb"),
    [
        ("i", "present", "see", "vidum"),
        ("you", "present", "see", "vidis"),
        ("she", "present", "sees", "vidat"),
        ("we", "present", "see", "vidumen"),
        ("they", "past", "saw", "vidirant"),
        (NounPhrase("dog", "the"), "present", "sees", "vidat"),
        (NounPhrase("dog", "the", plural=True), "present", "see", "vidant"),
        (NounPhrase("dog", "five", plural=True), "past", "saw", "vidirant"),
    ],
)
def test_verb_agrees_with_the_subject(
    subject: NounPhrase | str, tense: str, english_verb: str, morvan_verb: str
) -> None:
    clause = Clause(subject, "see", tense, obj=NounPhrase("bird", "a"))
    source, target = render_pair(clause)
    assert english_verb in source.split()
    assert target.split()[-2] == morvan_verb  # last word before "."


def test_numbers_make_the_noun_plural_and_do_not_agree() -> None:
    phrase = NounPhrase("child", "seven", plural=True, adjective="old")
    assert source_noun_phrase(phrase) == ["seven", "old", "children"]
    assert target_noun_phrase(phrase) == ["pimol", "sarnoi", "neli"]
    with pytest.raises(ValueError):
        NounPhrase("child", "seven")  # a number needs a plural noun


def test_an_is_english_spelling_only() -> None:
    assert source_noun_phrase(NounPhrase("man", "a", adjective="old")) == ["an", "old", "man"]
    assert target_noun_phrase(NounPhrase("man", "a", adjective="old")) == ["dorn", "sarna", "na"]
    assert source_noun_phrase(NounPhrase("apple", "a")) == ["an", "apple"]
