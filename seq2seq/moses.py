"""The papers' Multi30k text: lowercased, Moses punctuation-normalised, Moses-tokenized.

The Multi30k release's data/task1/tok files, which published Multi30k scores are computed
on, come from its scripts/task1-tokenize.sh: each raw line goes through Moses'
``lowercase.perl``, then ``normalize-punctuation.perl -l LANG``, then ``tokenizer.perl -l
LANG -threads 2`` (a December 2017 Moses snapshot), with neither ``-a`` (hyphens stay inside
words: ``dirt-bikes``) nor ``-no-escape`` (so ``'`` becomes ``&apos;``, ``"`` ``&quot;``,
``&`` ``&amp;``). `moses_pipeline` does the same with sacremoses, in the same order (the order
matters: the tokenizer keeps a period attached when the next word starts lower-case).
docs/evaluation.md says how the papers score these files and how `evaluate` does.

sacremoses is an optional extra, imported only when a pipeline is built.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from seq2seq.errors import Seq2SeqError

PROTOCOLS = ("sacrebleu", "multi30k-tok")  # evaluate's --protocol; the first is the default
TOK_PROTOCOL = "multi30k-tok"
TOK_SUFFIX = "lc.norm.tok"  # the release's names: {split}.lc.norm.tok.{lang}
TOK_DIR = "tok"  # the release's folder beside raw/; ours beside the raw files
# The Multi30k languages. normalize-punctuation.perl gives every language but en and cs the
# German rule for a quote beside a comma, sacremoses only de, es and fr: they agree on these
# four and not on, say, Italian, so a pipeline refuses other languages.
LANGS = ("en", "de", "fr", "cs")
INSTALL = "pip install 'seq2seq[moses]'"


def check_protocol(name: str, tok_ref: Path | None = None, lang: str | None = None) -> str:
    """The name of a scoring protocol, checked: one of PROTOCOLS, and a tokenized reference
    or a language given only with the protocol they belong to."""
    if name not in PROTOCOLS:
        raise Seq2SeqError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    if name != TOK_PROTOCOL and (tok_ref is not None or lang is not None):
        raise Seq2SeqError(f"--tok-ref and --lang belong to --protocol {TOK_PROTOCOL}")
    return name


def check_language(lang: str, where: str = "--lang") -> str:
    """A language the pipeline reproduces the release's scripts for (LANGS), checked."""
    if lang not in LANGS:
        fix = "" if where == "--lang" else "; give --lang LANG"
        raise Seq2SeqError(f"the {TOK_PROTOCOL} protocol handles {', '.join(LANGS)} (the "
                           f"Multi30k languages), not {lang!r} ({where}){fix}")
    return lang


def sacremoses_version() -> str | None:
    """sacremoses's version, or None where it is not installed."""
    try:
        import sacremoses
    except ImportError:
        return None
    return sacremoses.__version__


def moses_pipeline(lang: str) -> Callable[[str], str]:
    """A function of one raw line (no newline) -> the release's lowercased, normalised,
    tokenized line, for one language of LANGS; Seq2SeqError without sacremoses."""
    check_language(lang)
    try:
        from sacremoses import MosesPunctNormalizer, MosesTokenizer
    except ImportError:
        raise Seq2SeqError(f"the {TOK_PROTOCOL} protocol needs sacremoses: {INSTALL}") from None
    # perl_parity: ’ becomes " as in the perl script, where sacremoses would write '.
    # penn=True is sacremoses's name for the perl script's default (no -penn).
    normalizer = MosesPunctNormalizer(lang=lang, penn=True, norm_quote_commas=True,
                                      norm_numbers=True, perl_parity=True)
    tokenizer = MosesTokenizer(lang=lang)

    def line(text: str) -> str:
        # lowercase.perl, then normalize-punctuation.perl -l LANG, then tokenizer.perl -l
        # LANG: escaping on, no aggressive hyphen splitting, as the release's files show
        return tokenizer.tokenize(normalizer.normalize(text.lower()), return_str=True,
                                  escape=True, aggressive_dash_splits=False)

    return line


