"""What the commands share: the config and checkpoint arguments, --set, and failing in one line."""

from pathlib import Path
from typing import Annotated

import typer

from seq2seq.files import check_regular_file


def config_file(path: Path) -> Path:
    """A folder, FIFO or device given as the config would hang or read as empty."""
    return check_regular_file(path, "config file")


ConfigArg = Annotated[Path, typer.Argument(help="YAML config file (see configs/toy.yaml).",
                                           callback=config_file)]
CheckpointArg = Annotated[Path, typer.Argument(help="A checkpoint written by `train` (*.pt).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a config key, e.g. --set train.lr=0.001 (repeatable).")]


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
