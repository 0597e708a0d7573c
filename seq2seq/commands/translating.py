"""`translate`: sentences, a file or stdin in; one line out per line in."""

import contextlib
import io
import sys
from pathlib import Path
from typing import Annotated

import typer

from seq2seq.commands.common import STDIN, CheckpointArg, fail
from seq2seq.errors import Seq2SeqError


def translate(
    checkpoint: CheckpointArg,
    sentences: Annotated[list[str] | None, typer.Argument(
        help="Sentences to translate; without them, stdin is read line by line.",
        metavar="SENTENCES")] = None,
    input: Annotated[Path | None, typer.Option(
        "-i", "--input", metavar="FILE", help="Read this file (`-`: stdin).")] = None,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", metavar="FILE", help="Write this file.")] = None,
    beam_size: Annotated[int | None, typer.Option(
        help="1 = greedy. Default: the checkpoint's decode.beam_size.")] = None,
    length_penalty: Annotated[float | None, typer.Option(
        help="GNMT length penalty alpha. Default: checkpoint's.")] = None,
    max_len_ratio: Annotated[float | None, typer.Option(
        help="Output tokens <= ratio * source tokens + 10.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sentences per batch.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Translate sentences, a file, or stdin; one output line per input line."""
    from seq2seq.data import read_lines
    from seq2seq.files import check_output
    from seq2seq.translate import Translator

    if sentences and input:
        fail("give sentences as arguments or --input FILE, not both")
    if input == STDIN:  # `-i -` is stdin, read as without --input
        input = None
    reads_stdin = not (sentences or input)
    if output is not None:  # before the model is loaded and anything translated
        output = check_output(output, [checkpoint, input], "-o",
                              stdin=sys.stdin if reads_stdin else None)
    translator = Translator.from_checkpoint(checkpoint, device)
    beam, alpha, ratio, size = translator.options(beam_size, length_penalty, max_len_ratio,
                                                  batch_size)
    options = dict(beam_size=beam, length_penalty=alpha, max_len_ratio=ratio, batch_size=size)
    if not reads_stdin:
        lines = list(sentences) if sentences else read_lines(input)
        _write_lines(translator.translate(lines, **options), output)
        return
    # A terminal gets an answer per line; a pipe is read in chunks so batches stay dense.
    chunk = 1 if sys.stdin.isatty() else 1000
    with _output_stream(output) as out:
        for lines in _chunks(sys.stdin.buffer, chunk):
            out.write("".join(t + "\n" for t in translator.translate(lines, **options)))
            out.flush()


@contextlib.contextmanager
def _output_stream(output: Path | None):
    """stdout, or a text file written under a temporary name and renamed when complete, so
    an interrupted run leaves the old file or none."""
    from seq2seq.files import atomic_file

    if output is None:
        yield sys.stdout
        return
    with atomic_file(output) as raw:
        out = io.TextIOWrapper(raw, encoding="utf-8")
        yield out
        out.flush()
        out.detach()  # atomic_file syncs and closes the file itself


def _chunks(stream, size: int):
    """Lines of a binary stream, decoded as UTF-8 (terminators stripped), `size` at a time."""
    from seq2seq.data import UTF16_HELP, looks_like_utf16

    lines = []
    for number, raw in enumerate(stream, 1):
        if looks_like_utf16(raw, first=number == 1):
            raise Seq2SeqError(f"stdin: {UTF16_HELP}")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:  # the locale's decoder would crash or hide the byte
            raise Seq2SeqError(f"stdin, line {number}: invalid UTF-8 (byte 0x{raw[e.start]:02x}); "
                               "re-encode the input as UTF-8") from None
        lines.append(line.rstrip("\r\n"))
        if len(lines) == size:
            yield lines
            lines = []
    if lines:
        yield lines


def _write_lines(lines: list[str], output: Path | None) -> None:
    from seq2seq.files import atomic_write

    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write(output, lambda f: f.write(text.encode("utf-8")))
