"""The `seq2seq` command: thin wrappers that parse, load a config, and call the library.

Errors a user can cause print one line to stderr and exit with code 2.
"""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from seq2seq.errors import Seq2SeqError
from seq2seq.inspection.commands import attention, info, plot

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train Transformer translation models, translate, and score BLEU.")

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file (see configs/toy.yaml).")]
CheckpointArg = Annotated[Path, typer.Argument(help="A checkpoint written by `train` (*.pt).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a config key, e.g. --set train.lr=0.001 (repeatable).")]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def prepare(config: ConfigArg, set_: SetOpt = None) -> None:
    """Train the SentencePiece model(s) on the config's training text."""
    from seq2seq.config import load_config
    from seq2seq.prepare import prepare as run_prepare

    cfg = load_config(config, set_ or [])
    run_dir = Path(cfg.train.run_dir)
    if any(run_dir.glob("*.pt")):  # its checkpoints need the tokenizer they were trained with
        _fail(f"{run_dir} already holds checkpoints trained with its tokenizer; set another "
              "train.run_dir, or retrain from scratch with `train --overwrite`")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_prepare(cfg, log=lambda m: typer.echo(m, err=True))


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
    from seq2seq.translate import Translator

    if sentences and input:
        _fail("give sentences as arguments or --input FILE, not both")
    translator = Translator.from_checkpoint(checkpoint, device)
    options = dict(beam_size=beam_size, length_penalty=length_penalty,
                   max_len_ratio=max_len_ratio, batch_size=batch_size)
    if sentences or input:
        lines = list(sentences) if sentences else read_lines(input)
        _write_lines(translator.translate(lines, **options), output)
        return
    translator.translate([], **options)  # check the options before creating the output file
    out = open(output, "w", encoding="utf-8") if output else sys.stdout
    try:
        # A terminal gets an answer per line; a pipe is read in chunks so batches stay dense.
        chunk = 1 if sys.stdin.isatty() else 1000
        for lines in _chunks(sys.stdin.buffer, chunk):
            out.write("".join(t + "\n" for t in translator.translate(lines, **options)))
            out.flush()
    finally:
        if output:
            out.close()


def _chunks(stream, size: int):
    """Lines of a binary stream, decoded as UTF-8 (terminators stripped), `size` at a time."""
    lines = []
    for number, raw in enumerate(stream, 1):
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
    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


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
    from seq2seq.checkpoint import write_average

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
        _print_error(error)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _print_error(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
