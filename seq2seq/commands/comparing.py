"""`compare`: several systems on one test set, with sacreBLEU's paired significance tests."""

import json
from pathlib import Path
from typing import Annotated

import typer

from seq2seq.commands.common import LangOpt, LowercaseOpt, MetricsOpt, TokenizeOpt, TokRefOpt, fail

TEST_NAMES = {"bootstrap": "paired bootstrap resampling", "ar": "approximate randomisation"}
SIGNIFICANT = 0.05


def compare(
    systems: Annotated[list[Path] | None, typer.Argument(
        help="Hypothesis files or checkpoints (which translate --src); the first is the "
             "baseline.")] = None,
    ref: Annotated[Path | None, typer.Option(help="Reference file (required).")] = None,
    src: Annotated[Path | None, typer.Option(
        help="Source file, translated by each checkpoint among the systems.")] = None,
    method: Annotated[str, typer.Option(
        help="bootstrap (paired bootstrap resampling), ar (approximate randomisation) or "
             "both.")] = "bootstrap",
    n_samples: Annotated[int | None, typer.Option(
        help="Bootstrap resamples or randomisation trials. Default: sacreBLEU's, 1000 and "
             "10000.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the resampling (>= 1).")] = 12345,
    metrics: MetricsOpt = "bleu,chrf",
    tokenize: TokenizeOpt = "13a",
    lowercase: LowercaseOpt = False,
    protocol: Annotated[str, typer.Option(
        help="sacrebleu, or multi30k-tok: score the papers' way, lowercased Moses-tokenized "
             "text against the tokenized reference (see evaluation.md).")] = "sacrebleu",
    tok_ref: TokRefOpt = None,
    lang: LangOpt = None,
    beam_size: Annotated[int | None, typer.Option(
        help="For checkpoints; default: each one's decode.beam_size.")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="For checkpoints: sentences per batch.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Score systems against --ref, each with its 95% confidence interval and its p-value
    against the first (sacreBLEU's paired tests)."""
    from seq2seq.compare import compare as run_compare
    from seq2seq.metrics import parse_metrics

    if ref is None:
        fail("give --ref REF, the reference file every system is scored against")
    result = run_compare(systems or [], ref, src, method=method, n_samples=n_samples,
                         seed=seed, metrics=parse_metrics(metrics), tokenize=tokenize,
                         lowercase=lowercase, beam_size=beam_size, batch_size=batch_size,
                         device=device, protocol=protocol, tok_ref=tok_ref, lang=lang)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo("\n".join(comparison_lines(result)))


def comparison_lines(result: dict) -> list[str]:
    """compare's text report: what was run, a table of systems, the signatures."""
    from seq2seq.metrics import LABELS

    tests = list(result["n_samples"])
    how = ", ".join(f"{TEST_NAMES[t]} ({n} {'resamples' if t == 'bootstrap' else 'trials'})"
                    for t, n in result["n_samples"].items())
    scored = result["ref"] if result["tok_ref"] is None else (
        f"{result['tok_ref']} (the papers' lowercased, tokenized text)")
    lines = [f"{len(result['systems'])} systems, {result['sentences']} sentences of "
             f"{scored}; {how}, seed {result['seed']}", ""]
    p_heads = ["p"] if len(tests) == 1 else [f"p ({'bs' if t == 'bootstrap' else t})"
                                             for t in tests]
    header = ["system"]
    for metric in result["metrics"]:
        header += [f"{LABELS[metric]} (mean ± 95% CI)", *p_heads]
    table = [header]
    for i, system in enumerate(result["systems"]):
        name = ("baseline: " if i == 0 else "") + system["name"]
        row = [name + (" (= baseline)" if system["identical_to_baseline"] else "")]
        for metric in result["metrics"]:
            cell = system["scores"][metric]
            row.append(f"{cell['score']:.2f} ({cell['mean']:.2f} ± {cell['ci95']:.2f})")
            row += [_p(cell[f"p_{t}"]) for t in tests]
        table.append(row)
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    lines += ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                        for c, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
              for row in table]
    lines += ["", f"* p < {SIGNIFICANT}: the difference from the baseline is unlikely to be "
                  "chance"]
    for test, signatures in result["signatures"].items():
        for metric, signature in signatures.items():
            lines.append(f"  {LABELS[metric]} signature ({test}): {signature}")
    return lines


def _p(p: float | None) -> str:
    if p is None:
        return ""
    return f"{p:.4f}" + ("*" if p < SIGNIFICANT else " ")
