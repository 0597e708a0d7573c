"""Evaluate a checkpoint (or a file of translations): score it against references, and say
exactly how: the decoding settings, the files and the metrics' signatures."""

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from seq2seq.checkpoint import checkpoint_config, load_checkpoint
from seq2seq.corpora.parallel import corpus_spec
from seq2seq.data import STDIN, read_lines
from seq2seq.engines import export_config, is_export_dir, load_translator
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write, check_output
from seq2seq.metrics import DEFAULT_METRICS, DEFAULT_TOKENIZE, check_metrics, score
from seq2seq.moses import (
    PROTOCOLS,
    TOK_PROTOCOL,
    check_protocol,
    moses_pipeline,
    protocol_files,
    sacremoses_version,
)
from seq2seq.text_progress import stderr_is_terminal, translate_with_progress
from seq2seq.translate import Translator


def default_test_files(checkpoint: Path) -> tuple[Path, Path]:
    """data.test's source and target files, from the checkpoint's own config; a missing one
    is a Seq2SeqError naming data.test (and the directory a relative path is read from)."""
    config = (export_config(checkpoint) if is_export_dir(checkpoint)
              else checkpoint_config(load_checkpoint(checkpoint), str(checkpoint)))
    if not config.data.test:
        raise Seq2SeqError("give --src and --ref (the checkpoint's config has no data.test)")
    spec = corpus_spec(config, "data.test")
    if spec.kind != "plain":  # src and ref are read as two aligned files
        raise Seq2SeqError(f"data.test is a {spec.kind} corpus ({spec.name}); evaluate reads "
                           "two aligned files: give --src and --ref")
    return spec.files


def scored_files(checkpoint: Path, src: Path | None, ref: Path | None, hyp: Path | None
                 ) -> tuple[Path | None, Path]:
    """(src, ref): both given, or both data.test's; one without the other is refused, since
    a reference belongs to its own source (and --hyp needs its reference too)."""
    given = src if hyp is None else hyp
    if given is None and ref is None:
        return default_test_files(checkpoint)
    if ref is None:
        option = "--src" if hyp is None else "--hyp"
        raise Seq2SeqError(f"{option} needs --ref (its reference file); give both, or neither "
                           "to use the checkpoint's data.test files")
    if given is None:
        raise Seq2SeqError("--ref needs --src (or --hyp); give both, or neither to use the "
                           "checkpoint's data.test files")
    return src, ref


def evaluate(checkpoint: Path | None, src: Path | None, ref: Path | None,
             hyp: Path | None = None, beam_size: int | None = None,
             length_penalty: float | None = None, batch_size: int | None = None,
             lowercase: bool = False, device: str = "auto", output: Path | None = None, *,
             max_len_ratio: float | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
             tokenize: str = DEFAULT_TOKENIZE, progress: bool = False,
             protocol: str = PROTOCOLS[0], tok_ref: Path | None = None,
             lang: str | None = None) -> dict:
    """Corpus scores of the checkpoint's translations of src (or of the file hyp) against ref.

    Scores detokenized output against raw references. Returns a dict with the scores, their
    sacreBLEU signatures, BLEU's breakdown, the sentence count, the decoding settings (None
    when hyp is scored) and the files read and written. Options left as None take the
    checkpoint's decode config; src and ref default to its data.test. progress: a bar on a
    terminal's stderr while translating, and a summary line on stderr after it.
    protocol multi30k-tok adds "protocols": BLEU the papers' way (seq2seq/moses.py) against
    tok_ref (default: found from ref, see moses.protocol_files) in language lang, beside
    sacreBLEU's cased and lowercased BLEU.
    """
    if checkpoint is None and hyp is None:
        raise Seq2SeqError("give a checkpoint to translate --src, or --hyp FILE to score")
    check_metrics(metrics, tokenize, lowercase)
    check_protocol(protocol, tok_ref, lang)
    if checkpoint is None and ref is None:
        raise Seq2SeqError("give --ref (there is no checkpoint to take data.test from)")
    src, ref = scored_files(checkpoint, src, ref, hyp)
    if hyp is not None:
        src = None  # scoring a file: the source plays no part
    if protocol == TOK_PROTOCOL:  # every file and sacremoses checked before translating
        ref, tok_ref, lang = protocol_files(ref, tok_ref, lang)
        moses_line = moses_pipeline(lang)
    if output is not None:  # before any translating, and never over an input
        stdin = sys.stdin if STDIN in (src, ref, hyp, tok_ref) else None
        output = check_output(output, [checkpoint, src, ref, hyp, tok_ref], "-o", stdin=stdin)
    references = nonempty(read_lines(ref), ref, "reference")
    if tok_ref is not None:
        tok_references = nonempty(read_lines(tok_ref), tok_ref, "tokenized reference")
        check_aligned(tok_ref, len(tok_references), ref, len(references))
    hypotheses, decoding = _hypotheses(checkpoint, src, hyp, ref, len(references), device,
                                       (beam_size, length_penalty, max_len_ratio, batch_size),
                                       progress)
    if output is not None:
        text = "".join(h + "\n" for h in hypotheses).encode("utf-8")
        atomic_write(output, lambda f: f.write(text))
    scores = score(hypotheses, references, lowercase=lowercase, metrics=metrics,
                   tokenize=tokenize)
    files = {"checkpoint": checkpoint, "src": src, "ref": ref, "hyp": hyp, "output": output}
    if protocol == TOK_PROTOCOL:
        files["tok_ref"] = tok_ref
    result = {**scores.to_dict(), "sentences": len(references), "metrics": list(metrics),
              "tokenize": tokenize, "lowercase": lowercase, "decoding": decoding,
              "protocol": protocol,
              "files": {k: None if v is None else str(v) for k, v in files.items()}}
    if protocol == TOK_PROTOCOL:
        tokenized = [moses_line(h) for h in hypotheses]
        result["protocols"] = protocol_scores(hypotheses, references, tokenized,
                                              tok_references, lang, tokenize)
    return result


