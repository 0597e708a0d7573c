"""Sampling for back-translation: n independent samples per sentence, drawn token by token
on search's batched, cached single-path decoder (search.one_path), from the tempered
softmax kept to the top-k tokens and the top-p nucleus."""

from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.model.protocol import Seq2SeqModel
from seq2seq.search import NEG_INF, Hypotheses, one_path


@dataclass(frozen=True)
class Sampling:
    """How sample_search draws each token: from softmax(log-probs / temperature), kept to
    the top_k most probable tokens (0: all) and to the smallest set whose probability
    reaches top_p (nucleus sampling; 1: all)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


@torch.no_grad()
def sample_search(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, bos_id: int, eos_id: int,
                  max_lens: Tensor, sampling: Sampling, generator: torch.Generator, n: int = 1,
                  prefix: Tensor | None = None, alpha: float = 0.0) -> Hypotheses:
    """Draw n independent samples per sentence, all rows in one batch.

    Each token is drawn as Sampling says, with `generator` alone (on src's device), so a
    seed and the same batches give the same samples. log_prob and score are the model's
    own (temperature 1, no truncation), as forced scoring gives them. nbest holds each
    sentence's n samples in the order drawn; tokens and scores its first.
    src: (B, S); src_mask: (B, 1, 1, S); max_lens: (B,); prefix: (B, L) or None.
    """
    def draw(logp: Tensor) -> tuple[Tensor, Tensor]:
        tok = sample_tokens(logp, sampling, generator)  # (N,)
        return logp.gather(1, tok.unsqueeze(1)).squeeze(1), tok

    if prefix is not None:
        prefix = prefix.repeat_interleave(n, dim=0)  # (B * n, L)
    out = one_path(model, src, src_mask, bos_id, eos_id, max_lens, draw, prefix, alpha, n)
    drawn = [hyps[0] for hyps in out.nbest]  # one per row, a sentence's n rows in a run
    nbest = [drawn[i * n : (i + 1) * n] for i in range(src.size(0))]
    return Hypotheses([g[0].tokens for g in nbest], [g[0].log_prob for g in nbest], nbest)


def sample_tokens(logp: Tensor, sampling: Sampling, generator: torch.Generator) -> Tensor:
    """One token per row drawn as `sampling` says.  logp: (N, V) -> (N,) long.

    Tokens of probability zero (PAD, BOS, a forced step's others) are never drawn. The
    draw is the Gumbel-max trick: argmax(scores + Gumbel noise) is distributed as
    softmax(scores), and it needs only uniform noise and an argmax, where torch.multinomial
    walks each row's cumulative sum.
    """
    # the row's maximum subtracted first, so a temperature near 0 cannot overflow to -inf
    scores = (logp - logp.amax(dim=1, keepdim=True)) / sampling.temperature  # (N, V)
    if 0 < sampling.top_k < scores.size(1):
        kth = scores.topk(sampling.top_k, dim=1).values[:, -1:]  # (N, 1)
        scores = scores.masked_fill(scores < kth, NEG_INF)
    if sampling.top_p < 1.0:
        scores = scores.masked_fill(~nucleus(scores.softmax(dim=1), sampling.top_p), NEG_INF)
    uniform = torch.rand(scores.shape, generator=generator, device=scores.device)  # [0, 1)
    gumbel = uniform.log_().neg_().log_().neg_()  # -log(-log u); u = 0 gives -inf, never drawn
    return (scores + gumbel).argmax(dim=1)


def nucleus(probs: Tensor, top_p: float, candidates: int = 64) -> Tensor:
    """Which tokens are in each row's nucleus: the most probable ones, down to and including
    the first that brings their mass to top_p.  probs: (N, V) -> (N, V) bool.

    A trained model's nucleus is usually a few dozen tokens, so the `candidates` most
    probable are ranked first (a top-k, far cheaper than sorting the vocabulary); only when
    some row's nucleus reaches beyond them is the whole vocabulary sorted.
    """
    k = min(candidates, probs.size(1))
    top, order = probs.topk(k, dim=1)  # (N, k) each, most probable first
    if k < probs.size(1) and bool((top.sum(dim=1) < top_p).any()):
        top, order = probs.sort(dim=1, descending=True)  # (N, V) each
    before = top.cumsum(dim=1) - top  # mass of the more probable tokens
    keep = torch.zeros_like(probs, dtype=torch.bool)
    return keep.scatter_(1, order, before < top_p)  # the most probable token always stays
