"""The papers' Multi30k text (seq2seq/moses.py): what the Moses steps make of hand-written
lines, where the tokenized and raw references are found, and the one-line errors."""

import importlib.util
import sys
from pathlib import Path

import pytest

from seq2seq.errors import Seq2SeqError
from seq2seq.moses import (
    check_language,
    check_protocol,
    is_tok_file,
    moses_lines,
    protocol_files,
    raw_candidates,
    tok_candidates,
)

needs_sacremoses = pytest.mark.skipif(importlib.util.find_spec("sacremoses") is None,
                                      reason="the moses extra (sacremoses) is not installed")

# What lowercase.perl | normalize-punctuation.perl -l LANG | tokenizer.perl -l LANG (no -a,
# escaping on) writes, as the release's data/task1/tok files show it.
ENGLISH = [
    # lowercased; "'s" split off to the right (English), escaped; brackets and commas apart
    ("A man's dog, in a (red) hat.", "a man &apos;s dog , in a ( red ) hat ."),
    # hyphens stay inside words (no -a); a final period is split off
    ("Three people on two dirt-bikes.", "three people on two dirt-bikes ."),
    # an apostrophe after a number, as in the release's val.en ("about 4' in diameter")
    ("About 4' in diameter.", "about 4 &apos; in diameter ."),
    # normalize-punctuation moves a period inside the closing quote (English style)
    ('A sign says "Stop".', "a sign says &quot; stop . &quot;"),
    # & | < > [ ] are escaped; the en dash becomes a hyphen
    ("Tom & Jerry | <b> [x] \u2013 fun", "tom &amp; jerry &#124; &lt; b &gt; &#91; x &#93; - fun"),
    # ’ between letters is an apostrophe; elsewhere it becomes " (the perl script's table)
    ("It\u2019s the dogs\u2019 toys", "it &apos;s the dogs &quot; toys"),
    # lowercased first, so the next word starts lower-case and "mr." keeps its period
    ("Mr. Smith runs.", "mr. smith runs ."),
    ("2,000 people  wait", "2,000 people wait"),
]
# Raw lines of Multi30k (val, or where marked test_2016_flickr) and the same lines of the
# release's tokenized files.
RELEASE = [
    ("en", "A man in a blue shirt is holding a sign that says \"Come on now ... what's gayer "
     "than tea.\"", "a man in a blue shirt is holding a sign that says &quot; come on now ... "
     "what &apos;s gayer than tea . &quot;"),  # val line 656
    ("en", "An older man is sitting outside on a bench in front a large banner that says, "
     "\"Memoria Justicia Sin Olvido.\"", "an older man is sitting outside on a bench in front "
     "a large banner that says , &quot; memoria justicia sin olvido . &quot;"),  # line 812
    ("en", "People attending a J.P. Morgan Corporate Challenge.",
     "people attending a j.p. morgan corporate challenge ."),  # line 705
    ("en", "A man with a disability who doesn't have legs is walking with another man who is "
     "entered into a marathon.", "a man with a disability who doesn &apos;t have legs is "
     "walking with another man who is entered into a marathon ."),  # line 912
    ("en", "2 females, 1 from germany and 1 from China, compete in a wrestling match on a mat.",
     "2 females , 1 from germany and 1 from china , compete in a wrestling match on a "
     "mat ."),  # line 884
    ("de", "Zwei Menschen halten einen gro\u00dfen umgekehrten Globus mit einem Durchmesser von "
     "ca. 120\u00a0cm und es wirkt so, als w\u00fcrde ein Kind \u00fcber die Antarktis "
     "springen.", "zwei menschen halten einen gro\u00dfen umgekehrten globus mit einem "
     "durchmesser von ca. 120 cm und es wirkt so , als w\u00fcrde ein kind \u00fcber die "
     "antarktis springen ."),  # val line 76: a no-break space before "cm"
    ("de", "Eine Frau h\u00e4lt einen gro\u00dfen Scheck f\u00fcr \"Kids' Food Basket\".",
     "eine frau h\u00e4lt einen gro\u00dfen scheck f\u00fcr &quot; kids &apos; food basket "
     "&quot; ."),  # test_2016_flickr line 457
    ("de", "Zwei Jungen essen ihr McDonald's-Men\u00fc im Au\u00dfenbereich, umgeben von vielen "
     "anderen Leuten.", "zwei jungen essen ihr mcdonald &apos; s-men\u00fc im au\u00dfenbereich "
     ", umgeben von vielen anderen leuten ."),  # test_2016_flickr line 792
]
GERMAN = [
    # no English contractions: the apostrophe is split off on both sides
    ("Ein Mann's Hund.", "ein mann &apos; s hund ."),
    # „ and “ become " ; German style keeps the comma outside the quote
    ("Er sagt \u201eHallo\u201c, dann geht er.", "er sagt &quot; hallo &quot; , dann geht er ."),
]


