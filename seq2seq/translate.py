"""Translator: text in, text out, batched; rebuilt from a checkpoint alone."""

import math
import sys
from pathlib import Path

import torch

from seq2seq.checkpoint import load_checkpoint, rebuild, resolve_checkpoint
from seq2seq.config import DecodeConfig
from seq2seq.data import make_source
from seq2seq.errors import Seq2SeqError
from seq2seq.model.transformer import Transformer
from seq2seq.runtime import resolve_device
from seq2seq.search import Hypotheses, beam_search, greedy_search, max_output_lengths
from seq2seq.tokenizer import Tokenizer

SHOWN_LINES = 5  # line numbers a warning names before "..."


class Translator:
    """Translate sentences with a trained model: text in, text out, batched.

    >>> t = Translator.from_checkpoint("runs/toy/best.pt")
    >>> t.translate("the big dog sees two cats .")  # a string in, a string out
    >>> t.translate(["a line .", "another line ."], beam_size=5)  # a list: one output each

    Options left as None take the checkpoint's `decode` section. Input the model cannot
    read whole is translated anyway and reported on stderr: sentences longer than its
    positions (cut), characters its tokenizer has no piece for (read as <unk>).
    """

    def __init__(self, model: Transformer, src_tok: Tokenizer, tgt_tok: Tokenizer,
                 decode: DecodeConfig, device: torch.device):
        """model: in eval mode on `device`; src_tok, tgt_tok: its tokenizers (the same
        object for a joint vocabulary); decode: the defaults for every option."""
        self.model, self.src_tok, self.tgt_tok = model, src_tok, tgt_tok
        self.decode, self.device = decode, device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> "Translator":
        """Rebuild the model, its tokenizers and decode settings from a checkpoint alone.

        path: a *.pt file written by `seq2seq train`, or a run directory (its best.pt).
        device: "auto" (CUDA when there is one), "cpu", "cuda" or "cuda:N".
        Raises Seq2SeqError for a missing, damaged or foreign file.
        """
        dev = resolve_device(device)
        path = resolve_checkpoint(path)
        model, src_tok, tgt_tok, config = rebuild(load_checkpoint(path), dev, str(path))
        return cls(model, src_tok, tgt_tok, config.decode, dev)

    def translate(self, sentences: str | list[str], beam_size: int | None = None,
                  length_penalty: float | None = None, max_len_ratio: float | None = None,
                  batch_size: int | None = None) -> str | list[str]:
        """Translate one sentence (a str gives a str) or a list of them (one output each).

        sentences: a string, or a list (or tuple) of strings; a blank one gives "".
        beam_size: 1 is greedy search; length_penalty: GNMT alpha; max_len_ratio: output
        tokens <= ratio * source tokens + 10; batch_size: sentences per batch.
        Raises TypeError for anything else (a bare iterator, bytes, numbers), and
        Seq2SeqError for an option out of range.
        """
        lines, single = as_lines(sentences)
        beam, alpha, ratio, size = self.options(beam_size, length_penalty, max_len_ratio,
                                                batch_size)
        ids = self.encode(lines)
        tokens = self.translate_ids(ids, beam, alpha, ratio, size)
        outputs = self.tgt_tok.decode(tokens)
        outputs = [out if sent.strip() else "" for sent, out in zip(lines, outputs, strict=True)]
        return outputs[0] if single else outputs

    def encode(self, lines: list[str], first_line: int = 1) -> list[list[int]]:
        """Source token ids per line, cut to the model's positions; lossy input is reported
        on stderr: cut lines by number (counting from `first_line`), <unk> characters."""
        ids = self.src_tok.encode(lines)
        report_unknown(self.src_tok, lines, ids)
        return self._truncate(ids, first_line)

    def options(self, beam_size: int | None = None, length_penalty: float | None = None,
                max_len_ratio: float | None = None, batch_size: int | None = None
                ) -> tuple[int, float, float, int]:
        """(beam, alpha, ratio, batch size), None taken from the checkpoint, checked up front
        so that a bad value fails before any input is read or output written."""
        d = self.decode
        beam = d.beam_size if beam_size is None else beam_size
        alpha = d.length_penalty if length_penalty is None else length_penalty
        ratio = d.max_len_ratio if max_len_ratio is None else max_len_ratio
        size = d.batch_size if batch_size is None else batch_size
        vocab = self.tgt_tok.vocab_size
        if not 1 <= beam <= vocab:  # more beams than target pieces cannot differ
            raise Seq2SeqError(f"beam size must be between 1 and the target vocabulary size "
                               f"({vocab}), got {beam}")
        if size < 1:
            raise Seq2SeqError(f"batch size must be >= 1, got {size}")
        if not (math.isfinite(ratio) and ratio > 0):
            raise Seq2SeqError(f"max-len-ratio must be a finite number > 0, got {ratio}")
        if not (math.isfinite(alpha) and 0 <= alpha <= 10):  # decode.length_penalty's range
            raise Seq2SeqError(f"length penalty must be a finite number in [0, 10], got {alpha}")
        return beam, alpha, ratio, size

    def _truncate(self, ids: list[list[int]], first_line: int = 1) -> list[list[int]]:
        limit = self.model.max_positions - 1  # room for EOS
        long = [first_line + i for i, x in enumerate(ids) if len(x) > limit]
        if long:
            shown = ", ".join(map(str, long[:SHOWN_LINES]))
            shown = f"line{'s' * (len(long) > 1)} {shown}{', ...' * (len(long) > SHOWN_LINES)}"
            print(f"warning: {len(long)} sentence(s) longer than the model's {limit} tokens "
                  f"were cut to fit ({shown})", file=sys.stderr)
        return [x[:limit] for x in ids]

    @torch.no_grad()
    def translate_ids(self, ids: list[list[int]], beam_size: int, alpha: float, ratio: float,
                      batch_size: int) -> list[list[int]]:
        """Token ids in, token ids out (without BOS/EOS), in the order given.

        ids: source ids per sentence, without EOS, each shorter than the model's positions
        (see encode); an empty one gives []. Sentences are sorted by length so batches are
        dense. The options are taken as they are: check them with `options` first.
        """
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        results: list[list[int]] = [[] for _ in ids]
        for start in range(0, len(order), batch_size):
            chunk = [i for i in order[start : start + batch_size] if ids[i]]
            if not chunk:
                continue
            hyps = self._search([ids[i] for i in chunk], beam_size, alpha, ratio)
            for i, tokens in zip(chunk, hyps.tokens, strict=True):
                results[i] = tokens
        return results

    def _search(self, batch: list[list[int]], beam_size: int, alpha: float,
                ratio: float) -> Hypotheses:
        tok = self.src_tok
        src, src_mask = make_source(batch, tok.pad_id, tok.eos_id)
        src, src_mask = src.to(self.device), src_mask.to(self.device)
        max_lens = max_output_lengths(src_mask, ratio, self.model.max_positions)
        bos, eos = self.tgt_tok.bos_id, self.tgt_tok.eos_id
        try:
            if beam_size == 1:
                return greedy_search(self.model, src, src_mask, bos, eos, max_lens)
            return beam_search(self.model, src, src_mask, bos, eos, max_lens, beam_size, alpha)
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as error:
            if not _out_of_memory(error):
                raise
            raise Seq2SeqError(f"out of memory translating {len(batch)} sentences with beam "
                               f"size {beam_size} on {self.device}; lower --beam-size or "
                               "--batch-size") from None