def moses_lines(lines: list[str], lang: str) -> list[str]:
    """Each line through `moses_pipeline(lang)`."""
    line = moses_pipeline(lang)
    return [line(text) for text in lines]


def tok_name(split: str, lang: str) -> str:
    """The release's name of a tokenized file: ``{split}.lc.norm.tok.{lang}``."""
    return f"{split}.{TOK_SUFFIX}.{lang}"


def is_tok_file(path: Path) -> bool:
    """Whether a file's name is the release's tokenized naming (``*.lc.norm.tok.LANG``)."""
    return f".{TOK_SUFFIX}." in Path(path).name


def language_of(path: Path) -> str:
    """A corpus file's language from its name's last suffix (``val.de`` -> ``de``)."""
    return Path(path).suffix.lstrip(".")


def tok_candidates(raw: Path) -> list[Path]:
    """Where the tokenized version of a raw file ``DIR/{split}.{lang}`` is looked for:
    ``DIR/tok/`` (where `download` builds it), then ``DIR/`` itself."""
    raw = Path(raw)
    name = tok_name(raw.stem, language_of(raw))
    return [raw.parent / TOK_DIR / name, raw.parent / name]


def raw_candidates(tok: Path) -> list[Path]:
    """Where the raw version of a tokenized file ``{split}.lc.norm.tok.{lang}`` is looked
    for: beside it, then in the folder above (when it is in a ``tok/`` folder)."""
    tok = Path(tok)
    split, _, lang = tok.name.partition(f".{TOK_SUFFIX}.")
    here = [tok.parent / f"{split}.{lang}"]
    return here + ([tok.parent.parent / f"{split}.{lang}"] if tok.parent.name == TOK_DIR
                   else [])


def find_first(candidates: list[Path], what: str, hint: str) -> Path:
    """The first of candidates that is a file, else one Seq2SeqError naming them all."""
    for path in candidates:
        if path.is_file():
            return path
    looked = " or ".join(str(p) for p in candidates)
    raise Seq2SeqError(f"no {what}: looked for {looked}; {hint}")


def protocol_files(ref: Path, tok_ref: Path | None, lang: str | None
                   ) -> tuple[Path, Path, str]:
    """(raw reference, tokenized reference, language) for the multi30k-tok protocol.

    Args:
        ref: the raw reference (``DIR/{split}.{lang}``: its tokenized file is looked for in
            ``DIR/tok/``, then ``DIR/``), or a tokenized one (``{split}.lc.norm.tok.{lang}``:
            its raw file is looked for beside it, then in the folder above).
        tok_ref: the tokenized reference, if given; ref is then the raw one.
        lang: the language; default the tokenized reference's last suffix.
    """
    ref = Path(ref)
    if tok_ref is not None and is_tok_file(ref):
        raise Seq2SeqError(f"--ref {ref} is a tokenized file; give the raw reference as --ref "
                           "and the tokenized one as --tok-ref")
    if tok_ref is None and is_tok_file(ref):
        tok_ref = ref
        ref = find_first(raw_candidates(tok_ref), f"raw reference for {tok_ref}",
                         "sacreBLEU's scores need it: give --ref RAW --tok-ref TOKENIZED")
    elif tok_ref is None:
        if ref == Path("-"):
            raise Seq2SeqError("--ref - (stdin) has no tokenized reference beside it; give "
                               "--tok-ref FILE")
        tok_ref = find_first(tok_candidates(ref), f"tokenized reference for {ref}",
                             "`seq2seq download multi30k` builds them (with sacremoses), or "
                             "give --tok-ref FILE")
    where = "--lang" if lang else f"the suffix of {tok_ref}"
    return ref, Path(tok_ref), check_language(lang or language_of(tok_ref), where)
