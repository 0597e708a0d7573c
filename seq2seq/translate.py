"""Translator: text in, text out, batched; rebuilt from a checkpoint alone."""

import sys
from pathlib import Path

import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import Config, DecodeConfig, from_dict
from seq2seq.data import make_source
from seq2seq.errors import Seq2SeqError
from seq2seq.fast import accelerate
from seq2seq.model.build import build_model
from seq2seq.model.transformer import Transformer
from seq2seq.runtime import resolve_device
from seq2seq.search import Hypotheses, beam_search, greedy_search, max_output_lengths
from seq2seq.tokenizer import Tokenizer


def model_from_checkpoint(state: dict, device: torch.device
                          ) -> tuple[Transformer, Tokenizer, Tokenizer, Config]:
    """Rebuild model, tokenizers and config from a loaded checkpoint dict."""
    config = from_dict(state["config"], source="checkpoint config")
    src_tok = Tokenizer(state["tokenizers"]["src"])
    tgt_tok = Tokenizer(state["tokenizers"]["tgt"])
    model = build_model(config.model, src_tok.vocab_size, tgt_tok.vocab_size, src_tok.pad_id,
                        joint_vocab=state["tokenizers"]["src"] == state["tokenizers"]["tgt"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise Seq2SeqError(f"checkpoint weights do not fit its own config: {first}") from None
    if config.train.fast:
        accelerate(model)
    return model.to(device).eval(), src_tok, tgt_tok, config


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
        model, src_tok, tgt_tok, config = model_from_checkpoint(load_checkpoint(path), dev)
        return cls(model, src_tok, tgt_tok, config.decode, dev)

    def translate(self, sentences: list[str], beam_size: int | None = None,
                  length_penalty: float | None = None, max_len_ratio: float | None = None,
                  batch_size: int | None = None) -> list[str]:
        """One output line per input line, in order; empty input gives empty output.

        Options left as None take the checkpoint's decode config.
        """
        d = self.decode
        beam = d.beam_size if beam_size is None else beam_size
        alpha = d.length_penalty if length_penalty is None else length_penalty
        ratio = d.max_len_ratio if max_len_ratio is None else max_len_ratio
        size = d.batch_size if batch_size is None else batch_size
        if beam < 1 or size < 1 or ratio <= 0 or alpha < 0:
            raise Seq2SeqError("beam size and batch size must be >= 1, max-len-ratio > 0, "
                               "length penalty >= 0")
        ids = self.src_tok.encode(list(sentences))
        ids = self._truncate(ids)
        tokens = self.translate_ids(ids, beam, alpha, ratio, size)
        outputs = self.tgt_tok.decode(tokens)
        return [out if sent.strip() else "" for sent, out in zip(sentences, outputs, strict=True)]

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
        if beam_size == 1:
            return greedy_search(self.model, src, src_mask, bos, eos, max_lens)
        return beam_search(self.model, src, src_mask, bos, eos, max_lens, beam_size, alpha)