def as_lines(sentences: str | list[str]) -> tuple[list[str], bool]:
    """(the sentences as a list, whether one string was given); TypeError for other types,
    so a string is never read as a list of characters nor an iterator consumed unseen."""
    if isinstance(sentences, str):
        return [sentences], True
    if not isinstance(sentences, (list, tuple)):
        raise TypeError(f"translate() takes a string or a list of strings, not "
                        f"{type(sentences).__name__}")
    for i, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise TypeError(f"translate(): sentence {i} is {type(sentence).__name__}, not a "
                            "string")
    return list(sentences), False


def report_unknown(tok: Tokenizer, lines: list[str], ids: list[list[int]]) -> None:
    """One warning line on stderr counting the characters `tok` read as <unk>."""
    unk = tok.unk_id
    lossy = [i for i, x in enumerate(ids) if unk in x]
    if not lossy:
        return
    chars = [c for i in lossy for c in tok.unknown_characters(lines[i])]
    examples = " ".join(dict.fromkeys(chars))[:40]
    print(f"warning: {len(chars)} character(s) in {len(lossy)} sentence(s) have no piece in "
          f"the tokenizer and were read as <unk> ({examples}); tokenizer.byte_fallback: true "
          "(retrain) keeps every character", file=sys.stderr)


def _out_of_memory(error: BaseException) -> bool:
    """Whether an allocation failed (CPU and CUDA allocators say so in different words)."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return "out of memory" in text or "can't allocate memory" in text
