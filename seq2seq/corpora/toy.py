"""A made-up language pair: the bundled toy corpus for the demo and the tests.

The source side is a small, regular slice of English. The target side,
"Morvan", is invented, and it is built so that a translation model has to
learn alignments rather than copy words:

* Word order. A clause is ``subject verb object place adverb`` in English and
  ``subject place object adverb verb`` in Morvan: the verb goes last (SOV),
  the place phrase moves up next to the subject, and the adverb sits just
  before the verb.
* Noun phrases are mirrored. English ``article/number adjective noun`` becomes
  ``noun adjective article/number``; prepositions become postpositions
  ("in the garden" -> "hort te da").
* Noun classes. Every noun belongs to class A, B or C. The class is a property
  of the word, like gender in German, so it has to be memorised per noun. The
  plural suffix depends on the class (muk -> mukan, siv -> sivol, hort -> hortet).
* Agreement. Adjectives and articles take a suffix for the noun's class and
  number (vast -> vasta, vastai, vasto, vastoi, vaste, vastei). The verb takes a
  tense suffix and then a suffix for the subject's person and number
  (vid -> vidat "sees", vidant "they see", vidirum "I saw").
* Numbers "two" .. "twelve" make the noun plural; Morvan has its own number
  words, which do not agree.

Every sentence is one clause, 3 to 13 tokens long. Joining two clauses with
"and" was tried and left out: those long sentences were most of a small
model's errors after a short training run.

One example pair (tokens are separated by single spaces, "." is a token):

    the big dog sees two small cats in the garden .
    muk vasta ta hort te da sivol liptoi oda vidat .

The translation is a deterministic function of the English sentence: no
synonyms, no optional words, so a small model can get close to BLEU 100.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seq2seq.corpora.toy_lexicon import (  # noqa: F401 (re-exported for tests and readers)
    ADJECTIVES,
    ADVERBS,
    AGREEMENT_SUFFIX,
    ANIMATE,
    ARTICLE_STEMS,
    INTRANSITIVE_VERBS,
    NOUNS,
    NUMBERS,
    PERSON_SUFFIX,
    PLACE,
    PLURAL_SUFFIX,
    PREPOSITIONS,
    PRONOUNS,
    TENSE_SUFFIX,
    THING,
    TRANSITIVE_VERBS,
    Noun,
    Verb,
)
from seq2seq.errors import Seq2SeqError

# ---------------------------------------------------------------------------
# Sentence structure and rendering to both languages.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NounPhrase:
    """A noun with its article or number word and an optional adjective.

    noun: English singular, a key of NOUNS.
    det: "the", "a", or a number word, a key of NUMBERS.
    plural: True for more than one; a number word needs True, "a" needs False.
    adjective: a key of ADJECTIVES, or None.
    """

    noun: str
    det: str
    plural: bool = False
    adjective: str | None = None

    def __post_init__(self) -> None:
        if (self.det in NUMBERS and not self.plural) or (self.det == "a" and self.plural):
            raise ValueError(f"determiner {self.det!r} does not fit plural={self.plural}")


@dataclass(frozen=True)
class Clause:
    """One clause: subject, verb and optional object, place phrase and adverb.

    subject: a NounPhrase, or a pronoun (a key of PRONOUNS).
    verb: English base form, a key of TRANSITIVE_VERBS or INTRANSITIVE_VERBS.
    tense: "present" or "past".
    obj: the object; required for a transitive verb, None for an intransitive one.
    place: (preposition, noun phrase), e.g. ("in", NounPhrase("garden", "the")), or None.
    adverb: a key of ADVERBS, or None.
    """

    subject: NounPhrase | str
    verb: str
    tense: str = "present"
    obj: NounPhrase | None = None
    place: tuple[str, NounPhrase] | None = None
    adverb: str | None = None

    def __post_init__(self) -> None:
        if (self.verb in TRANSITIVE_VERBS) != (self.obj is not None):
            raise ValueError(f"verb {self.verb!r} and object {self.obj!r} do not fit")


def source_noun_phrase(phrase: NounPhrase) -> list[str]:
    """English words of a noun phrase: article or number, adjective, noun."""
    noun = NOUNS[phrase.noun].plural if phrase.plural else phrase.noun
    words = [phrase.adjective, noun] if phrase.adjective else [noun]
    det = phrase.det
    if det == "a" and words[0][0] in "aeiou":
        det = "an"  # English spelling only: "an old man"; Morvan ignores it
    return [det, *words]


def target_noun_phrase(phrase: NounPhrase) -> list[str]:
    """Morvan words of a noun phrase: noun, adjective, article or number."""
    noun = NOUNS[phrase.noun]
    agreement = AGREEMENT_SUFFIX[(noun.cls, phrase.plural)]
    words = [noun.stem + PLURAL_SUFFIX[noun.cls] if phrase.plural else noun.stem]
    if phrase.adjective:
        words.append(ADJECTIVES[phrase.adjective] + agreement)
    if phrase.det in NUMBERS:
        words.append(NUMBERS[phrase.det])  # number words do not agree
    else:
        words.append(ARTICLE_STEMS[phrase.det] + agreement)
    return words


def _person(subject: NounPhrase | str) -> str:
    """Person and number of a subject, a key of PERSON_SUFFIX."""
    if isinstance(subject, str):
        return PRONOUNS[subject][1]
    return "3pl" if subject.plural else "3sg"


def _verb(base: str) -> Verb:
    """The lexicon entry of a verb, transitive or intransitive."""
    return TRANSITIVE_VERBS.get(base) or INTRANSITIVE_VERBS[base]


def source_clause(clause: Clause) -> list[str]:
    """English words of a clause: subject verb [object] [place] [adverb]."""
    if isinstance(clause.subject, str):
        words = [clause.subject]
    else:
        words = source_noun_phrase(clause.subject)
    verb = _verb(clause.verb)
    if clause.tense == "past":
        words.append(verb.past)
    else:
        words.append(verb.third_singular if _person(clause.subject) == "3sg" else clause.verb)
    if clause.obj:
        words += source_noun_phrase(clause.obj)
    if clause.place:
        preposition, phrase = clause.place
        words += [preposition, *source_noun_phrase(phrase)]
    if clause.adverb:
        words.append(clause.adverb)
    return words


def target_clause(clause: Clause) -> list[str]:
    """Morvan words of a clause: subject [place] [object] [adverb] verb."""
    if isinstance(clause.subject, str):
        words = [PRONOUNS[clause.subject][0]]
    else:
        words = target_noun_phrase(clause.subject)
    if clause.place:
        preposition, phrase = clause.place
        words += [*target_noun_phrase(phrase), PREPOSITIONS[preposition]]
    if clause.obj:
        words += target_noun_phrase(clause.obj)
    if clause.adverb:
        words.append(ADVERBS[clause.adverb])
    stem = _verb(clause.verb).stem
    words.append(stem + TENSE_SUFFIX[clause.tense] + PERSON_SUFFIX[_person(clause.subject)])
    return words


def render_pair(clause: Clause) -> tuple[str, str]:
    """Render a clause as an (English, Morvan) pair of lines, each ending in " ."."""
    return " ".join(source_clause(clause)) + " .", " ".join(target_clause(clause)) + " ."


# ---------------------------------------------------------------------------
# Sampling: how often each construction appears.
# ---------------------------------------------------------------------------

# Chosen so that an English sentence has about 8 tokens on average and every
# verb ending (pronoun subjects carry the rarer persons) turns up often in
# 20,000 pairs; a d_model 128 Transformer then learns the pairs in ~1000 steps.
P_PRONOUN_SUBJECT = 0.35
P_TRANSITIVE = 0.6
P_PAST = 0.4
P_PLACE = 0.5
P_ADVERB = 0.3
P_ADJECTIVE = 0.5
P_PLURAL = 0.35
P_NUMBER_IF_PLURAL = 0.5
P_INDEFINITE_IF_SINGULAR = 0.4


def _sample_noun_phrase(rng: random.Random, roles: tuple[str, ...]) -> NounPhrase:
    """Draw a noun phrase whose noun fills one of `roles` (ANIMATE, THING, PLACE)."""
    noun = rng.choice([word for word, entry in NOUNS.items() if entry.role in roles])
    adjective = rng.choice(list(ADJECTIVES)) if rng.random() < P_ADJECTIVE else None
    if rng.random() < P_PLURAL:
        det = rng.choice(list(NUMBERS)) if rng.random() < P_NUMBER_IF_PLURAL else "the"
        return NounPhrase(noun, det, plural=True, adjective=adjective)
    det = "a" if rng.random() < P_INDEFINITE_IF_SINGULAR else "the"
    return NounPhrase(noun, det, adjective=adjective)


def _sample_clause(rng: random.Random) -> Clause:
    """Draw one clause; only people and animals are subjects, only places follow a preposition."""
    if rng.random() < P_PRONOUN_SUBJECT:
        subject: NounPhrase | str = rng.choice(list(PRONOUNS))
    else:
        subject = _sample_noun_phrase(rng, (ANIMATE,))
    tense = "past" if rng.random() < P_PAST else "present"
    if rng.random() < P_TRANSITIVE:
        verb = rng.choice(list(TRANSITIVE_VERBS))
        obj = _sample_noun_phrase(rng, (ANIMATE, THING))
    else:
        verb, obj = rng.choice(list(INTRANSITIVE_VERBS)), None
    place = None
    if rng.random() < P_PLACE:
        place = (rng.choice(list(PREPOSITIONS)), _sample_noun_phrase(rng, (PLACE,)))
    adverb = rng.choice(list(ADVERBS)) if rng.random() < P_ADVERB else None
    return Clause(subject, verb, tense, obj, place, adverb)


def generate_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Draw `n` pairs with distinct English sides, in a fixed order for a given seed.

    n: how many (English, Morvan) pairs to return, >= 0.
    seed: seeds a private random.Random, so the same seed gives the same list.
    Returns a list of (source line, target line) with no trailing newlines.
    """
    if n < 0:
        raise Seq2SeqError(f"cannot generate {n} sentence pairs; ask for 0 or more")
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    # The language has billions of sentences, so this bound only stops a runaway request.
    attempts_left = 20 * n + 1000
    while len(pairs) < n:
        if attempts_left == 0:
            raise Seq2SeqError(f"found only {len(pairs)} distinct toy sentences; ask for fewer")
        attempts_left -= 1
        source, target = render_pair(_sample_clause(rng))
        if source not in seen:
            seen.add(source)
            pairs.append((source, target))
    return pairs


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    """Write `lines` to `path` as UTF-8, one per line, each ending in '\\n'."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


def write_toy_corpus(
    out_dir: Path,
    seed: int = 1,
    n_train: int = 20000,
    n_dev: int = 500,
    n_test: int = 500,
) -> dict[str, int]:
    """Write {train,dev,test}.{src,tgt} into `out_dir` and return the line count of each split.

    out_dir: folder to write into; created if missing, existing files are replaced.
    seed, n_train, n_dev, n_test: the random seed and the number of pairs per split.
    Returns {"train": n_train, "dev": n_dev, "test": n_test}. No English sentence
    appears in two splits, or twice in one.
    """
    sizes = {"train": n_train, "dev": n_dev, "test": n_test}
    for split, size in sizes.items():
        if size < 0:
            raise Seq2SeqError(f"the {split} split needs 0 or more pairs, got {size}")
    pairs = generate_pairs(n_test + n_dev + n_train, seed)
    # Test and dev come first in the stream, so they stay the same when n_train changes.
    chunks = {
        "test": pairs[:n_test],
        "dev": pairs[n_test : n_test + n_dev],
        "train": pairs[n_test + n_dev :],
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, chunk in chunks.items():
        _write_lines(out_dir / f"{split}.src", [source for source, _ in chunk])
        _write_lines(out_dir / f"{split}.tgt", [target for _, target in chunk])
    return sizes
