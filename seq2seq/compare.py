"""Compare systems on one test set: each system's scores with 95% confidence intervals, and
the p-value of each against the first (the baseline), from sacreBLEU's paired tests."""

from collections.abc import Sequence
from pathlib import Path

from seq2seq.checkpoint import ZIP_MAGIC
from seq2seq.data import read_lines
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluate import check_aligned, decoding_settings, nonempty
from seq2seq.metrics import (
    DEFAULT_METRICS,
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    DEFAULT_SMOOTH,
    DEFAULT_TOKENIZE,
    METHODS,
    PairedResult,
    check_metrics,
    paired_test,
)
from seq2seq.moses import PROTOCOLS, TOK_PROTOCOL, check_protocol, moses_pipeline, protocol_files
from seq2seq.translate import Translator


def tests_for(method: str) -> tuple[str, ...]:
    """bootstrap, ar or both -> the paired tests to run, in that order."""
    if method == "both":
        return tuple(METHODS)
    if method not in METHODS:
        raise Seq2SeqError(f"unknown method {method!r}; known: {', '.join(METHODS)}, both")
    return (method,)


def compare(systems: Sequence[Path], ref: Path, src: Path | None = None, *,
            method: str = "bootstrap", n_samples: int | None = None, seed: int = DEFAULT_SEED,
            metrics: Sequence[str] = DEFAULT_METRICS, tokenize: str = DEFAULT_TOKENIZE,
            lowercase: bool = False, beam_size: int | None = None,
            batch_size: int | None = None, device: str = "auto", protocol: str = PROTOCOLS[0],
            tok_ref: Path | None = None, lang: str | None = None) -> dict:
    """Scores, confidence intervals and p-values against systems[0] of each system on ref.

    Args:
        systems: hypothesis files, or checkpoints (which translate src first); two or more.
        method: bootstrap, ar (approximate randomisation) or both.
        n_samples: resamples (bootstrap) or trials (ar); None takes sacreBLEU's defaults.
            The confidence intervals always come from bootstrap resampling.
        protocol: multi30k-tok scores the systems' lines lowercased, Moses-normalised and
            -tokenized against tok_ref (see moses.protocol_files), with no further
            tokenization and, for BLEU, no smoothing: the papers' way.
    Returns a dict: the settings, one entry per system with its scores, and the signatures.
    """
    if len(systems) < 2:
        raise Seq2SeqError(f"compare needs at least two systems (the first is the baseline), "
                           f"got {len(systems)}")
    tests = tests_for(method)
    if n_samples is not None and n_samples < 1:
        raise Seq2SeqError(f"--n-samples must be >= 1, got {n_samples}")
    check_metrics(metrics, tokenize, lowercase)
    if check_protocol(protocol, tok_ref, lang) == TOK_PROTOCOL:
        ref, tok_ref, lang = protocol_files(ref, tok_ref, lang)
        moses_line = moses_pipeline(lang)
    references = nonempty(read_lines(ref), ref, "reference")
    if tok_ref is not None:  # the papers' text is what gets scored, from here on
        tokenized = nonempty(read_lines(tok_ref), tok_ref, "tokenized reference")
        check_aligned(tok_ref, len(tokenized), ref, len(references))
    hypotheses, decoding = _system_outputs(list(systems), ref, references, src, beam_size,
                                           batch_size, device)
    smooth = DEFAULT_SMOOTH
    if tok_ref is not None:
        hypotheses = [[moses_line(h) for h in hyps] for hyps in hypotheses]
        references, tokenize, lowercase, smooth = tokenized, "none", True, "none"
    samples = {t: n_samples or DEFAULT_SAMPLES[t] for t in tests}
    runs = {t: paired_test(hypotheses, references, t, samples[t], seed, metrics, tokenize,
                           lowercase, n_confidence=n_samples or DEFAULT_SAMPLES["bootstrap"],
                           smooth=smooth)
            for t in tests}
    rows = [{"name": str(path), "checkpoint": decoding[i] is not None,
             "decoding": decoding[i], "identical_to_baseline": i > 0 and hyps == hypotheses[0],
             "lines_differing": sum(a != b for a, b in zip(hyps, hypotheses[0], strict=True)),
             "scores": {m: _cell(runs, m, i) for m in metrics}}
            for i, (path, hyps) in enumerate(zip(systems, hypotheses, strict=True))]
    return {"ref": str(ref), "src": None if src is None else str(src),
            "sentences": len(references), "metrics": list(metrics), "tokenize": tokenize,
            "lowercase": lowercase, "method": method, "n_samples": samples, "seed": seed,
            "protocol": protocol, "tok_ref": None if tok_ref is None else str(tok_ref),
            "systems": rows,
            "signatures": {t: runs[t].signatures for t in tests}}


def _cell(runs: dict[str, PairedResult], metric: str, i: int) -> dict:
    """One system's score of one metric: the corpus score, the bootstrap mean and 95%
    half-width, and a p-value per test (None for the baseline)."""
    ci_from = runs.get("bootstrap") or runs["ar"]
    s = ci_from.scores[metric][i]
    cell = {"score": round(s.score, 2), "mean": _round(s.mean, 2), "ci95": _round(s.ci, 2)}
    for test, run in runs.items():
        cell[f"p_{test}"] = _round(run.scores[metric][i].p_value, 4)
    return cell


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _system_outputs(systems: list[Path], ref: Path, references: list[str], src: Path | None,
                    beam_size: int | None, batch_size: int | None, device: str
                    ) -> tuple[list[list[str]], list[dict | None]]:
    """Each system's lines: a file's as they are, a checkpoint's translations of src.

    Every file is read and checked before any model is loaded."""
    checkpoints = [_is_checkpoint(path) for path in systems]
    outputs: list[list[str]] = []
    for path, is_checkpoint in zip(systems, checkpoints, strict=True):
        lines = [] if is_checkpoint else nonempty(read_lines(path), path, "hypothesis")
        if not is_checkpoint:
            check_aligned(path, len(lines), ref, len(references))
        outputs.append(lines)
    decoding: list[dict | None] = [None] * len(systems)
    if not any(checkpoints):
        return outputs, decoding
    if src is None:
        first = systems[checkpoints.index(True)]
        raise Seq2SeqError(f"{first} is a checkpoint; give --src to translate with it")
    sources = nonempty(read_lines(src), src, "source")
    check_aligned(src, len(sources), ref, len(references))
    for i, path in enumerate(systems):
        if checkpoints[i]:
            translator = Translator.from_checkpoint(path, device)
            decoding[i] = decoding_settings(translator, beam_size, batch_size=batch_size)
            d = decoding[i]
            outputs[i] = translator.translate(
                sources, beam_size=d["beam_size"], length_penalty=d["length_penalty"],
                max_len_ratio=d["max_len_ratio"], batch_size=d["batch_size"])
    return outputs, decoding


def _is_checkpoint(path: Path) -> bool:
    """Whether a file is a checkpoint (torch.save writes a zip archive), not plain text."""
    try:
        with open(path, "rb") as f:
            return f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    except OSError:  # reading it as text says what is wrong
        return False
