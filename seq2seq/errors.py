"""The one exception a user can cause and fix."""


class Seq2SeqError(Exception):
    """A problem with the user's input (file, config, checkpoint, argument).

    The message says what is wrong and how to fix it; the CLI prints it on one
    line to stderr and exits with code 2.
    """
