"""What search needs from a model: the Seq2SeqModel protocol (Transformer and RNNSeq2Seq).

Search (seq2seq/search.py) is typed against these protocols only, so any object with
these methods and attributes can be decoded, e.g. a test's wrapper around a model.
"""

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class DecodingCache(Protocol):
    """What a model's incremental-decoding cache offers search."""

    def select(self, index: Tensor, cross_index: Tensor | None = None) -> None:
        """Keep and reorder batch rows.  index: (B',) long; cross_index: the rows of what
        was computed from memory, when memory holds one row per sentence for its beams."""

    def copy_rows(self, src: Tensor, dst: Tensor) -> None:
        """Rows dst continue from rows src (beams forking within a sentence, no overlap)."""


@runtime_checkable
class Seq2SeqModel(Protocol):
    """An encoder-decoder that search can run one token at a time.

    beams_share_memory: when True, decode() takes memory and src_mask with one row per
    sentence for the g consecutive target rows of its beams, (B / g, S, D), and its cache's
    select(index, cross_index) keeps cross_index's rows of what it computed from memory;
    when False, search copies memory for every beam (B, S, D).
    top_k(scores, n): the ranking search uses, with the values of
    scores.topk(min(n, V), dim=1); scores (R, V) -> values, columns (R, min(n, V)).
    """

    pad_id: int
    max_positions: int
    beams_share_memory: bool

    def encode(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, list[Tensor]]:
        """src: (B, S), src_mask: (B, 1, 1, S) -> memory (B, S, D) and attention weights."""

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor, tgt_mask: Tensor | None,
               cache: DecodingCache | None = None) -> tuple[Tensor, object]:
        """tgt_in: (B, T) -> hidden (B, T, D); with a cache, positions continue from it."""

    def logits(self, hidden: Tensor) -> Tensor:
        """hidden: (..., D) -> (..., V)."""

    def new_cache(self, capacity: int = 0) -> DecodingCache:
        """An empty cache with room for `capacity` target tokens."""

    def top_k(self, scores: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """The n best entries of each row, see the class docstring."""


def top_k(scores: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The min(n, V) largest scores of each row and their columns, largest first.

    scores: (R, V) -> values, columns: (R, min(n, V)).
    """
    return scores.topk(min(n, scores.size(1)), dim=1)
