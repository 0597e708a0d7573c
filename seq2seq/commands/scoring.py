"""`evaluate`, `average` and `download`: scoring a checkpoint or a file of translations,
averaging checkpoints, and fetching a known corpus."""

import json
from pathlib import Path
from typing import Annotated

import typer

from seq2seq.commands.common import (
    LangOpt,
    LowercaseOpt,
    MetricsOpt,
    TokenizeOpt,
    TokRefOpt,
    fail,
    model_path,
    one_stdin,
)


def _optional_checkpoint(path: Path | None) -> Path | None:
    return None if path is None else model_path(path)


def evaluate(
    checkpoint: Annotated[Path | None, typer.Argument(
        help="A checkpoint written by `train` (*.pt), its run directory (uses best.pt), or a "
             "folder written by `export` (CTranslate2); may be left out with --hyp and --ref.",
        callback=_optional_checkpoint, metavar="[CHECKPOINT]")] = None,
    src: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Source file (`-`: stdin). Default: data.test's.")] = None,
    ref: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Reference file (`-`: stdin); give it with --src or --hyp. "
                             "Default: data.test's.")] = None,
    hyp: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Score this hypothesis file (`-`: stdin) instead of translating "
                             "--src.")] = None,
    beam_size: Annotated[int | None, typer.Option(
        help="1 = greedy. Default: the checkpoint's decode.beam_size.")] = None,
    length_penalty: Annotated[float | None, typer.Option(help="GNMT alpha.")] = None,
    max_len_ratio: Annotated[float | None, typer.Option(
        help="Output tokens <= ratio * source tokens + 10.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sentences per batch.")] = None,
    metrics: MetricsOpt = "bleu,chrf",
    tokenize: TokenizeOpt = "13a",
    lowercase: LowercaseOpt = False,
    protocol: Annotated[str, typer.Option(
        help="sacrebleu, or multi30k-tok: also BLEU the papers' way, on lowercased "
             "Moses-tokenized text against the tokenized reference (see evaluation.md), "
             "beside sacreBLEU's cased and lowercased BLEU.")] = "sacrebleu",
    tok_ref: TokRefOpt = None,
    lang: LangOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="Also write the translations here.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Translate --src (or take --hyp) and print corpus scores against --ref (sacreBLEU)."""
    from seq2seq.evaluate import evaluate as run_evaluate
    from seq2seq.metrics import parse_metrics

    one_stdin({"--src": src, "--ref": ref, "--hyp": hyp, "--tok-ref": tok_ref})
    result = run_evaluate(checkpoint, src, ref, hyp, beam_size, length_penalty, batch_size,
                          lowercase, device, output, max_len_ratio=max_len_ratio,
                          metrics=parse_metrics(metrics), tokenize=tokenize, progress=True,
                          protocol=protocol, tok_ref=tok_ref, lang=lang)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo("\n".join(evaluation_lines(result)))


def evaluation_lines(result: dict) -> list[str]:
    """evaluate's text report: the scores, BLEU's breakdown, then each signature."""
    from seq2seq.metrics import LABELS

    names = result["metrics"]
    scores = "   ".join(f"{LABELS[n]} = {result[n]:.2f}" for n in names)
    case = "lowercased" if result["lowercase"] else "cased"
    decoding = result["decoding"]
    how = "scored from --hyp" if decoding is None else f"beam {decoding['beam_size']}"
    lines = [f"{scores}   ({result['sentences']} sentences, {how}, {case})"]
    width = max(len(LABELS[n]) for n in names) + 11  # "chrF2 signature:"
    if "bleu" in names:
        b = result["bleu_breakdown"]
        lines.append(f"  {'BLEU breakdown:':<{width}} "
                     f"{'/'.join(f'{p:.1f}' for p in b['precisions'])} "
                     f"(BP = {b['brevity_penalty']:.3f} ratio = {b['ratio']:.3f} "
                     f"hyp_len = {b['hyp_len']} ref_len = {b['ref_len']})")
    lines += [f"  {LABELS[n] + ' signature:':<{width}} {result[n + '_signature']}"
              for n in names]
    return lines + protocol_lines(result)


PROTOCOL_NAMES = {"multi30k-tok": "papers' (multi30k-tok)", "sacrebleu-cased": "sacreBLEU cased",
                  "sacrebleu-lowercased": "sacreBLEU lowercased"}


def protocol_lines(result: dict) -> list[str]:
    """evaluate's BLEU by protocol, when --protocol multi30k-tok asked for it: one line per
    protocol with its score and signature, then what the papers' text went through."""
    protocols = result.get("protocols")
    if not protocols:
        return []
    width = max(len(PROTOCOL_NAMES[name]) for name in protocols)
    lines = ["BLEU by protocol:"]
    lines += [f"  {PROTOCOL_NAMES[name]:<{width}}  {row['bleu']:6.2f}   {row['bleu_signature']}"
              for name, row in protocols.items()]
    lines.append(f"    tokenized reference: {result['files']['tok_ref']}")
    lines.append(f"    hypotheses through: {protocols['multi30k-tok']['pipeline']}")
    return lines


def average(checkpoints: Annotated[list[Path], typer.Argument(help="Checkpoints to average.")],
            output: Annotated[Path, typer.Option("-o", "--output", help="Write here.")]) -> None:
    """Average the weights of several checkpoints of one model."""
    from seq2seq.averaging import write_average
    from seq2seq.checkpoint import resolve_checkpoint

    checkpoints = [resolve_checkpoint(path, pick=False) for path in checkpoints]
    write_average(checkpoints, output)
    typer.echo(f"averaged {len(checkpoints)} checkpoints -> {output}", err=True)


def download(corpus: Annotated[str, typer.Argument(help="Corpus name: multi30k.")],
             dir: Annotated[Path, typer.Option(help="Destination folder.")] = Path(
                 "data/multi30k"),
             mirror: Annotated[Path | None, typer.Option(
                 help="Copy the files from this local folder instead of the network.")] = None
             ) -> None:
    """Fetch a known corpus, verify its checksums, unpack it to plain text, and build the
    papers' tokenized val and test files (with sacremoses)."""
    from seq2seq.corpora.multi30k import build_tokenized, download_multi30k
    from seq2seq.moses import INSTALL, TOK_DIR, sacremoses_version

    if corpus != "multi30k":
        fail(f"unknown corpus {corpus!r}; known: multi30k")
    paths = download_multi30k(dir, mirror=mirror, progress=True)
    typer.echo(f"{len(paths)} files ready in {dir}", err=True)
    if sacremoses_version() is None:
        typer.echo(f"tokenized files skipped: sacremoses is not installed ({INSTALL}); "
                   "`evaluate --protocol multi30k-tok` needs them", err=True)
        return
    tokenized = build_tokenized(dir, progress=True)
    typer.echo(f"{len(tokenized)} tokenized files ready in {dir / TOK_DIR}", err=True)
