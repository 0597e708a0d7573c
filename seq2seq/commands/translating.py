"""`translate`: sentences, a file or stdin in; one line out per line in."""

import contextlib
import io
import os
import select
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

    def translate_lines(lines: list[str]) -> list[str]:
        return translator.translate(lines, **options)

    if not reads_stdin:
        if sentences:
            _write_lines(translate_lines(list(sentences)), output)
        else:
            _write_lines(_translate_file(translate_lines, read_lines(input), size), output)
        return
    _say_ready(sys.stdin)
    with _output_stream(output) as out:
        _translate_stream(translate_lines, sys.stdin.buffer, out)


def _translate_file(translate, lines: list[str], batch_size: int) -> list[str]:
    """A file's lines translated under a progress bar (on a terminal's stderr), with a
    summary line on stderr at the end."""
    from seq2seq.text_progress import stderr_is_terminal, translate_with_progress

    return translate_with_progress(translate, lines, batch_size, bar=stderr_is_terminal())


def _say_ready(stdin) -> None:
    """At a terminal, say on stderr that input is awaited and how to end it."""
    from seq2seq.text_progress import stderr_is_terminal

    if _is_tty(stdin) and stderr_is_terminal():
        typer.echo("ready: type a sentence and press Enter to translate it; Ctrl-D ends",
                   err=True)


def _translate_stream(translate, stream, out) -> None:
    """Translate each group of lines as soon as it has arrived and write the answers at
    once, so a program can drive the command line by line; a summary on stderr at the end
    when some input came and was not typed at a terminal."""
    import time

    from seq2seq.text_progress import summary

    start, count = time.perf_counter(), 0
    for lines in _chunks(stream, STDIN_CHUNK):
        out.write("".join(t + "\n" for t in translate(lines)))
        out.flush()
        count += len(lines)
    if count and not _is_tty(stream):  # empty input: nothing out, not even a summary
        typer.echo(summary(count, time.perf_counter() - start), err=True)


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


# At most this many lines are translated together: those already waiting on stdin (a file
# or a fast pipe fills the chunks, so batches stay dense), never waiting for more.
STDIN_CHUNK = 1000


def _chunks(stream, size: int):
    """Lines of a binary stream, decoded as UTF-8 (terminators stripped): each time, every
    complete line that has arrived (at most `size`), without waiting for more."""
    from seq2seq.data import UTF16_HELP, looks_like_utf16

    number = 0
    for raws in _StreamLines(stream).groups(size):
        lines = []
        for raw in raws:
            number += 1
            if looks_like_utf16(raw, first=number == 1):
                raise Seq2SeqError(f"stdin: {UTF16_HELP}")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:  # the locale's decoder would crash or hide it
                raise Seq2SeqError(f"stdin, line {number}: invalid UTF-8 (byte "
                                   f"0x{raw[e.start]:02x}); re-encode the input as UTF-8"
                                   ) from None
            lines.append(line.rstrip("\r\n"))
        yield lines


class _StreamLines:
    """Raw lines of a binary stream, read as they arrive: os.read on its descriptor (one
    call returns what a pipe holds), select to see whether more is waiting; a stream
    without a descriptor (in memory) is read with read1."""

    def __init__(self, stream):
        self.stream, self.fd = stream, _descriptor(stream)
        self.partial, self.lines, self.ended = b"", [], False

    def groups(self, size: int):
        """Lists of raw lines (b"...\\n"), each every line already here, up to `size`."""
        while True:
            while len(self.lines) < size and not self.ended:
                if self.lines and not self._waiting():
                    break  # answer what has arrived; do not wait for more
                self._read()
            if not self.lines:
                return
            group, self.lines = self.lines[:size], self.lines[size:]
            yield group

    def _read(self) -> None:
        data = os.read(self.fd, 1 << 16) if self.fd is not None else self.stream.read1(1 << 16)
        if not data:
            self.ended = True
            if self.partial:  # a last line without a terminator
                self.lines.append(self.partial)
                self.partial = b""
            return
        pieces = (self.partial + data).split(b"\n")
        self.partial = pieces.pop()
        self.lines.extend(piece + b"\n" for piece in pieces)

    def _waiting(self) -> bool:
        """Whether more input can be read at once (an in-memory stream always can)."""
        if self.fd is None:
            return True
        try:
            ready, _, _ = select.select([self.fd], [], [], 0)
        except (OSError, ValueError):  # e.g. a descriptor select cannot watch
            return False
        return bool(ready)


def _descriptor(stream) -> int | None:
    """The stream's file descriptor, or None for a stream in memory."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return fd


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _write_lines(lines: list[str], output: Path | None) -> None:
    from seq2seq.files import atomic_write

    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write(output, lambda f: f.write(text.encode("utf-8")))
