"""Commands that look inside a model or a run: info, attention, plot.

Plain functions with Typer annotations; cli.py registers them with app.command().
Heavy imports happen inside the functions, so `seq2seq --help` stays fast.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from seq2seq.commands.common import CheckpointArg
from seq2seq.errors import Seq2SeqError

if TYPE_CHECKING:
    from seq2seq.config import Config
    from seq2seq.inspection.attention_maps import AttentionMaps
    from seq2seq.model.transformer import Transformer
    from seq2seq.translate import Translator

CONFIG_SUFFIXES = (".yaml", ".yml")
IMAGE_SUFFIXES = (".png", ".pdf", ".svg")  # the format follows the suffix


def info(
    target: Annotated[Path, typer.Argument(
        help="A YAML config (*.yaml), a checkpoint written by `train` (*.pt), or its run "
             "directory (uses best.pt).", metavar="CONFIG_OR_CHECKPOINT")],
    src_len: Annotated[int, typer.Option(
        help="Source tokens per sentence (EOS included) for the FLOPs estimate.")] = 20,
    tgt_len: Annotated[int, typer.Option(
        help="Decoder positions per sentence (target tokens + 1: BOS in, EOS out) for the "
             "FLOPs estimate.")] = 20,
) -> None:
    """Print the model's parameters by component and its FLOPs per target token."""
    from seq2seq.checkpoint import resolve_checkpoint
    from seq2seq.files import check_regular_file
    from seq2seq.inspection.accounting import flops_per_target_token, format_table, parameter_table

    if src_len < 1 or tgt_len < 1:
        raise Seq2SeqError(f"--src-len and --tgt-len must be >= 1, got {src_len} and {tgt_len}")
    target = resolve_checkpoint(target)  # a run directory: its best.pt
    check_regular_file(target, "config or checkpoint")
    if target.suffix.lower() in CONFIG_SUFFIXES:
        model, config, vocab_note = _model_from_config(target)
    else:
        model, config, vocab_note = _model_from_checkpoint(target)
    typer.echo(_describe(config))
    typer.echo(vocab_note + "\n")
    typer.echo(format_table(parameter_table(model), header=("component", "parameters")))
    flops = flops_per_target_token(model, src_len, tgt_len)
    note = ("decoder self-attention counted over the full T x T scores"
            if config.model.arch == "transformer" else "the RNN gates' input and recurrent "
            "products, attention over every source token")
    typer.echo(f"\nFLOPs per target token at {src_len} source / {tgt_len} target tokens\n"
               f"(2 per multiply-add of every matrix product; {note}):")
    parts = [("encoder", flops["encoder"]), ("decoder", flops["decoder"]),
             ("output layer", flops["output"]), ("forward", flops["forward"]),
             ("training (3 x forward)", flops["training"])]
    scale, unit = _si(flops["training"])
    typer.echo(format_table([(name, f"{value / scale:.2f} {unit}") for name, value in parts]))


def _model_from_config(path: Path) -> tuple["Transformer", "Config", str]:
    """The model a config builds (on the meta device: shapes only, no memory), with the
    vocabulary of the run's tokenizer when it exists, else tokenizer.vocab_size."""
    import torch

    from seq2seq.config import load_config
    from seq2seq.model.build import build_model
    from seq2seq.prepare import tokenizer_paths
    from seq2seq.tokenizer import PAD_ID, Tokenizer

    config = load_config(path)
    src_path, tgt_path = tokenizer_paths(config)
    if src_path.is_file() and tgt_path.is_file():
        src_vocab = Tokenizer.load(src_path).vocab_size
        tgt_vocab = src_vocab if tgt_path == src_path else Tokenizer.load(tgt_path).vocab_size
        where = src_path if src_path == tgt_path else f"{src_path} and {tgt_path}"
        note = f"vocabulary: {src_vocab} source / {tgt_vocab} target pieces, from {where}"
    else:
        src_vocab = tgt_vocab = config.tokenizer.vocab_size
        note = (f"vocabulary: tokenizer.vocab_size = {src_vocab} per side, since "
                f"{config.train.run_dir} holds no tokenizer yet (`seq2seq prepare` may find "
                "fewer pieces in a small corpus)")
    with torch.device("meta"):
        model = build_model(config.model, src_vocab, tgt_vocab, PAD_ID,
                            joint_vocab=config.tokenizer.joint)
    return model, config, note


def _model_from_checkpoint(path: Path) -> tuple["Transformer", "Config", str]:
    import torch

    from seq2seq.checkpoint import load_checkpoint, rebuild

    state = load_checkpoint(path)
    model, src_tok, tgt_tok, config = rebuild(state, torch.device("cpu"), str(path))
    note = (f"vocabulary: {src_tok.vocab_size} source / {tgt_tok.vocab_size} target pieces; "
            f"checkpoint from step {state.get('step', '?')}")
    return model, config, note


