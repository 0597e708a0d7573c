"""seq2seq: a small Transformer translation trainer.

    from seq2seq import Translator
    Translator.from_checkpoint("runs/toy/best.pt").translate(["a sentence ."])
"""

__all__ = ["Translator"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `seq2seq --help` starts without importing torch.
    if name == "Translator":
        from seq2seq.translate import Translator

        return Translator
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
