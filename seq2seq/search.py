"""Greedy and beam search: pure functions over a model and tensors.

Both decode incrementally with the model's key/value cache (one new token per step)
and drop finished sentences from the active batch. A hypothesis ends with EOS or when
it reaches its sentence's length limit; the returned tokens exclude BOS and EOS.

What the model must offer is the Seq2SeqModel protocol (model/protocol.py): encode,
decode, logits, new_cache, pad_id, max_positions, top_k and beams_share_memory.

Beam search keeps every hypothesis in the cache row of the beam it extends whenever it
can (see _slots), so a step copies cache rows only where a beam forks into several.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.model.protocol import DecodingCache, Seq2SeqModel


@dataclass
class Hypotheses:
    """Search results in input order: tokens (no BOS/EOS) and their scores."""

    tokens: list[list[int]]
    scores: list[float]  # greedy: sum of log-probs; beam: that divided by the length penalty


def max_output_lengths(src_mask: Tensor, ratio: float, max_positions: int) -> Tensor:
    """Per-sentence output limit: ratio * source tokens + 10, within the model's positions.

    src_mask: (B, 1, 1, S) -> (B,) long.
    """
    src_len = src_mask.flatten(1).sum(dim=1)  # (B,)
    limit = (src_len.float() * ratio).long() + 10
    return limit.clamp(1, max_positions - 1)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha; alpha 0 means raw log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


def _step_log_probs(model: Seq2SeqModel, last: Tensor, memory: Tensor, src_mask: Tensor,
                    cache: DecodingCache, bos_id: int) -> Tensor:
    """Run the decoder on the newest tokens only.  last: (N, 1) -> log-probs (N, V) in fp32.

    PAD and BOS are never valid outputs, so they get probability zero.
    """
    hidden, _ = model.decode(last, memory, src_mask, None, cache)  # (N, 1, D)
    logits = model.logits(hidden[:, -1]).float()  # (N, V)
    logits[:, model.pad_id] = float("-inf")  # a column fill each, not an indexed write
    logits[:, bos_id] = float("-inf")
    # in place: a second (N, V) tensor would cost memory and a pass
    return torch.log_softmax(logits, dim=-1, out=logits)


@torch.no_grad()
def greedy_search(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, bos_id: int, eos_id: int,
                  max_lens: Tensor) -> Hypotheses:
    """Pick the most probable token at each step.

    src: (B, S); src_mask: (B, 1, 1, S); max_lens: (B,) output limits.
    """
    B = src.size(0)
    memory, _ = model.encode(src, src_mask)  # (B, S, D)
    cache = model.new_cache(int(max_lens.max()) + 1)
    rows = torch.arange(B, device=src.device)  # input index of each active row
    last = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)
    tokens: list[list[int]] = [[] for _ in range(B)]
    scores = [0.0] * B
    limits = max_lens.tolist()
    while rows.numel():
        logp = _step_log_probs(model, last, memory, src_mask, cache, bos_id)  # (N, V)
        best_lp, best = (t.squeeze(1) for t in model.top_k(logp, 1))  # (N,) each
        keep = []
        for i, (row, tok, lp) in enumerate(zip(rows.tolist(), best.tolist(), best_lp.tolist(),
                                               strict=True)):
            scores[row] += lp
            if tok != eos_id:
                tokens[row].append(tok)
            if tok != eos_id and len(tokens[row]) < limits[row]:
                keep.append(i)
        last = best.unsqueeze(1)  # (N, 1)
        if len(keep) < len(rows):  # drop finished rows; reorder nothing on most steps
            index = torch.tensor(keep, dtype=torch.long, device=src.device)
            rows, last = rows[index], last[index]  # (N', 1)
            memory, src_mask = memory[index], src_mask[index]
            cache.select(index)
    return Hypotheses(tokens, scores)


@torch.no_grad()
def beam_search(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, bos_id: int, eos_id: int,
                max_lens: Tensor, beam_size: int, alpha: float = 1.0) -> Hypotheses:
    """Keep the beam_size best partial hypotheses of every sentence, batched.

    A sentence is done when beam_size hypotheses have ended with EOS, or when its
    beams reach its length limit. Scores are log-probabilities divided by
    length_penalty(length, alpha), length counting EOS.
    src: (B, S); src_mask: (B, 1, 1, S); max_lens: (B,).
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
    beam_scores = torch.full((B, k), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0  # all beams start identical: expand only the first
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    limits = max_lens.tolist()
    beams = torch.arange(k, device=device)
    while sents.numel():
        N, t = sents.numel(), seqs.size(1)
        logp = _step_log_probs(model, seqs[:, -1:], memory, src_mask, cache, bos_id)  # (N*k, V)
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
    best = [max(hyps, key=lambda h: h[0]) for hyps in finished]
    return Hypotheses([tokens for _, tokens in best], [score for score, _ in best])


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
        if len(finished[sent]) >= k:
            continue
        row = n * k + top_beam[n, j].item()
        score = top_scores[n, j].item() / length_penalty(t, alpha)  # t tokens incl. EOS
        finished[sent].append((score, seqs[row, 1:].tolist()))


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
                score = beam_scores[n, j].item()
                if score > float("-inf"):
                    tokens = seqs[n * k + j, 1:].tolist()
                    finished[sent].append((score / length_penalty(length, alpha), tokens))
            continue
        alive.append(n)
    return torch.tensor(alive, dtype=torch.long, device=sents.device)
