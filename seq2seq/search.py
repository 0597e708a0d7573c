"""Greedy, beam and n-best search, and forced scoring: pure functions over a
model and tensors.

Every search decodes incrementally with the model's key/value cache (one new token per
step) and drops finished sentences from the active batch. A hypothesis ends with EOS or
when it reaches its sentence's length limit; the returned tokens exclude BOS and EOS. A
prefix (target ids per sentence) forces the first tokens, whose log-probabilities count
in the score as any other token's.

What the model must offer is the Seq2SeqModel protocol (model/protocol.py): encode,
decode, logits, new_cache, pad_id, max_positions, top_k and beams_share_memory.

Beam search keeps every hypothesis in the cache row of the beam it extends whenever it
can (see _slots), so a step copies cache rows only where a beam forks into several.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from seq2seq.model.protocol import DecodingCache, Seq2SeqModel

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Hypothesis:
    """One finished hypothesis: tokens (no BOS/EOS) and its scores."""

    tokens: list[int]
    log_prob: float  # the model's log-probability of the tokens, and of EOS when eos
    score: float  # log_prob / length_penalty(len(tokens) + eos, alpha)
    eos: bool  # ended with EOS (else at the length limit)


@dataclass
class Hypotheses:
    """Search results in input order: tokens (no BOS/EOS) and their scores, and every
    input's n-best list (beam search: best first; sampling: in the order drawn)."""

    tokens: list[list[int]]
    scores: list[float]  # greedy, sampling: sum of log-probs; beam: that / length penalty
    nbest: list[list[Hypothesis]] = field(default_factory=list)


def max_output_lengths(src_mask: Tensor, ratio: float, max_positions: int) -> Tensor:
    """Per-sentence output limit: ratio * source tokens + 10, within the model's positions.

    src_mask: (B, 1, 1, S) -> (B,) long.
    """
    return length_limits(src_mask.flatten(1).sum(dim=1), ratio, max_positions)


def length_limits(src_len: Tensor, ratio: float, max_positions: int) -> Tensor:
    """max_output_lengths from source lengths (EOS included): (B,) -> (B,) long."""
    limit = (src_len.float() * ratio).long() + 10
    return limit.clamp(1, max_positions - 1)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha; alpha 0 means raw log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


def prefix_tensor(prefixes: list[list[int]], device: torch.device) -> Tensor | None:
    """Forced target ids per sentence as (B, L) long, -1 past each prefix; None if all empty."""
    width = max((len(p) for p in prefixes), default=0)
    if width == 0:
        return None
    rows = [[*p, *[-1] * (width - len(p))] for p in prefixes]
    return torch.tensor(rows, dtype=torch.long, device=device)  # (B, L)


def _step_log_probs(model: Seq2SeqModel, last: Tensor, memory: Tensor, src_mask: Tensor,
                    cache: DecodingCache, bos_id: int) -> Tensor:
    """Run the decoder on the newest tokens only.  last: (N, 1) -> log-probs (N, V) in fp32.

    PAD and BOS are never valid outputs, so they get probability zero.
    """
    hidden, _ = model.decode(last, memory, src_mask, None, cache)  # (N, 1, D)
    logits = model.logits(hidden[:, -1]).float()  # (N, V)
    logits[:, model.pad_id] = NEG_INF  # a column fill each, not an indexed write
    logits[:, bos_id] = NEG_INF
    # in place: a second (N, V) tensor would cost memory and a pass
    return torch.log_softmax(logits, dim=-1, out=logits)


def _force(logp: Tensor, prefix: Tensor | None, rows: Tensor, t: int) -> None:
    """Where row r's prefix has a token at step t, leave only that token possible.

    logp: (N, V), changed in place; prefix: (B, L) or None; rows: (N,) the prefix row of
    each logp row. The forced token keeps its log-probability, so scores stay the model's.
    """
    if prefix is None or t >= prefix.size(1):
        return
    forced = prefix[rows, t]  # (N,), -1 = free
    at = (forced >= 0).nonzero().squeeze(1)  # (F,)
    if at.numel():
        tok = forced[at].unsqueeze(1)  # (F, 1)
        kept = torch.full_like(logp[at], NEG_INF).scatter_(1, tok, logp[at].gather(1, tok))
        logp.index_copy_(0, at, kept)


