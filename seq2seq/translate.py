"""Translator: text in, text out, batched; rebuilt from a checkpoint alone."""

import math
import sys
from pathlib import Path

import torch

from seq2seq.checkpoint import load_checkpoint, rebuild
from seq2seq.config import DecodeConfig
from seq2seq.data import make_source
from seq2seq.errors import Seq2SeqError
from seq2seq.model.transformer import Transformer
from seq2seq.runtime import resolve_device
from seq2seq.search import Hypotheses, beam_search, greedy_search, max_output_lengths
from seq2seq.tokenizer import Tokenizer


class Translator:
    """Translate sentences with a trained model.

    >>> t = Translator.from_checkpoint("runs/toy/best.pt")
    >>> t.translate(["the big dog sees two cats ."], beam_size=5)
    """

    def __init__(self, model: Transformer, src_tok: Tokenizer, tgt_tok: Tokenizer,
                 decode: DecodeConfig, device: torch.device):
        self.model, self.src_tok, self.tgt_tok = model, src_tok, tgt_tok
        self.decode, self.device = decode, device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> "Translator":
        dev = resolve_device(device)
        model, src_tok, tgt_tok, config = rebuild(load_checkpoint(path), dev, str(path))
        return cls(model, src_tok, tgt_tok, config.decode, dev)

    def translate(self, sentences: list[str], beam_size: int | None = None,
                  length_penalty: float | None = None, max_len_ratio: float | None = None,
                  batch_size: int | None = None) -> list[str]:
        """One output line per input line, in order; empty input gives empty output.

        Options left as None take the checkpoint's decode config.
        """
        beam, alpha, ratio, size = self.options(beam_size, length_penalty, max_len_ratio,
                                                batch_size)
        ids = self.src_tok.encode(list(sentences))
        ids = self._truncate(ids)
        tokens = self.translate_ids(ids, beam, alpha, ratio, size)
        outputs = self.tgt_tok.decode(tokens)
        return [out if sent.strip() else "" for sent, out in zip(sentences, outputs, strict=True)]

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

    def _truncate(self, ids: list[list[int]]) -> list[list[int]]:
        limit = self.model.max_positions - 1  # room for EOS
        long = sum(len(x) > limit for x in ids)
        if long:
            print(f"warning: {long} sentence(s) longer than the model's {limit} tokens were "
                  "truncated", file=sys.stderr)
        return [x[:limit] for x in ids]

    @torch.no_grad()
    def translate_ids(self, ids: list[list[int]], beam_size: int, alpha: float, ratio: float,
                      batch_size: int) -> list[list[int]]:
        """Token ids in, token ids out; sorted by length for dense batches, returned in order."""
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


def _out_of_memory(error: BaseException) -> bool:
    """Whether an allocation failed (CPU and CUDA allocators say so in different words)."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return "out of memory" in text or "can't allocate memory" in text
