"""The toy language's lexicon: English word -> Morvan word, with classes and endings.

A hand-written table, kept apart from the grammar in toy.py so both stay readable.
"""

from typing import NamedTuple

# ---------------------------------------------------------------------------
# Lexicon: English word -> Morvan word. Hand-written so it can be read.
# ---------------------------------------------------------------------------

ANIMATE, THING, PLACE = "animate", "thing", "place"


class Noun(NamedTuple):
    """A noun: its English plural, Morvan stem, class (A/B/C) and the role it can fill."""

    plural: str
    stem: str
    cls: str
    role: str


NOUNS: dict[str, Noun] = {
    # People and animals: subjects and objects.
    "dog": Noun("dogs", "muk", "A", ANIMATE),
    "cat": Noun("cats", "siv", "B", ANIMATE),
    "man": Noun("men", "dorn", "A", ANIMATE),
    "woman": Noun("women", "lish", "C", ANIMATE),
    "child": Noun("children", "pim", "B", ANIMATE),
    "bird": Noun("birds", "fel", "C", ANIMATE),
    "horse": Noun("horses", "gald", "A", ANIMATE),
    "teacher": Noun("teachers", "vorm", "C", ANIMATE),
    "farmer": Noun("farmers", "tusk", "B", ANIMATE),
    "fox": Noun("foxes", "ren", "A", ANIMATE),
    "king": Noun("kings", "rask", "B", ANIMATE),
    "girl": Noun("girls", "tilv", "C", ANIMATE),
    # Things: objects only.
    "apple": Noun("apples", "ulm", "B", THING),
    "book": Noun("books", "kast", "A", THING),
    "boat": Noun("boats", "nav", "C", THING),
    "letter": Noun("letters", "pisk", "B", THING),
    "stone": Noun("stones", "gor", "C", THING),
    "ball": Noun("balls", "dum", "A", THING),
    "box": Noun("boxes", "kist", "B", THING),
    "cake": Noun("cakes", "mel", "C", THING),
    "flower": Noun("flowers", "flin", "A", THING),
    "key": Noun("keys", "zok", "B", THING),
    "egg": Noun("eggs", "ov", "A", THING),
    # Places: inside a place phrase only.
    "garden": Noun("gardens", "hort", "C", PLACE),
    "house": Noun("houses", "dom", "A", PLACE),
    "river": Noun("rivers", "rin", "B", PLACE),
    "forest": Noun("forests", "silv", "C", PLACE),
    "market": Noun("markets", "tarn", "A", PLACE),
    "city": Noun("cities", "urb", "B", PLACE),
    "field": Noun("fields", "pald", "C", PLACE),
    "school": Noun("schools", "skol", "A", PLACE),
    "kitchen": Noun("kitchens", "kuch", "B", PLACE),
    "bridge": Noun("bridges", "most", "C", PLACE),
    "mountain": Noun("mountains", "berk", "A", PLACE),
}

# Plural suffix of a noun, by class: muk -> mukan, siv -> sivol, lish -> lishet.
PLURAL_SUFFIX = {"A": "an", "B": "ol", "C": "et"}

# Suffix that adjectives and articles take, by (noun class, plural).
AGREEMENT_SUFFIX = {
    ("A", False): "a",
    ("A", True): "ai",
    ("B", False): "o",
    ("B", True): "oi",
    ("C", False): "e",
    ("C", True): "ei",
}

# Article stems; the agreement suffix completes them: "the dog" -> "muk ta".
ARTICLE_STEMS = {"the": "t", "a": "n"}

ADJECTIVES = {
    "big": "vast",
    "small": "lipt",
    "old": "sarn",
    "young": "miv",
    "new": "dren",
    "red": "kup",
    "green": "zel",
    "black": "nok",
    "white": "blis",
    "happy": "hul",
    "sad": "trem",
    "tall": "dav",
    "clever": "quen",
    "quiet": "shil",
    "angry": "grum",
    "strange": "yost",
}

NUMBERS = {
    "two": "oda",
    "three": "tiru",
    "four": "kesa",
    "five": "pemo",
    "six": "suki",
    "seven": "neli",
    "eight": "ovar",
    "nine": "nuvi",
    "ten": "desa",
    "eleven": "desko",
    "twelve": "dodu",
}


class Verb(NamedTuple):
    """A verb: English third-person-singular and past forms, and the Morvan stem."""

    third_singular: str
    past: str
    stem: str


# Keyed by the English base form ("see"), which is also the plural present form.
TRANSITIVE_VERBS = {
    "see": Verb("sees", "saw", "vid"),
    "like": Verb("likes", "liked", "lub"),
    "find": Verb("finds", "found", "trov"),
    "follow": Verb("follows", "followed", "sek"),
    "carry": Verb("carries", "carried", "nos"),
    "watch": Verb("watches", "watched", "glad"),
    "help": Verb("helps", "helped", "pom"),
    "call": Verb("calls", "called", "zov"),
    "hear": Verb("hears", "heard", "aud"),
    "push": Verb("pushes", "pushed", "tolk"),
    "chase": Verb("chases", "chased", "gon"),
    "paint": Verb("paints", "painted", "mal"),
    "draw": Verb("draws", "drew", "risk"),
    "feed": Verb("feeds", "fed", "korm"),
}
INTRANSITIVE_VERBS = {
    "sleep": Verb("sleeps", "slept", "spav"),
    "run": Verb("runs", "ran", "beg"),
    "sing": Verb("sings", "sang", "kant"),
    "dance": Verb("dances", "danced", "tanz"),
    "wait": Verb("waits", "waited", "ched"),
    "swim": Verb("swims", "swam", "plav"),
    "laugh": Verb("laughs", "laughed", "rid"),
    "walk": Verb("walks", "walked", "hod"),
}

# Verb = stem + tense suffix + person suffix: vid + ir + ant = vidirant "they saw".
TENSE_SUFFIX = {"present": "", "past": "ir"}
PERSON_SUFFIX = {"1sg": "um", "2sg": "is", "3sg": "at", "1pl": "umen", "3pl": "ant"}

# English pronoun -> (Morvan pronoun, person). "you" is always singular, so
# that the English sentence alone decides the verb ending.
PRONOUNS = {
    "i": ("mi", "1sg"),
    "you": ("tu", "2sg"),
    "he": ("sa", "3sg"),
    "she": ("si", "3sg"),
    "we": ("mis", "1pl"),
    "they": ("san", "3pl"),
}

# English prepositions become Morvan postpositions.
PREPOSITIONS = {"in": "da", "on": "ber", "near": "pel", "behind": "zad", "under": "pod"}

ADVERBS = {
    "quickly": "zum",
    "slowly": "lenk",
    "often": "chast",
    "again": "opet",
    "today": "hodi",
    "loudly": "grom",
}
