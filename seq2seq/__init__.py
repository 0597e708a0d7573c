"""seq2seq: a small Transformer translation trainer.

The Python API is one class, `Translator`, rebuilt from a checkpoint alone:

    from seq2seq import Translator

    translator = Translator.from_checkpoint("runs/toy/best.pt")  # or "runs/toy": its best.pt
    translator.translate("the big dog sees two cats .")           # a string in, a string out
    translator.translate(["a line .", "another ."], beam_size=5)  # a list in, a list out

Options left out take the checkpoint's `decode` section; errors a caller can cause (a
missing or damaged checkpoint, an option out of range) raise `seq2seq.errors.Seq2SeqError`,
and a wrong argument type raises TypeError. Training, evaluation and the rest are the
`seq2seq` command (docs/cli.md).
"""

__all__ = ["Translator"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `seq2seq --help` starts without importing torch.
    if name == "Translator":
        from seq2seq.translate import Translator

        return Translator
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
