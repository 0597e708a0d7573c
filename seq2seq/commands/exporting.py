"""`export`: a checkpoint as a CTranslate2 model folder, which `translate DIR` runs."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from seq2seq.commands.common import CheckpointArg

Quantization = Literal["float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
                       "int16", "float16", "bfloat16"]


def export(
    checkpoint: CheckpointArg,
    output: Annotated[Path, typer.Option(
        "-o", "--output", metavar="DIR",
        help="The folder to write (replaced only if an earlier export wrote it).")],
    format_: Annotated[Literal["ctranslate2"], typer.Option(
        "--format", help="The inference engine: CTranslate2.")] = "ctranslate2",
    quantization: Annotated[Quantization, typer.Option(
        help="Weight type: float32 keeps the weights as trained; int8 is CTranslate2's "
             "fastest on a CPU.")] = "float32",
) -> None:
    """Export a Transformer checkpoint for another inference engine (CTranslate2): weights,
    SentencePiece model(s) and decode settings in one folder, for `translate DIR`."""
    from seq2seq.engines.ct2_export import export_ctranslate2

    manifest = export_ctranslate2(checkpoint, output, quantization)
    size = sum(p.stat().st_size for p in output.iterdir() if p.is_file())
    typer.echo(f"exported {checkpoint} -> {output} ({format_}, {quantization}, "
               f"{manifest['parameters']:,} parameters, {size / 2**20:.1f} MiB); translate "
               f"with: seq2seq translate {output}", err=True)