def one_path(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, bos_id: int, eos_id: int,
              max_lens: Tensor, choose: Callable[[Tensor], tuple[Tensor, Tensor]],
              prefix: Tensor | None, alpha: float, copies: int = 1) -> Hypotheses:
    """One hypothesis per row, each step's token picked by choose(log-probs (N, V)) ->
    (log-prob, token), (N,) each: greedy and sampling.  src: (B, S); max_lens: (B,);
    copies: rows per sentence, each sentence encoded once (rows i*copies ... in a run).
    prefix: (B * copies, L) or None."""
    memory, _ = model.encode(src, src_mask)  # (B, S, D)
    if copies > 1:
        memory, src_mask, max_lens = (x.repeat_interleave(copies, dim=0)
                                      for x in (memory, src_mask, max_lens))
    B = memory.size(0)
    cache = model.new_cache(int(max_lens.max()) + 1)
    rows = torch.arange(B, device=src.device)  # input index of each active row
    last = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)
    tokens: list[list[int]] = [[] for _ in range(B)]
    scores, ended = [0.0] * B, [False] * B
    limits = max_lens.tolist()
    t = 0
    while rows.numel():
        logp = _step_log_probs(model, last, memory, src_mask, cache, bos_id)  # (N, V)
        _force(logp, prefix, rows, t)
        best_lp, best = choose(logp)  # (N,) each
        keep = []
        for i, (row, tok, lp) in enumerate(zip(rows.tolist(), best.tolist(), best_lp.tolist(),
                                               strict=True)):
            scores[row] += lp
            ended[row] = tok == eos_id
            if tok != eos_id:
                tokens[row].append(tok)
            if tok != eos_id and len(tokens[row]) < limits[row]:
                keep.append(i)
        last, t = best.unsqueeze(1), t + 1  # (N, 1)
        if len(keep) < len(rows):  # drop finished rows; reorder nothing on most steps
            index = torch.tensor(keep, dtype=torch.long, device=src.device)
            rows, last = rows[index], last[index]  # (N', 1)
            memory, src_mask = memory[index], src_mask[index]
            cache.select(index)
    nbest = [[Hypothesis(tokens[r], scores[r],
                         scores[r] / length_penalty(len(tokens[r]) + ended[r], alpha), ended[r])]
             for r in range(B)]
    return Hypotheses(tokens, scores, nbest)


@torch.no_grad()
def greedy_search(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, bos_id: int, eos_id: int,
                  max_lens: Tensor, prefix: Tensor | None = None, alpha: float = 0.0
                  ) -> Hypotheses:
    """Pick the most probable token at each step.

    src: (B, S); src_mask: (B, 1, 1, S); max_lens: (B,) output limits; prefix: (B, L)
    forced ids, -1 past each prefix (prefix_tensor); alpha: the n-best scores' length penalty.
    """
    def most_probable(logp: Tensor) -> tuple[Tensor, Tensor]:
        best_lp, best = model.top_k(logp, 1)  # (N, 1) each
        return best_lp.squeeze(1), best.squeeze(1)

    return one_path(model, src, src_mask, bos_id, eos_id, max_lens, most_probable, prefix,
                     alpha)


