"""`evaluate`, `average` and `download`: scoring a checkpoint, averaging checkpoints,
and fetching a known corpus."""

import json
from pathlib import Path
from typing import Annotated

import typer

from seq2seq.commands.common import CheckpointArg, fail


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
                          lowercase, device, output, progress=True)
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


def average(checkpoints: Annotated[list[Path], typer.Argument(help="Checkpoints to average.")],
            output: Annotated[Path, typer.Option("-o", "--output", help="Write here.")]) -> None:
    """Average the weights of several checkpoints of one model."""
    from seq2seq.averaging import write_average

    write_average(checkpoints, output)
    typer.echo(f"averaged {len(checkpoints)} checkpoints -> {output}", err=True)


def download(corpus: Annotated[str, typer.Argument(help="Corpus name: multi30k.")],
             dir: Annotated[Path, typer.Option(help="Destination folder.")] = Path(
                 "data/multi30k"),
             mirror: Annotated[Path | None, typer.Option(
                 help="Copy the files from this local folder instead of the network.")] = None
             ) -> None:
    """Fetch a known corpus, verify its checksums, and unpack it to plain text."""
    from seq2seq.corpora.multi30k import download_multi30k

    if corpus != "multi30k":
        fail(f"unknown corpus {corpus!r}; known: multi30k")
    paths = download_multi30k(dir, mirror=mirror, progress=True)
    typer.echo(f"{len(paths)} files ready in {dir}", err=True)
