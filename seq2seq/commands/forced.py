"""`score`: forced decoding of given translations, one line per pair, or a JSON summary;
for filtering a corpus or reranking an n-best list."""

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from seq2seq.commands.common import fail
from seq2seq.errors import Seq2SeqError


def score(
    checkpoints: Annotated[list[Path], typer.Argument(
        help="A checkpoint written by `train` (*.pt); several score as an ensemble.")],
    src: Annotated[Path | None, typer.Option(help="Source file, one sentence a line.")] = None,
    tgt: Annotated[Path | None, typer.Option(
        help="Target file, line i translating --src's line i. Without --src and --tgt, "
             "stdin holds SOURCE<TAB>TARGET lines.")] = None,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Write the per-pair lines here.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Pairs per batch.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print a JSON summary (the per-pair lines go to -o, if given).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Score given translations under the model: per pair, a tab-separated line of the total
    log-probability, target tokens (EOS included), mean log-probability per token and
    perplexity."""
    from seq2seq.data import read_lines
    from seq2seq.files import check_output
    from seq2seq.translate import Translator

    if (src is None) != (tgt is None):
        fail("give both --src and --tgt, or neither and SOURCE<TAB>TARGET lines on stdin")
    reads_stdin = src is None
    if output is not None:  # before the model is loaded and anything scored
        output = check_output(output, [*checkpoints, src, tgt], "-o",
                              stdin=sys.stdin if reads_stdin else None)
    translator = Translator.from_checkpoints(checkpoints, device)
    _, _, _, size = translator.options(1, None, None, batch_size)
    if reads_stdin:
        sources, targets = _stdin_pairs()
    else:
        sources, targets = read_lines(src), read_lines(tgt)
        if len(sources) != len(targets):
            fail(f"--src {src} has {len(sources)} lines but --tgt {tgt} has {len(targets)}; "
                 "score needs line i of one to translate line i of the other")
    scores = translator.score(sources, targets, size)
    lines = "".join(f"{s.log_prob:.4f}\t{s.tokens}\t{s.mean_log_prob:.4f}\t{s.perplexity:.4f}\n"
                    for s in scores)
    summary = _summary(scores)
    if output is not None or not as_json:
        _write(lines, output)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(f"scored {summary['pairs']} pairs, {summary['tokens']} tokens: mean "
                   f"log-probability {summary['mean_log_prob']:.4f}, perplexity "
                   f"{summary['perplexity']:.2f}", err=True)


def _summary(scores) -> dict:
    """Corpus totals: the mean and perplexity are per token over all pairs."""
    tokens = sum(s.tokens for s in scores)
    total = sum(s.log_prob for s in scores)
    mean = total / tokens if tokens else 0.0
    return {"pairs": len(scores), "tokens": tokens, "log_prob": total, "mean_log_prob": mean,
            "perplexity": math.exp(-mean) if -mean < 709 else math.inf}


def _stdin_pairs() -> tuple[list[str], list[str]]:
    """SOURCE<TAB>TARGET lines from stdin, split at the first tab."""
    from seq2seq.data import UTF16_HELP, looks_like_utf16

    raw = sys.stdin.buffer.read()
    if looks_like_utf16(raw, first=True):
        raise Seq2SeqError(f"stdin: {UTF16_HELP}")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise Seq2SeqError(f"stdin, line {line}: invalid UTF-8 (byte 0x{raw[e.start]:02x}); "
                           "re-encode the input as UTF-8") from None
    lines = text.split("\n")  # only "\n" ends a line, as data.read_lines reads files
    if lines[-1] == "":
        lines.pop()
    sources, targets = [], []
    for number, line in enumerate(lines, 1):
        source, tab, target = line.removesuffix("\r").partition("\t")
        if not tab:
            raise Seq2SeqError(f"stdin, line {number} has no TAB; score reads SOURCE<TAB>TARGET "
                               "lines, or give --src and --tgt")
        sources.append(source)
        targets.append(target)
    return sources, targets


def _write(text: str, output: Path | None) -> None:
    from seq2seq.files import atomic_write

    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write(output, lambda f: f.write(text.encode("utf-8")))