@torch.no_grad()
def beam_search(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, bos_id: int, eos_id: int,
                max_lens: Tensor, beam_size: int, alpha: float = 1.0, prefix: Tensor | None = None,
                nbest: int = 1) -> Hypotheses:
    """Keep the beam_size best partial hypotheses of every sentence, batched.

    A sentence is done when beam_size hypotheses have ended with EOS, or when its
    beams reach its length limit. Scores are log-probabilities divided by
    length_penalty(length, alpha), length counting EOS. Each sentence's nbest (<=
    beam_size) best finished hypotheses come back in Hypotheses.nbest, best first: the
    lists the search keeps anyway.
    src: (B, S); src_mask: (B, 1, 1, S); max_lens: (B,); prefix: (B, L) or None.
    """
    B, k, device = src.size(0), beam_size, src.device
    memory, _ = model.encode(src, src_mask)  # (B, S, D)
    shared = model.beams_share_memory  # one memory row per sentence, else one per beam
    if not shared:
        memory = memory.repeat_interleave(k, dim=0)  # (B*k, S, D)
        src_mask = src_mask.repeat_interleave(k, dim=0)  # (B*k, 1, 1, S)
    cache = model.new_cache(int(max_lens.max()) + 1)
    sents = torch.arange(B, device=device)  # input index of each active sentence
    seqs = torch.full((B * k, 1), bos_id, dtype=torch.long, device=device)  # (N*k, t+1)
    beam_scores = torch.full((B, k), NEG_INF, device=device)
    beam_scores[:, 0] = 0.0  # all beams start identical: expand only the first
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    limits = max_lens.tolist()
    beams = torch.arange(k, device=device)
    while sents.numel():
        N, t = sents.numel(), seqs.size(1)
        logp = _step_log_probs(model, seqs[:, -1:], memory, src_mask, cache, bos_id)  # (N*k, V)
        if prefix is not None:
            _force(logp, prefix, sents.repeat_interleave(k), t - 1)
        top_scores, top_beam, top_tok = _best_candidates(model, beam_scores, logp, 2 * k)
        is_eos = top_tok == eos_id
        _finish_eos(finished, sents, seqs, k, top_scores, top_beam, is_eos, t, alpha)
        # The k best candidates that do not end the hypothesis become the new beams,
        # each placed in a cache slot (the row it extends, where possible).
        order = (is_eos.long() * 2 * k + torch.arange(2 * k, device=device)).argsort(dim=1)
        pick = order[:, :k]  # (N, k)
        parent = top_beam.gather(1, pick)  # (N, k): the beam each new hypothesis extends
        in_slot = _slots(parent).argsort(dim=1)  # (N, k): which pick goes to each slot
        pick, parent = pick.gather(1, in_slot), parent.gather(1, in_slot)
        beam_scores = top_scores.gather(1, pick)  # (N, k)
        base = torch.arange(N, device=device).unsqueeze(1) * k  # (N, 1)
        src_rows = (base + parent).view(-1)  # (N*k,) the cache row each extends
        seqs = torch.cat([seqs[src_rows], top_tok.gather(1, pick).view(-1, 1)], dim=1)
        dst_rows = (base + beams).view(-1)  # (N*k,)
        forked = src_rows != dst_rows
        cache.copy_rows(src_rows[forked], dst_rows[forked])
        alive = _retire_done(finished, sents, seqs, beam_scores, k, limits, alpha)
        if alive.numel() < N:  # sentences done: drop their rows
            keep_rows = (alive.unsqueeze(1) * k + beams).view(-1)
            sents, beam_scores, seqs = sents[alive], beam_scores[alive], seqs[keep_rows]
            memory_rows = alive if shared else keep_rows  # one memory row a sentence, or a beam
            memory, src_mask = memory[memory_rows], src_mask[memory_rows]
            if shared:  # the cross-attention keys/values too
                cache.select(keep_rows, alive)
            else:
                cache.select(keep_rows)
    # stable: among equal scores the first found stays first, as max() would pick it
    ranked = [sorted(hyps, key=lambda h: h.score, reverse=True)[:nbest] for hyps in finished]
    return Hypotheses([h[0].tokens for h in ranked], [h[0].score for h in ranked], ranked)


