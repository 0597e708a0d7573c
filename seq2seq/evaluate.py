"""Evaluate a checkpoint: translate a source file and score it against references."""

from pathlib import Path

from seq2seq.checkpoint import checkpoint_config, load_checkpoint
from seq2seq.data import read_lines
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write, check_output
from seq2seq.metrics import score
from seq2seq.text_progress import stderr_is_terminal, translate_with_progress
from seq2seq.translate import Translator


def default_test_files(checkpoint: Path) -> tuple[Path, Path]:
    """data.test's source and target files, from the checkpoint's own config."""
    config = checkpoint_config(load_checkpoint(checkpoint), str(checkpoint))
    if not config.data.test:
        raise Seq2SeqError("give --src and --ref (the checkpoint's config has no data.test)")
    d = config.data
    return Path(f"{d.test}.{d.src}"), Path(f"{d.test}.{d.tgt}")


def evaluate(checkpoint: Path, src: Path | None, ref: Path | None, hyp: Path | None = None,
             beam_size: int | None = None, length_penalty: float | None = None,
             batch_size: int | None = None, lowercase: bool = False, device: str = "auto",
             output: Path | None = None, progress: bool = False) -> dict:
    """Corpus BLEU and chrF of the checkpoint's translations of src against ref.

    Scores detokenized output against raw references. Returns a dict with the scores,
    sacreBLEU signatures, the sentence count and the decoding settings. progress: a bar
    on a terminal's stderr while translating, and a summary line on stderr after it.
    """
    if src is None or ref is None:
        default_src, default_ref = default_test_files(checkpoint)
        src, ref = src or default_src, ref or default_ref
    if output is not None:  # before any translating, and never over an input
        output = check_output(output, [checkpoint, src, ref, hyp], "-o")
    references = _nonempty(read_lines(ref), ref, "reference")
    beam = None
    if hyp is not None:  # scoring a file: no model needed
        hypotheses = _nonempty(read_lines(hyp), hyp, "hypothesis")
    else:
        sources = _nonempty(read_lines(src), src, "source")
        if len(sources) != len(references):
            raise Seq2SeqError(f"{src} has {len(sources)} lines but {ref} has "
                               f"{len(references)}; they must be line-aligned")
        translator = Translator.from_checkpoint(checkpoint, device)
        beam = translator.decode.beam_size if beam_size is None else beam_size
        def translate(lines: list[str]) -> list[str]:
            return translator.translate(lines, beam_size=beam, length_penalty=length_penalty,
                                        batch_size=batch_size)

        hypotheses = (translate(sources) if not progress else translate_with_progress(
            translate, sources, batch_size or translator.decode.batch_size,
            bar=stderr_is_terminal()))
    if len(hypotheses) != len(references):
        raise Seq2SeqError(f"{hyp} has {len(hypotheses)} lines but {ref} has "
                           f"{len(references)}; they must be line-aligned")
    if output is not None:
        text = "".join(h + "\n" for h in hypotheses).encode("utf-8")
        atomic_write(output, lambda f: f.write(text))
    scores = score(hypotheses, references, lowercase=lowercase)
    return {**scores.to_dict(), "sentences": len(references), "beam_size": beam,
            "lowercase": lowercase, "checkpoint": str(checkpoint)}


def _nonempty(lines: list[str], path: Path, kind: str) -> list[str]:
    """The lines of a file that must hold some, else one Seq2SeqError naming it."""
    if not lines:
        raise Seq2SeqError(f"the {kind} file {path} is empty; give one sentence per line")
    return lines
