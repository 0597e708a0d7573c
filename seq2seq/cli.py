"""The `seq2seq` command: the Typer app and its entry point.

Each command is a plain function with Typer annotations in seq2seq/commands/ (and
seq2seq/inspection/commands.py); this module registers them in the order `--help` lists
them, and turns errors a user can cause into one line on stderr and exit code 2.
"""

import atexit
import signal
import sys
import typing
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from seq2seq import __version__
from seq2seq.commands.comparing import compare
from seq2seq.commands.exporting import export
from seq2seq.commands.forced import score
from seq2seq.commands.scoring import average, download, evaluate
from seq2seq.commands.serving import serve
from seq2seq.commands.training import prepare, train
from seq2seq.commands.translating import translate
from seq2seq.errors import Seq2SeqError
from seq2seq.files import reason, user_os_error
from seq2seq.inspection.commands import attention, info, plot

# One example per line, shown at the end of each command's --help (and in docs/cli.md).
EXAMPLES = {
    "prepare": """\
seq2seq prepare configs/toy.yaml   # RUN_DIR/spm.model (or one per side) and RUN_DIR/store/
""",
    "train": """\
seq2seq train configs/toy.yaml
seq2seq train configs/toy.yaml --set train.lr=0.001 --set model.norm=post
seq2seq train configs/toy.yaml --resume      # continue exactly from RUN_DIR/last.pt
seq2seq train configs/toy.yaml --overwrite   # delete RUN_DIR's checkpoints, start again
torchrun --nproc-per-node 2 -m seq2seq train configs/toy.yaml   # see distributed.md
""",
    "translate": """\
seq2seq translate runs/toy/best.pt "the big dog sees two small cats ."
echo "we sang ." | seq2seq translate runs/toy --beam-size 1   # a run directory: its best.pt
seq2seq translate runs/toy/best.pt -i data/toy/test.src -o hyp.txt --beam-size 5
seq2seq translate runs/toy/best.pt "we sang ." --nbest 3 --format tsv   # see decoding.md
seq2seq translate runs/toy/best.pt -i mono.txt --sample --top-p 0.9 --seed 1
seq2seq translate runs/a/best.pt runs/b/best.pt "a teacher waits ." --prefix "vorm"
seq2seq translate exports/toy -i data/toy/test.src --beam-size 5   # `export`ed: CTranslate2
""",
    "serve": """\
seq2seq serve runs/toy/best.pt               # then open http://127.0.0.1:8000/
curl -s localhost:8000/translate -d '{"text": ["we sang ."], "beam_size": 5}'
""",
    "score": """\
seq2seq score runs/toy/best.pt --src data/toy/test.src --tgt hyp.txt   # one line per pair
paste data/toy/test.src hyp.txt | seq2seq score runs/toy/best.pt --json
""",
    "evaluate": """\
seq2seq evaluate runs/toy/best.pt --src data/toy/test.src --ref data/toy/test.tgt
seq2seq evaluate runs/toy/best.pt --json            # data.test of the checkpoint's config
seq2seq evaluate --hyp hyp.txt --ref data/toy/test.tgt --metrics bleu,chrf,ter
seq2seq evaluate runs/toy/best.pt --tokenize intl --lowercase
seq2seq evaluate runs/m30k/best.pt --protocol multi30k-tok   # also the papers' BLEU
""",
    "compare": """\
seq2seq compare --ref data/toy/test.tgt baseline.txt new.txt --method both
seq2seq compare --ref data/toy/test.tgt --src data/toy/test.src runs/a/best.pt runs/b/best.pt
""",
    "average": """\
seq2seq average runs/x/best-step3000.pt runs/x/best-step3500.pt -o avg.pt
""",
    "export": """\
seq2seq export runs/toy/best.pt -o exports/toy                      # CTranslate2, float32
seq2seq export runs/toy/best.pt -o exports/toy-int8 --quantization int8
seq2seq translate exports/toy "the big dog sees two small cats ."   # runs on CTranslate2
""",
    "download": """\
seq2seq download multi30k --dir data/multi30k
seq2seq download multi30k --mirror ../shared/data/multi30k   # from a local copy
""",
    "info": """\
seq2seq info configs/toy.yaml      # or a checkpoint: parameters by component, FLOPs per token
""",
    "attention": """\
seq2seq attention runs/toy/best.pt "we sang ." -o attention.png   # or .html: the explorer page
""",
    "plot": """\
seq2seq plot runs/toy runs/other -o curves.png
""",
}
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}  # inherited by every command


def _print_version(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        typer.echo(f"seq2seq {__version__}")
        raise typer.Exit()


def _version_option():
    """--version, built by Typer from a plain function (so its help renders like the rest)
    and shared by the app and every command; it never reaches a command's function."""
    probe = typer.Typer(add_completion=False)

    @probe.command()
    def probe_version(version: Annotated[bool, typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version,
            is_eager=True)] = False) -> None:
        pass

    (option,) = typer.main.get_command(probe).params
    option.expose_value = False
    return option


VERSION = _version_option()


def _type_word(annotation) -> str:
    if typing.get_origin(annotation) is list:
        return _type_word(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "PATH"
    return {int: "INTEGER", float: "FLOAT", str: "TEXT"}.get(annotation, "VALUE")


def _readable(param) -> None:
    """Help names a parameter's type PATH, INTEGER, a|b or (for a flag) nothing, where Typer
    would print <path>, <int>, <list[str]> or <bool>; an explicit metavar= is kept."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return
    if param.param_type_name == "argument" and param.metavar is None:
        param.metavar = param.name.upper()  # CHECKPOINTS, as usage lines spell arguments
    if getattr(param, "is_flag", False):
        word = ""
    elif param.metavar is not None and param.param_type_name == "option":
        word = param.metavar
    elif desc.is_choice:
        word = "|".join(map(str, desc.choices or ()))
    else:
        word = _type_word(desc.annotation)
    if word and param.param_type_name == "option" and param.nargs != 1:
        word += "..."
    param.display_type_rich = lambda ctx: word  # what both help formatters print


class _Readable:
    """--version beside --help, and readable types for every parameter."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.params.append(VERSION)
        for param in self.params:
            _readable(param)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            _readable(option)
        return option


class Command(_Readable, TyperCommand):
    """A command of the app."""


class Group(_Readable, TyperGroup):
    """The app; its context settings give it and every command -h as well as --help."""


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  cls=Group, context_settings=HELP_OPTIONS,
                  help="Train Transformer translation models, translate, and score BLEU.")

# Data flow order: the run, text through a model, scores, then looking inside.
for command in (prepare, train, translate, serve, score, evaluate, compare, average, export,
                download, info, attention, plot):
    app.command(cls=Command, epilog="Examples:\n" + EXAMPLES[command.__name__])(command)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    try:
        _run()
    finally:  # registered last, so it runs before torch's own exit callbacks
        atexit.unregister(_ignore_signals)
        atexit.register(_ignore_signals)


def _ignore_signals() -> None:
    """The work is done and reported: a late Ctrl-C must not print a traceback from the
    exit callbacks of torch."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _run() -> None:
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