def _best_candidates(model: Seq2SeqModel, beam_scores: Tensor, logp: Tensor, n: int
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Each sentence's n best extensions: (scores, beam, token), each (N, n), best first.

    beam_scores: (N, k); logp: (N*k, V). A beam's score shifts all its tokens alike, so
    the sentence's n best are among each beam's n best tokens: model.top_k per beam row,
    then one top-n over the k*n survivors, instead of adding the score to all k*V
    candidates and ranking those.
    """
    N, k = beam_scores.shape
    beam_best, beam_tok = model.top_k(logp, n)  # (N*k, m), m = min(n, V)
    m = beam_best.size(1)
    cand = (beam_scores.view(-1, 1) + beam_best).view(N, k * m)  # (N, k*m)
    top_scores, top_idx = cand.topk(n, dim=1)  # (N, n)
    return top_scores, top_idx // m, beam_tok.view(N, k * m).gather(1, top_idx)


def _slots(parent: Tensor) -> Tensor:
    """The cache slot of each new hypothesis, so that as few rows as possible are copied.

    parent: (N, k), the beam (0..k-1) each new hypothesis extends. A parent's first child
    takes the parent's own slot, whose cache row already holds its past; further children
    take, in order, the slots of parents that left no child, and get copies of their
    parent's row. Returns (N, k), a permutation of 0..k-1 in every row.
    """
    k = parent.size(1)
    beams = torch.arange(k, device=parent.device)
    same = parent.unsqueeze(2) == parent.unsqueeze(1)  # (N, k, k): [n, j, i] same parent
    later = (same & (beams.view(1, 1, k) < beams.view(1, k, 1))).any(dim=2)  # (N, k)
    claimed = torch.zeros_like(same[:, 0]).scatter_(1, parent, True)  # (N, k) slots kept
    free = claimed.long().argsort(dim=1, stable=True)  # unclaimed slots first, in order
    rank = (later.long().cumsum(dim=1) - 1).clamp(min=0)  # (N, k): among the later children
    return torch.where(later, free.gather(1, rank), parent)


def _finish_eos(finished, sents: Tensor, seqs: Tensor, k: int, top_scores: Tensor,
                top_beam: Tensor, is_eos: Tensor, t: int, alpha: float) -> None:
    """Record hypotheses that chose EOS among a sentence's k best candidates."""
    eos_in_top = is_eos[:, :k].nonzero().tolist()  # [[n, j], ...], usually few
    for n, j in eos_in_top:
        sent = sents[n].item()
        log_prob = top_scores[n, j].item()
        # -inf: an impossible candidate (a dead beam, or one a prefix rules out)
        if len(finished[sent]) >= k or log_prob == NEG_INF:
            continue
        row = n * k + top_beam[n, j].item()
        score = log_prob / length_penalty(t, alpha)  # t tokens incl. EOS
        finished[sent].append(Hypothesis(seqs[row, 1:].tolist(), log_prob, score, True))


def _retire_done(finished, sents: Tensor, seqs: Tensor, beam_scores: Tensor, k: int,
                 limits: list[int], alpha: float) -> Tensor:
    """Close sentences with k finished hypotheses or at their length limit.

    Returns the positions (into sents) of the sentences still searching.
    """
    length = seqs.size(1) - 1  # generated tokens, BOS excluded
    alive = []
    for n, sent in enumerate(sents.tolist()):
        if len(finished[sent]) >= k:
            continue
        if length >= limits[sent]:
            for j in range(k):
                log_prob = beam_scores[n, j].item()
                if log_prob > NEG_INF:
                    tokens = seqs[n * k + j, 1:].tolist()
                    score = log_prob / length_penalty(length, alpha)
                    finished[sent].append(Hypothesis(tokens, log_prob, score, False))
            continue
        alive.append(n)
    return torch.tensor(alive, dtype=torch.long, device=sents.device)


@torch.no_grad()
def forced_log_probs(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, tgt_in: Tensor,
                     tgt_out: Tensor, tgt_mask: Tensor, bos_id: int) -> Tensor:
    """The log-probability of each given target token, as search computes it: (B, T), 0 at
    padding. PAD and BOS are impossible, as in search, so search's scores equal these sums.

    src: (B, S); src_mask: (B, 1, 1, S); tgt_in: (B, T) [BOS] + tokens; tgt_out: (B, T)
    tokens + [EOS]; tgt_mask: (B, 1, T, T) (data.make_batch builds all of them).
    """
    memory, _ = model.encode(src, src_mask)  # (B, S, D)
    hidden, _ = model.decode(tgt_in, memory, src_mask, tgt_mask)  # (B, T, D)
    logits = model.logits(hidden).float()  # (B, T, V)
    logits[..., model.pad_id] = NEG_INF
    logits[..., bos_id] = NEG_INF
    # the chosen logit less the log normaliser: no (B, T, V) log-softmax copy
    chosen = logits.gather(2, tgt_out.unsqueeze(2)).squeeze(2) - logits.logsumexp(dim=2)
    return chosen.masked_fill(tgt_out == model.pad_id, 0.0)  # (B, T)


@torch.no_grad()
def cross_attention(model, src: Tensor, src_mask: Tensor, tgt_in: Tensor, tgt_mask: Tensor
                    ) -> list[Tensor]:
    """Each decoder layer's cross-attention while reading tgt_in, averaged over heads.

    model: one that returns attention weights (Transformer, RNNSeq2Seq with attention).
    Returns one (B, T, S) tensor per layer: row t is the attention while predicting
    target token t; none for a model without attention.
    """
    memory, _ = model.encode(src, src_mask)  # (B, S, D)
    _, attention = model.decode(tgt_in, memory, src_mask, tgt_mask, None, need_weights=True)
    return [weights.mean(dim=1) for weights in attention.cross]  # (B, H, T, S) -> (B, T, S)