def _hypotheses(checkpoint: Path | None, src: Path | None, hyp: Path | None, ref: Path,
                n_refs: int, device: str, options: tuple, progress: bool
                ) -> tuple[list[str], dict | None]:
    """(hypotheses, decoding settings): the file hyp's lines (no model loaded, settings
    None), or the checkpoint's translations of src with options (beam_size, length_penalty,
    max_len_ratio, batch_size) over its decode config; each checked against n_refs lines."""
    if hyp is not None:
        hypotheses = nonempty(read_lines(hyp), hyp, "hypothesis")
        check_aligned(hyp, len(hypotheses), ref, n_refs)
        return hypotheses, None
    sources = nonempty(read_lines(src), src, "source")
    check_aligned(src, len(sources), ref, n_refs)
    translator = load_translator(checkpoint, device)  # an exported folder: CTranslate2
    decoding = decoding_settings(translator, *options)

    def translate(lines: list[str]) -> list[str]:
        return translator.translate(
            lines, beam_size=decoding["beam_size"], length_penalty=decoding["length_penalty"],
            max_len_ratio=decoding["max_len_ratio"], batch_size=decoding["batch_size"])

    if not progress:
        return translate(sources), decoding
    return translate_with_progress(translate, sources, decoding["batch_size"],
                                   bar=stderr_is_terminal()), decoding


def protocol_scores(hypotheses: list[str], references: list[str], tokenized: list[str],
                    tok_references: list[str], lang: str, tokenize: str = DEFAULT_TOKENIZE
                    ) -> dict[str, dict]:
    """BLEU three ways, by protocol name: sacreBLEU cased and lowercased on the raw text,
    and the papers' multi30k-tok (multi-bleu.perl's BLEU: no further tokenization, no
    smoothing) on the tokenized text. Each with its sacreBLEU signature and breakdown.

    Args:
        tokenized: the hypotheses through moses.moses_pipeline(lang).
        tok_references: the tokenized references, made the same way.
    """
    runs = {"sacrebleu-cased": score(hypotheses, references, metrics=("bleu",),
                                     tokenize=tokenize),
            "sacrebleu-lowercased": score(hypotheses, references, lowercase=True,
                                          metrics=("bleu",), tokenize=tokenize),
            TOK_PROTOCOL: score(tokenized, tok_references, lowercase=True, metrics=("bleu",),
                                tokenize="none", smooth="none")}
    out = {name: scores.to_dict() for name, scores in runs.items()}
    out[TOK_PROTOCOL]["pipeline"] = (f"lowercase, normalize-punctuation -l {lang}, tokenizer "
                                     f"-l {lang} (sacremoses {sacremoses_version()})")
    return out


def decoding_settings(translator: Translator, beam_size: int | None = None,
                      length_penalty: float | None = None, max_len_ratio: float | None = None,
                      batch_size: int | None = None) -> dict:
    """Every decode setting the translations come from: the checkpoint's decode config with
    the given options over it, checked (Translator.options)."""
    beam, alpha, ratio, size = translator.options(beam_size, length_penalty, max_len_ratio,
                                                  batch_size)
    settings = dataclasses.asdict(translator.decode)
    settings.update(beam_size=beam, length_penalty=alpha, max_len_ratio=ratio, batch_size=size)
    return settings


def check_aligned(path: Path, count: int, ref: Path, ref_count: int) -> None:
    """Refuse a file whose line count differs from the reference's, naming both counts."""
    if count != ref_count:
        raise Seq2SeqError(f"{path} has {count} lines but {ref} has {ref_count}; they must "
                           "be line-aligned")


def nonempty(lines: list[str], path: Path, kind: str) -> list[str]:
    """The lines of a file that must hold some, else one Seq2SeqError naming it."""
    if not lines:
        raise Seq2SeqError(f"the {kind} file {path} is empty; give one sentence per line")
    return lines
