"""The `seq2seq` command: the Typer app and its entry point.

Each command is a plain function with Typer annotations in seq2seq/commands/ (and
seq2seq/inspection/commands.py); this module registers them in the order `--help` lists
them, and turns errors a user can cause into one line on stderr and exit code 2.
"""

import sys

import typer

from seq2seq.commands.forced import score
from seq2seq.commands.scoring import average, download, evaluate
from seq2seq.commands.training import prepare, train
from seq2seq.commands.translating import translate
from seq2seq.errors import Seq2SeqError
from seq2seq.files import reason, user_os_error
from seq2seq.inspection.commands import attention, info, plot

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train Transformer translation models, translate, and score BLEU.")

# Data flow order: the run, text through a model, scores, then looking inside.
for command in (prepare, train, translate, score, evaluate, average, download, info, attention,
                plot):
    app.command()(command)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
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