@needs_sacremoses
@pytest.mark.parametrize(("raw", "tokenized"), ENGLISH)
def test_english_lines_come_out_as_the_release_tokenizes_them(raw: str, tokenized: str):
    assert moses_lines([raw], "en") == [tokenized]


@needs_sacremoses
@pytest.mark.parametrize(("lang", "raw", "tokenized"), RELEASE)
def test_release_lines_come_out_as_in_the_release(lang: str, raw: str, tokenized: str):
    assert moses_lines([raw], lang) == [tokenized]


@needs_sacremoses
@pytest.mark.parametrize(("raw", "tokenized"), GERMAN)
def test_german_lines_come_out_as_the_release_tokenizes_them(raw: str, tokenized: str):
    assert moses_lines([raw], "de") == [tokenized]


def test_tokenized_reference_is_found_in_tok_then_beside_the_raw_file(tmp_path: Path):
    raw = tmp_path / "test_2016_flickr.de"
    assert tok_candidates(raw) == [tmp_path / "tok/test_2016_flickr.lc.norm.tok.de",
                                   tmp_path / "test_2016_flickr.lc.norm.tok.de"]
    raw.write_text("Ein Hund.\n")
    with pytest.raises(Seq2SeqError, match="no tokenized reference .*download multi30k"):
        protocol_files(raw, None, None)
    (tmp_path / "test_2016_flickr.lc.norm.tok.de").write_text("ein hund .\n")
    assert protocol_files(raw, None, None) == (raw, tmp_path / "test_2016_flickr.lc.norm.tok.de",
                                               "de")
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok/test_2016_flickr.lc.norm.tok.de").write_text("ein hund .\n")
    assert protocol_files(raw, None, None)[1] == tmp_path / "tok/test_2016_flickr.lc.norm.tok.de"


def test_a_tokenized_ref_finds_its_raw_file_and_lang_overrides_the_suffix(tmp_path: Path):
    tok = tmp_path / "tok" / "val.lc.norm.tok.en"
    assert is_tok_file(tok) and not is_tok_file(tmp_path / "val.en")
    assert raw_candidates(tok) == [tmp_path / "tok/val.en", tmp_path / "val.en"]
    tok.parent.mkdir()
    tok.write_text("a dog .\n")
    with pytest.raises(Seq2SeqError, match="no raw reference for .*--tok-ref"):
        protocol_files(tok, None, None)
    (tmp_path / "val.en").write_text("A dog.\n")
    assert protocol_files(tok, None, None) == (tmp_path / "val.en", tok, "en")
    assert protocol_files(tmp_path / "val.en", tok, "fr") == (tmp_path / "val.en", tok, "fr")
    with pytest.raises(Seq2SeqError, match="is a tokenized file; give the raw reference"):
        protocol_files(tok, tok, None)


def test_bad_protocol_language_and_stray_options_are_one_line():
    with pytest.raises(Seq2SeqError, match="unknown protocol 'moses'; known: sacrebleu, "):
        check_protocol("moses")
    with pytest.raises(Seq2SeqError, match="--tok-ref and --lang belong to --protocol "):
        check_protocol("sacrebleu", lang="de")
    with pytest.raises(Seq2SeqError, match=r"handles en, de, fr, cs .*not 'ja' \(--lang\)$"):
        check_language("ja")
    with pytest.raises(Seq2SeqError, match=r"not 'tgt' \(the suffix of x.tgt\); give --lang"):
        check_language("tgt", "the suffix of x.tgt")
    with pytest.raises(Seq2SeqError, match="stdin.*--tok-ref"):
        protocol_files(Path("-"), None, None)


def test_without_sacremoses_the_pipeline_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "sacremoses", None)  # import sacremoses now fails
    with pytest.raises(Seq2SeqError, match=r"needs sacremoses: pip install 'seq2seq\[moses\]'"):
        moses_lines(["a dog ."], "en")
