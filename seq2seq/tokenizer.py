"""SentencePiece subword tokenizers: train in memory, encode/decode, serialise as bytes.

A tokenizer is held as the bytes of its SentencePiece model, so a checkpoint can carry it
and a translation never depends on a model file lying next to it.  Every tokenizer this
project trains uses the same special ids, so the model and the batches can rely on them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MODEL_TYPES = ("unigram", "bpe", "char", "word")


class Tokenizer:
    """A SentencePiece model held as bytes (so it can live inside a checkpoint)."""

    def __init__(self, model_bytes: bytes):
        """Load a serialised SentencePiece model; bad bytes raise Seq2SeqError."""
        self.model_bytes = bytes(model_bytes)
        self._sp = _processor(self.model_bytes)

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        """Read a `.model` file written by `save` (or by `spm_train` with our special ids)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise Seq2SeqError(
                f"cannot read tokenizer {path}: {e.strerror}; check the path or retrain it"
            ) from None
        try:
            return cls(data)
        except Seq2SeqError as e:
            raise Seq2SeqError(f"tokenizer {path}: {e}") from None

    def save(self, path: Path) -> None:
        """Write the model bytes to `path` atomically (a crash never leaves half a file)."""
        _write_atomic(Path(path), self.model_bytes)

    @property
    def vocab_size(self) -> int:
        return self._sp.vocab_size()

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    def encode(self, lines: Sequence[str], threads: int = -1) -> list[list[int]]:
        """Lines of text -> one list of token ids per line, without BOS/EOS.

        threads: SentencePiece's C++ threads for the batch (-1 = one per core; a process
        pool that is already parallel gives 1).
        """
        lines = list(lines)
        if not lines:
            return []  # keep the empty case symmetric with decode, whatever SentencePiece does
        # One batched call: SentencePiece encodes the batch in C++ threads.
        return self._sp.encode(lines, out_type=int, num_threads=threads)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Token ids -> detokenized text, one string per sequence.

        Padding and BOS are dropped and each sequence ends at its first EOS, so the
        raw output of a search (BOS ... EOS PAD PAD) can be passed in as it is.
        ids: lists of ints, or a (B, T) integer tensor.
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()  # one conversion instead of B * T tensor-element reads
        if len(ids) == 0:
            return []  # SentencePiece reads an empty list as one empty sequence and returns ""
        return self._sp.decode([_strip_specials(seq) for seq in ids])

    def unknown_characters(self, line: str) -> list[str]:
        """The characters of `line` this model has no piece for (encoded as <unk>), in order;
        whitespace is not counted."""
        chars = sorted({c for c in line if not c.isspace()})
        # one character at a time, since the pieces' surfaces are not in every version's API
        unknown = {c for c, ids in zip(chars, self.encode(chars), strict=True) if UNK_ID in ids}
        return [c for c in line if c in unknown]

    @property
    def byte_fallback(self) -> bool:
        """Whether characters without a piece are spelled as UTF-8 bytes (never <unk>)."""
        return self._sp.piece_to_id("<0x41>") != UNK_ID

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """Token ids -> their subword strings (e.g. '▁the'), for attention plots."""
        return [self._sp.id_to_piece(int(i)) for i in ids]

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"


def train_tokenizer(
    lines: Sequence[str],
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    threads: int = 2,
    byte_fallback: bool = False,
) -> Tokenizer:
    """Train a SentencePiece model on `lines` in memory, with no files and no log output.

    lines: training sentences, one per item.  vocab_size is an upper bound: a corpus too
    small to fill it gives a smaller vocabulary instead of an error.  model_type is one of
    "unigram", "bpe", "char", "word".  byte_fallback: 256 byte pieces spell any character
    the vocabulary lacks, so no input becomes <unk>.  The result depends only on the
    arguments (the thread count is recorded in the model bytes but does not change the
    vocabulary).
    """
    if not any(line.strip() for line in lines):
        raise Seq2SeqError(
            "cannot train a tokenizer on no text (no lines, or only blank ones); "
            "check the training files"
        )
    if model_type not in MODEL_TYPES:
        raise Seq2SeqError(
            f"unknown tokenizer model_type {model_type!r}; use one of {', '.join(MODEL_TYPES)}"
        )
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=buffer,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            byte_fallback=byte_fallback,
            num_threads=threads,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            hard_vocab_limit=False,  # a tiny corpus with a large vocab_size still trains
            minloglevel=2,  # SentencePiece logs every training step to stderr otherwise
        )
    except RuntimeError as e:
        # SentencePiece reports bad settings (e.g. vocab_size below the number of
        # characters) as RuntimeError with a multi-line C++ message: keep its first line.
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unknown error"
        raise Seq2SeqError(
            f"SentencePiece could not train (vocab_size={vocab_size}, "
            f"model_type={model_type}): {first}; change the tokenizer settings"
        ) from None
    return Tokenizer(buffer.getvalue())


def _processor(model_bytes: bytes) -> spm.SentencePieceProcessor:
    """Parse model bytes and check they use our special ids; raise Seq2SeqError otherwise."""
    # Empty bytes would give an uninitialised processor that logs errors on every call.
    if not model_bytes:
        raise Seq2SeqError("empty SentencePiece model; retrain the tokenizer")
    try:
        sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    except RuntimeError:
        raise Seq2SeqError(
            "not a valid SentencePiece model (corrupt or wrong file); retrain the tokenizer"
        ) from None
    special = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id())
    if special != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
        raise Seq2SeqError(
            f"SentencePiece model has pad/unk/bos/eos ids {special}, expected "
            f"{(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}; retrain it with seq2seq"
        )
    return sp


def _strip_specials(ids: Sequence[int]) -> list[int]:
    """Ids up to the first EOS, without PAD and BOS."""
    out = []
    for i in ids:
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            out.append(i)
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file next to `path`, then rename it over `path`."""
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as e:
        raise Seq2SeqError(
            f"cannot write tokenizer {path}: {e.strerror}; check the directory exists and is "
            "writable"
        ) from None