def _describe(config: "Config") -> str:
    m = config.model
    if m.arch == "rnn":
        return (f"model: rnn ({m.rnn_cell}), hidden {m.d_model}, {m.encoder_layers} encoder + "
                f"{m.decoder_layers} decoder layers, {m.attention} attention")
    return (f"model: d_model {m.d_model}, {m.n_heads} heads, d_ff {m.d_ff}, "
            f"{m.encoder_layers} encoder + {m.decoder_layers} decoder layers, "
            f"{m.attention} attention, {m.norm}-norm")


def _si(flops: float) -> tuple[float, str]:
    """A scale and unit that show `flops` with one to three digits before the point."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if flops >= scale:
            return scale, f"{prefix}FLOP"
    return 1.0, "FLOP"


def attention(
    checkpoint: CheckpointArg,
    sentence: Annotated[str, typer.Argument(help="The source sentence to translate.",
                                            metavar="SENTENCE")],
    output: Annotated[Path, typer.Option(
        "-o", "--output", metavar="FILE",
        help="Image to write (.png, .pdf, .svg), or .html for the attention explorer's page "
             "(the one `seq2seq serve` serves) holding this sentence.")],
    beam_size: Annotated[int | None, typer.Option(
        help="1 = greedy. Default: the checkpoint's decode.beam_size, as `translate`.")] = None,
) -> None:
    """Translate a sentence and draw every layer's attention weights."""
    from seq2seq.files import atomic_path, check_output
    from seq2seq.inspection.attention_maps import draw_png, write_html
    from seq2seq.serving.engine import Served

    if beam_size is not None and beam_size < 1:
        raise Seq2SeqError(f"--beam-size must be >= 1, got {beam_size}")
    check_suffix(output, (*IMAGE_SUFFIXES, ".html"))
    target = check_output(output, [checkpoint], "-o")
    served = Served.load(checkpoint, device="cpu")
    translator = served.translator
    beam_size = translator.options(beam_size)[0]
    maps = sentence_attention(translator, sentence, beam_size)
    decoding = "greedy search" if beam_size == 1 else f"beam search, beam size {beam_size}"
    with atomic_path(target) as tmp:
        if output.suffix.lower() == ".html":
            write_html(maps, tmp, decoding, served.info)
        else:
            draw_png(maps, tmp)
    typer.echo(maps.translation)
    typer.echo(f"attention maps -> {output}", err=True)


def check_suffix(output: Path, allowed: tuple[str, ...]) -> None:
    """Refuse an output whose suffix names no format we write, before any work (matplotlib
    would otherwise name the suffix of the temporary file in its error)."""
    from seq2seq.files import is_special

    if not is_special(output) and output.suffix.lower() not in allowed:
        raise Seq2SeqError(f"-o {output}: the format follows the suffix; use "
                           f"{', '.join(allowed)}")


def sentence_attention(translator: "Translator", sentence: str, beam_size: int
                       ) -> "AttentionMaps":
    """Translate one sentence, then rerun the model teacher-forced on (source + EOS,
    BOS + output) with need_weights=True; weights come back per layer as (H, Tq, Tk)."""
    from seq2seq.inspection.attention_maps import teacher_forced_maps
    from seq2seq.translation import report_unknown

    model, src_tok, tgt_tok = translator.model, translator.src_tok, translator.tgt_tok
    ids = src_tok.encode([sentence])[0]
    report_unknown(src_tok, [sentence], [ids])
    if not ids:
        raise Seq2SeqError("attention: the sentence is empty; give a sentence to translate")
    if len(ids) >= model.max_positions:
        raise Seq2SeqError(f"attention: the sentence has {len(ids)} tokens; this model reads "
                           f"at most {model.max_positions - 1}")
    d = translator.decode
    out = translator.translate_ids([ids], beam_size, d.length_penalty, d.max_len_ratio, 1)[0]
    return teacher_forced_maps(model, src_tok, tgt_tok, ids, out, sentence,
                               tgt_tok.decode([out])[0])


def plot(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directories (train.run_dir) whose metrics.jsonl to draw, one line each.")],
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Image to write (.png, .pdf or .svg).")],
) -> None:
    """Plot loss, learning rate, BLEU and chrF of runs against steps and wall time."""
    from seq2seq.files import atomic_path, check_output
    from seq2seq.inspection.plots import plot_runs

    check_suffix(output, IMAGE_SUFFIXES)
    target = check_output(output, [Path(d) / "metrics.jsonl" for d in run_dirs], "-o")
    with atomic_path(target) as tmp:
        plot_runs(run_dirs, tmp)
    typer.echo(f"curves of {len(run_dirs)} run(s) -> {output}", err=True)
