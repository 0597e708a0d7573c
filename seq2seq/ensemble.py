"""Ensemble: several models decoded as one, each with its own key/value cache.

At every step the ensemble's log-probabilities are the log of the mean of the models'
probabilities, log(1/M sum_m p_m), as fairseq's EnsembleModel combines them (not the
mean of their log-probabilities). An Ensemble satisfies the Seq2SeqModel protocol
(model/protocol.py), so greedy, beam, n-best, sampling and forced scoring run on it as
they are: memory and hidden states are the models' own, side by side along the last
dimension, and split again before each model sees them.
"""

import math

import torch
from torch import Tensor, nn

from seq2seq.model.protocol import DecodingCache


class EnsembleCache:
    """One cache per model; search's row selections and copies go to each."""

    def __init__(self, caches: list[DecodingCache]):
        self.caches = caches

    def select(self, index: Tensor, cross_index: Tensor | None = None) -> None:
        """Keep and reorder batch rows in every model's cache (see DecodingCache.select)."""
        for cache in self.caches:
            cache.select(index, cross_index)

    def copy_rows(self, src: Tensor, dst: Tensor) -> None:
        """Rows dst continue from rows src in every model's cache."""
        for cache in self.caches:
            cache.copy_rows(src, dst)


class Ensemble:
    """Models over the same vocabularies, decoded together (see the module docstring).

    The models must share pad_id and target vocabulary size; their widths (d_model) may
    differ. max_positions is the smallest model's; memory is shared between beams only
    when every model can (beams_share_memory), else copied for each beam, which every
    model accepts.
    """

    def __init__(self, models: list[nn.Module]):
        if not models:
            raise ValueError("an ensemble needs at least one model")
        if len({m.pad_id for m in models}) > 1:
            raise ValueError("the models of an ensemble must share their pad id")
        self.models = list(models)
        self.pad_id = models[0].pad_id
        self.max_positions = min(m.max_positions for m in models)
        self.beams_share_memory = all(m.beams_share_memory for m in models)
        self.top_k = models[0].top_k
        self.widths = [m.d_model for m in models]  # memory and hidden width of each

    def encode(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, list[Tensor]]:
        """src: (B, S), src_mask: (B, 1, 1, S) -> memory (B, S, sum of D) and no weights."""
        memories = [model.encode(src, src_mask)[0] for model in self.models]  # (B, S, D_m)
        return torch.cat(memories, dim=-1), []

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor, tgt_mask: Tensor | None,
               cache: EnsembleCache | None = None) -> tuple[Tensor, None]:
        """Every model's decoder states, side by side: tgt_in (B, T) -> (B, T, sum of D)."""
        memories = memory.split(self.widths, dim=-1)  # (B, S, D_m) each
        caches = cache.caches if cache is not None else [None] * len(self.models)
        hidden = [model.decode(tgt_in, part, src_mask, tgt_mask, c)[0]
                  for model, part, c in zip(self.models, memories, caches, strict=True)]
        return torch.cat(hidden, dim=-1), None  # (B, T, sum of D)

    def logits(self, hidden: Tensor) -> Tensor:
        """log(mean of the models' probabilities), in fp32: (..., sum of D) -> (..., V).

        Already normalised; search masks PAD and BOS and renormalises as for one model.
        """
        parts = hidden.split(self.widths, dim=-1)
        logp = torch.stack([model.logits(part).float().log_softmax(dim=-1)
                            for model, part in zip(self.models, parts, strict=True)])  # (M, ..., V)
        return torch.logsumexp(logp, dim=0) - math.log(len(self.models))

    def new_cache(self, capacity: int = 0) -> EnsembleCache:
        """An empty cache for each model."""
        return EnsembleCache([model.new_cache(capacity) for model in self.models])
