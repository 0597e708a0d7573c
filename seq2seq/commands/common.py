"""What the commands share: the config and checkpoint arguments, --set, stdin as `-`, and
failing in one line."""

from pathlib import Path
from typing import Annotated

import typer

from seq2seq.errors import Seq2SeqError
from seq2seq.files import check_regular_file

STDIN = Path("-")  # as a file to read: standard input (data.read_lines; importing it needs torch)


def config_file(path: Path) -> Path:
    """A folder, FIFO or device given as the config would hang or read as empty."""
    return check_regular_file(path, "config file")


def checkpoint_file(path: Path) -> Path:
    """A run directory given as the checkpoint means its best.pt (see resolve_checkpoint)."""
    from seq2seq.checkpoint import resolve_checkpoint

    return resolve_checkpoint(path)


def model_path(path: Path) -> Path:
    """A folder `seq2seq export` wrote stays as it is (it runs on CTranslate2); any other
    path is read as checkpoint_file reads it."""
    from seq2seq.engines import is_export_dir

    return path if is_export_dir(path) else checkpoint_file(path)


ConfigArg = Annotated[Path, typer.Argument(help="YAML config file (see configs/toy.yaml).",
                                           callback=config_file, metavar="CONFIG")]
CheckpointArg = Annotated[Path, typer.Argument(
    help="A checkpoint written by `train` (*.pt), or its run directory (uses best.pt).",
    callback=checkpoint_file, metavar="CHECKPOINT")]
ModelArg = Annotated[Path, typer.Argument(
    help="A checkpoint written by `train` (*.pt), its run directory (uses best.pt), or a "
         "folder written by `export` (runs on CTranslate2).",
    callback=model_path, metavar="CHECKPOINT")]
MetricsOpt = Annotated[str, typer.Option(help="Comma-separated, any of bleu, chrf, ter.")]
TokenizeOpt = Annotated[str, typer.Option(
    help="sacreBLEU's BLEU tokenizer: 13a, intl, zh, char, none, ...")]
LowercaseOpt = Annotated[bool, typer.Option(help="Case-insensitive scores.")]
TokRefOpt = Annotated[Path | None, typer.Option(
    metavar="FILE", help="multi30k-tok's tokenized reference. Default: "
                         "tok/SPLIT.lc.norm.tok.LANG beside --ref.")]
LangOpt = Annotated[str | None, typer.Option(
    help="multi30k-tok's target language (en, de, fr, cs). Default: the tokenized "
         "reference's suffix.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE",
    help="Override a config key, e.g. --set train.lr=0.001 (repeatable).")]


def one_stdin(paths: dict[str, Path | None]) -> None:
    """Refuse `-` (stdin) for more than one of the options in `paths` (name -> value)."""
    taking = [name for name, path in paths.items() if path == STDIN]
    if len(taking) > 1:
        raise Seq2SeqError(f"{' and '.join(taking)} both read stdin (`-`); give at most one "
                           "of them as `-`")


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
