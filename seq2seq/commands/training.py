"""`prepare` and `train`: the commands that write a run directory."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from seq2seq.commands.common import ConfigArg, SetOpt, fail


def prepare(config: ConfigArg, set_: SetOpt = None) -> None:
    """Train the SentencePiece model(s) on a sample of the training text, then encode the
    training corpora into the token store (RUN_DIR/store) that `train` maps."""
    from functools import partial

    from seq2seq.config import load_config
    from seq2seq.prepare import check_inputs, prepare_store, training_inputs
    from seq2seq.prepare import prepare as run_prepare
    from seq2seq.training.report import is_terminal
    from seq2seq.training.run_dir import RunDir

    cfg = load_config(config, set_ or [])
    log = partial(typer.echo, err=True)
    with RunDir(cfg.train.run_dir, writer=True, log=log) as run:  # the one writer
        run.check_unused()  # its checkpoints need the tokenizer they were trained with
        check_inputs(cfg)
        corpora = training_inputs(cfg)
        src_tok, tgt_tok = run_prepare(cfg, log=log, corpora=corpora)
        prepare_store(cfg, src_tok, tgt_tok, corpora, log, bar=is_terminal(sys.stderr))


def train(config: ConfigArg, set_: SetOpt = None,
          resume: Annotated[bool, typer.Option(
              help="Continue exactly from RUN_DIR/last.pt.")] = False,
          overwrite: Annotated[bool, typer.Option(
              help="Delete the run directory's checkpoints and start again.")] = False,
          progress: Annotated[bool, typer.Option(
              help="Show the progress bar on a terminal; without one, or with --no-progress, "
                   "a plain line every train.log_every steps.")] = True) -> None:
    """Train a model (runs `prepare` first when the tokenizer is missing)."""
    from seq2seq.config import load_config
    from seq2seq.training.loop import Interrupted
    from seq2seq.training.loop import train as run_train

    if resume and overwrite:
        fail("--resume and --overwrite exclude each other")
    cfg = load_config(config, set_ or [])
    try:
        run_train(cfg, resume=resume, overwrite=overwrite, progress=progress)
    except Interrupted as stop:  # not an error: the run is saved and can go on
        typer.echo(stop.told(resume_command(config, set_ or [], progress)), err=True)
        raise typer.Exit(130) from None


def resume_command(config: Path, overrides: list[str], progress: bool) -> str:
    """The command line that continues this run, shell-quoted: the same config path and
    --set overrides (and --no-progress), with --resume."""
    import shlex

    words = ["seq2seq", "train", str(config)]
    for override in overrides:
        words += ["--set", override]
    if not progress:
        words.append("--no-progress")
    return shlex.join([*words, "--resume"])
