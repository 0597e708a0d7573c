"""The `seq2seq` command: thin wrappers that parse, load a config, and call the library.

Errors a user can cause print one line to stderr and exit with code 2.
"""

import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from seq2seq.errors import Seq2SeqError
from seq2seq.files import check_regular_file, reason, user_os_error
from seq2seq.inspection.commands import attention, info, plot

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train Transformer translation models, translate, and score BLEU.")


def _config_file(path: Path) -> Path:
    """A folder, FIFO or device given as the config would hang or read as empty."""
    return check_regular_file(path, "config file")


ConfigArg = Annotated[Path, typer.Argument(help="YAML config file (see configs/toy.yaml).",
                                           callback=_config_file)]
CheckpointArg = Annotated[Path, typer.Argument(help="A checkpoint written by `train` (*.pt).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a config key, e.g. --set train.lr=0.001 (repeatable).")]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def prepare(config: ConfigArg, set_: SetOpt = None) -> None:
    """Train the SentencePiece model(s) on the config's training text."""
    from functools import partial

    from seq2seq.config import load_config
    from seq2seq.prepare import check_inputs
    from seq2seq.prepare import prepare as run_prepare
    from seq2seq.training.run_dir import RunDir

    cfg = load_config(config, set_ or [])
    log = partial(typer.echo, err=True)
    with RunDir(cfg.train.run_dir, writer=True, log=log) as run:  # the one writer
        run.check_unused()  # its checkpoints need the tokenizer they were trained with
        check_inputs(cfg)
        run_prepare(cfg, log=log)


@app.command()
def train(config: ConfigArg, set_: SetOpt = None,
          resume: Annotated[bool, typer.Option(
              help="Continue exactly from RUN_DIR/last.pt.")] = False,
          overwrite: Annotated[bool, typer.Option(
              help="Delete the run directory's checkpoints and start again.")] = False,
          progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True) -> None:
    """Train a model (runs `prepare` first when the tokenizer is missing)."""
    from seq2seq.config import load_config
    from seq2seq.training.loop import Interrupted
    from seq2seq.training.loop import train as run_train

    if resume and overwrite:
        _fail("--resume and --overwrite exclude each other")
    cfg = load_config(config, set_ or [])
    try:
        run_train(cfg, resume=resume, overwrite=overwrite, progress=progress)
    except Interrupted as stop:
        _fail(str(stop), code=130)


@app.command()
def translate(
    checkpoint: CheckpointArg,
    sentences: Annotated[list[str] | None, typer.Argument(
        help="Sentences to translate; without them, stdin is read line by line.")] = None,
    input: Annotated[Path | None, typer.Option("-i", "--input", help="Read this file.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write this file.")] = None,
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
        _fail("give sentences as arguments or --input FILE, not both")
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


@app.command()
def evaluate(
    checkpoint: CheckpointArg,
    src: Annotated[Path | None, typer.Option(help="Source file. Default: data.test's.")] = None,
    ref: Annotated[Path | None, typer.Option(help="Reference file. Default: data.test's.")] = None,
    hyp: Annotated[Path | None, typer.Option(
        help="Score this hypothesis file instead of translating --src.")] = None,
    beam_size: Annotated[int | None, typer.Option(
        help="1 = greedy. Default: the checkpoint's decode.beam_size.")] = None,
    length_penalty: Annotated[float | None, typer.Option(help="GNMT alpha.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sentences per batch.")] = None,
    lowercase: Annotated[bool, typer.Option(help="Case-insensitive BLEU and chrF.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="Also write the translations here.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Translate --src and print corpus BLEU and chrF against --ref (sacreBLEU)."""
    from seq2seq.evaluate import evaluate as run_evaluate

    result = run_evaluate(checkpoint, src, ref, hyp, beam_size, length_penalty, batch_size,
                          lowercase, device, output)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        case = "lowercased" if lowercase else "cased"
        typer.echo(f"BLEU = {result['bleu']:.2f}   chrF2 = {result['chrf']:.2f}   "
                   f"({result['sentences']} sentences, {_searched(result['beam_size'])}, {case})")
        typer.echo(f"  BLEU signature:  {result['bleu_signature']}")
        typer.echo(f"  chrF2 signature: {result['chrf_signature']}")


def _searched(beam_size: int | None) -> str:
    return "scored from --hyp" if beam_size is None else f"beam {beam_size}"


@app.command()
def average(checkpoints: Annotated[list[Path], typer.Argument(help="Checkpoints to average.")],
            output: Annotated[Path, typer.Option("-o", "--output", help="Write here.")]) -> None:
    """Average the weights of several checkpoints of one model."""
    from seq2seq.averaging import write_average

    write_average(checkpoints, output)
    typer.echo(f"averaged {len(checkpoints)} checkpoints -> {output}", err=True)


@app.command()
def download(corpus: Annotated[str, typer.Argument(help="Corpus name: multi30k.")],
             dir: Annotated[Path, typer.Option(help="Destination folder.")] = Path(
                 "data/multi30k"),
             mirror: Annotated[Path | None, typer.Option(
                 help="Copy the files from this local folder instead of the network.")] = None
             ) -> None:
    """Fetch a known corpus, verify its checksums, and unpack it to plain text."""
    from seq2seq.corpora.multi30k import download_multi30k

    if corpus != "multi30k":
        _fail(f"unknown corpus {corpus!r}; known: multi30k")
    paths = download_multi30k(dir, mirror=mirror, progress=True)
    typer.echo(f"{len(paths)} files ready in {dir}", err=True)


# Looking inside a model: parameters and FLOPs, attention maps, learning curves.
app.command()(info)
app.command()(attention)
app.command()(plot)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    try:
        app()
    except Seq2SeqError as error:
        _print_error(str(error))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # `seq2seq translate ... | head`: the reader has gone
        _quiet_stdout()
        sys.exit(141)
    except Exception as error:  # last resort: a path, permission or disk the user can fix
        found = user_os_error(error)
        if found is None:  # a programming error: keep its traceback
            raise
        where = f"{found.filename}: " if found.filename else ""
        _print_error(f"{where}{reason(found)}")
        sys.exit(2)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit raises no second BrokenPipeError."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _print_error(message: str) -> None:
    typer.echo(f"error: {' '.join(message.splitlines())}", err=True)
