"""`translate`: sentences, a file or stdin in; one line out per line in (text), or n-best
lists and samples with their scores (tsv, jsonl)."""

import contextlib
import io
import json
import os
import select
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import typer

from seq2seq.commands.common import STDIN, ModelArg, fail
from seq2seq.errors import Seq2SeqError

Format = Literal["text", "tsv", "jsonl"]


def translate(
    checkpoint: ModelArg,
    sentences: Annotated[list[str] | None, typer.Argument(
        help="Sentences to translate; without them, stdin is read line by line. Leading "
             "arguments that are existing *.pt files are more checkpoints: an ensemble.",
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
    nbest: Annotated[int, typer.Option(
        help="The N best translations of each input (N <= beam size); with --sample, N "
             "samples. N > 1 needs --format tsv or jsonl.")] = 1,
    format_: Annotated[Format, typer.Option(
        "--format", help="text: the best translation per line; tsv: index, rank, text, "
                         "log-probability, normalised score; jsonl: the same as JSON.")
    ] = "text",
    token_scores: Annotated[bool, typer.Option(
        help="jsonl: add each token's log-probability.")] = False,
    alignment: Annotated[bool, typer.Option(
        help="jsonl: add the source token each target token attends to most.")] = False,
    alignment_layer: Annotated[int, typer.Option(
        help="Decoder layer whose cross-attention aligns; -1 = the last.")] = -1,
    sample: Annotated[bool, typer.Option(
        help="Sample instead of searching (back-translation).")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (> 0).")] = 1.0,
    top_k: Annotated[int, typer.Option(
        help="Sample from the K most probable tokens; 0 = all.")] = 0,
    top_p: Annotated[float, typer.Option(
        help="Sample from the most probable tokens reaching this probability, in (0, 1].")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed of the samples.")] = 0,
    prefix: Annotated[str | None, typer.Option(
        help="Force every output to begin with this target text.")] = None,
    prefix_tsv: Annotated[bool, typer.Option(
        help="Input lines are SOURCE<TAB>PREFIX: each output begins with its PREFIX.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Translate sentences, a file, or stdin; one output line per input line (text), or
    n-best lists and samples with scores (tsv, jsonl)."""
    from seq2seq.data import read_lines
    from seq2seq.engines import is_export_dir, load_translator
    from seq2seq.files import check_output
    from seq2seq.translate import Translator

    checkpoints, sentences = _split_checkpoints(checkpoint, sentences or [])
    if sentences and input:
        fail("give sentences as arguments or --input FILE, not both")
    if input == STDIN:  # `-i -` is stdin, read as without --input
        input = None
    _check_choices(format_, nbest, token_scores, alignment, prefix, prefix_tsv)
    if is_export_dir(checkpoint):
        _check_engine(len(checkpoints), sample, prefix is not None or prefix_tsv, token_scores,
                      alignment)
    reads_stdin = not (sentences or input)
    if output is not None:  # before the model is loaded and anything translated
        output = check_output(output, [*checkpoints, input], "-o",
                              stdin=sys.stdin if reads_stdin else None)
    translator = (load_translator(checkpoint, device) if len(checkpoints) == 1
                  else Translator.from_checkpoints(checkpoints, device))
    beam, alpha, ratio, size = translator.options(beam_size, length_penalty, max_len_ratio,
                                                  batch_size)
    options = dict(beam_size=beam, length_penalty=alpha, max_len_ratio=ratio, batch_size=size)
    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed) if sample \
        else None
    render = _renderer(translator, options, nbest, format_, sampling, prefix, prefix_tsv,
                       alignment_layer if alignment else None, token_scores)
    plain = None  # text, one best translation per line: translated under a progress bar
    if format_ == "text" and nbest == 1 and not sample and prefix is None and not prefix_tsv:
        def plain(lines: list[str]) -> list[str]:
            return translator.translate(lines, **options)

    if not reads_stdin:
        if sentences:
            _write_text(render(list(sentences), 0), output)
        else:
            _write_text(_translate_file(render, plain, read_lines(input), size), output)
        return
    _say_ready(sys.stdin)
    with _output_stream(output) as out:
        _translate_stream(render, sys.stdin.buffer, out)


def _split_checkpoints(checkpoint: Path, args: list[str]) -> tuple[list[Path], list[str]]:
    """The checkpoints (CHECKPOINT and the leading arguments that are *.pt files) and the
    sentences after them."""
    checkpoints = [checkpoint]
    while args and args[0].endswith(".pt") and Path(args[0]).is_file():
        checkpoints.append(Path(args.pop(0)))
    return checkpoints, args


def _check_choices(fmt: Format, nbest: int, token_scores: bool, alignment: bool,
                   prefix: str | None, prefix_tsv: bool) -> None:
    """Options that do not go together, refused before anything is loaded."""
    if nbest > 1 and fmt == "text":
        fail(f"--nbest {nbest} needs --format tsv or jsonl; text holds one line per input")
    if (token_scores or alignment) and fmt != "jsonl":
        fail("--token-scores and --alignment need --format jsonl")
    if prefix is not None and prefix_tsv:
        fail("give --prefix or --prefix-tsv, not both")


def _check_engine(models: int, sample: bool, prefix: bool, token_scores: bool,
                  alignment: bool) -> None:
    """What an exported folder (CTranslate2) cannot do as a checkpoint does, refused before
    it is loaded (seq2seq/engines/ct2.py says why for each)."""
    from seq2seq.engines.ct2 import REFUSED

    asked = {"ensemble": models > 1, "sample": sample, "prefix": prefix,
             "token_scores": token_scores, "alignment": alignment}
    for what, given in asked.items():
        if given:
            fail(REFUSED[what])


def _renderer(translator, options: dict, nbest: int, fmt: Format, sampling: dict | None,
              prefix: str | None, prefix_tsv: bool, alignment_layer: int | None,
              token_scores: bool) -> Callable[[list[str], int], str]:
    """A function from input lines (and the first one's index) to the output text; every
    setting checked now, before any input is read."""
    import torch

    from seq2seq.translation import check_nbest, check_sampling

    if (fmt == "text" and nbest == 1 and sampling is None and prefix is None
            and not prefix_tsv):
        return lambda lines, start: "".join(
            t + "\n" for t in translator.translate(lines, first_line=start + 1, **options))
    extras = dict(batch_size=options["batch_size"], token_scores=token_scores,
                  alignment_layer=alignment_layer)
    if alignment_layer is not None:
        translator.check_alignment_layer(alignment_layer)
    if sampling is None:
        check_nbest(nbest, options["beam_size"])

        def run(lines, prefixes):
            return translator.nbest(lines, nbest, options["beam_size"], options["length_penalty"],
                                    options["max_len_ratio"], prefixes=prefixes, **extras)
    else:
        check_sampling(nbest, sampling["temperature"], sampling["top_k"], sampling["top_p"])
        # one random stream across stdin's chunks, so no chunk repeats another's draws
        generator = torch.Generator(device=translator.device).manual_seed(sampling["seed"])

        def run(lines, prefixes):
            return translator.sample(lines, nbest, sampling["temperature"], sampling["top_k"],
                                     sampling["top_p"], generator=generator,
                                     length_penalty=options["length_penalty"],
                                     max_len_ratio=options["max_len_ratio"], prefixes=prefixes,
                                     **extras)

    def render(lines: list[str], start: int) -> str:
        extras["first_line"] = start + 1
        if prefix_tsv:
            split = [line.partition("\t") for line in lines]
            lines, prefixes = [s for s, _, _ in split], [p for _, _, p in split]
        else:
            prefixes = None if prefix is None else [prefix] * len(lines)
        return _format(run(lines, prefixes), lines, start, fmt, translator)

    return render


def _format(results, sources: list[str], start: int, fmt: Format, translator) -> str:
    """Translations as text (the best per line), tsv or jsonl rows."""
    if fmt == "text":
        return "".join(group[0].text + "\n" for group in results)
    rows = []
    for index, (group, source) in enumerate(zip(results, sources, strict=True), start):
        for rank, t in enumerate(group):
            if fmt == "tsv":
                text = " ".join(t.text.split("\t"))  # a tab inside would shift the columns
                rows.append(f"{index}\t{rank}\t{text}\t{t.log_prob:.4f}\t{t.score:.4f}")
            else:
                rows.append(json.dumps(_record(index, rank, t, source, translator),
                                       ensure_ascii=False))
    return "".join(row + "\n" for row in rows)


def _record(index: int, rank: int, t, source: str, translator) -> dict:
    """One jsonl row."""
    row = {"index": index, "rank": rank, "text": t.text, "log_prob": round(t.log_prob, 6),
           "score": round(t.score, 6), "length": len(t.tokens), "eos": t.eos}
    if t.token_log_probs is not None:
        row["token_log_probs"] = [round(p, 6) for p in t.token_log_probs]
    if t.alignment is not None:  # source token i - target token j, as fairseq prints them
        row["alignment"] = " ".join(f"{i}-{j}" for j, i in enumerate(t.alignment))
        src_ids = translator.src_tok.encode([source])[0] if source.strip() else []
        row["source_pieces"] = translator.src_tok.pieces(src_ids)
        row["pieces"] = translator.tgt_tok.pieces(t.tokens)
    return row


def _translate_file(render, plain, lines: list[str], batch_size: int) -> str:
    """A file's lines translated (under a progress bar on a terminal's stderr when the
    output is plain text), with a summary line on stderr at the end."""
    import time

    from seq2seq.text_progress import stderr_is_terminal, summary, translate_with_progress

    if plain is not None:
        outputs = translate_with_progress(plain, lines, batch_size, bar=stderr_is_terminal())
        return "".join(t + "\n" for t in outputs)
    start = time.perf_counter()
    text = render(lines, 0)
    typer.echo(summary(len(lines), time.perf_counter() - start), err=True)
    return text


def _say_ready(stdin) -> None:
    """At a terminal, say on stderr that input is awaited and how to end it."""
    from seq2seq.text_progress import stderr_is_terminal

    if _is_tty(stdin) and stderr_is_terminal():
        typer.echo("ready: type a sentence and press Enter to translate it; Ctrl-D ends",
                   err=True)


def _translate_stream(render, stream, out) -> None:
    """Translate each group of lines as soon as it has arrived and write the answers at
    once, so a program can drive the command line by line; a summary on stderr at the end
    when some input came and was not typed at a terminal."""
    import time

    from seq2seq.text_progress import summary

    start, count = time.perf_counter(), 0
    for lines in _chunks(stream, STDIN_CHUNK):
        out.write(render(lines, count))  # count: the input index of the chunk's first line
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


def _write_text(text: str, output: Path | None) -> None:
    from seq2seq.files import atomic_write

    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write(output, lambda f: f.write(text.encode("utf-8")))
