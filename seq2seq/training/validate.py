"""Validation: loss and perplexity under teacher forcing, BLEU and chrF of decoded output."""

import math

import torch

from seq2seq.config import Config
from seq2seq.data import EncodedCorpus, ParallelText, make_batch, token_batches
from seq2seq.metrics import score
from seq2seq.tokenizer import Tokenizer
from seq2seq.training.step import validation_loss_module
from seq2seq.translate import Translator


@torch.no_grad()
def validation_loss(model, dev: EncodedCorpus, tok: Tokenizer, batch_tokens: int,
                    device: torch.device) -> float:
    """Mean negative log-likelihood per target token (no label smoothing); NaN for a dev
    set without pairs, which training refuses (loop.fit_to_positions)."""
    batches = token_batches([len(s) for s in dev.src], [len(t) for t in dev.tgt], batch_tokens,
                            seed=0, epoch=0, shuffle=False)
    loss_fn = validation_loss_module(model)
    total, tokens = 0.0, 0
    for indices in batches:
        b = make_batch([dev.src[i] for i in indices], [dev.tgt[i] for i in indices],
                       tok.pad_id, tok.bos_id, tok.eos_id).to(device)
        _, nll = loss_fn(b.src, b.tgt_in, b.tgt_out, b.src_mask, b.tgt_mask, b.n_tokens)
        total, tokens = total + nll.item(), tokens + b.n_tokens
    return total / tokens if tokens else float("nan")


def validate(model, dev: EncodedCorpus, dev_text: ParallelText, src_tok: Tokenizer,
             tgt_tok: Tokenizer, config: Config, device: torch.device) -> dict:
    """Loss, perplexity, BLEU and chrF on the dev set (BLEU on the first N sentences if set)."""
    was_training = model.training
    model.eval()
    try:
        loss = validation_loss(model, dev, tgt_tok, config.train.batch_tokens, device)
        n = config.train.eval_max_sentences or len(dev_text.src)
        translator = Translator(model, src_tok, tgt_tok, config.decode, device)
        hyps = translator.translate(dev_text.src[:n], beam_size=config.train.eval_beam_size)
        scores = score(hyps, dev_text.tgt[:n])
    finally:
        model.train(was_training)
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)), "bleu": scores.bleu,
            "chrf": scores.chrf}
