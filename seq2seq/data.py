"""Parallel text to batches: encode, filter, bucket, pad.

The flow is read_parallel (seq2seq.corpora.parallel) -> encode_parallel -> filter_long ->
token_batches (-> shard) -> make_batch; training reads the token store (seq2seq.store)
through TrainSet, and length_batches is token_batches over its length arrays.  make_batch
is the one place where the teacher-forcing shift happens and where the masks are built.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

# Reading moved to seq2seq.corpora; these names stay importable from here for their callers.
from seq2seq.corpora.lines import STDIN, UTF16_HELP, looks_like_utf16, read_lines  # noqa: F401
from seq2seq.corpora.parallel import ParallelText, read_parallel  # noqa: F401
from seq2seq.model.masks import padding_mask, target_mask
from seq2seq.store import TokenStore
from seq2seq.tokenizer import Tokenizer

# ---------------------------------------------------------------- encoding


@dataclass(frozen=True)
class EncodedCorpus:
    """Token ids of aligned pairs, without BOS/EOS (the dev set; training reads the store)."""

    src: list[list[int]]
    tgt: list[list[int]]


def encode_parallel(text: ParallelText, src_tok: Tokenizer, tgt_tok: Tokenizer) -> EncodedCorpus:
    """Tokenize both sides, in memory (for text small enough to hold: dev, test, benchmarks;
    training corpora go to the token store, seq2seq.store)."""
    return EncodedCorpus(src=src_tok.encode(text.src), tgt=tgt_tok.encode(text.tgt))


def filter_long(corpus: EncodedCorpus, max_len: int) -> tuple[EncodedCorpus, int]:
    """Drop pairs where either side has more than max_len tokens (before BOS/EOS).

    Returns the filtered corpus and the number of pairs dropped.
    """
    keep = [
        i
        for i, (s, t) in enumerate(zip(corpus.src, corpus.tgt, strict=True))
        if len(s) <= max_len and len(t) <= max_len
    ]
    kept = EncodedCorpus(src=[corpus.src[i] for i in keep], tgt=[corpus.tgt[i] for i in keep])
    return kept, len(corpus.src) - len(keep)


# ---------------------------------------------------------------- batches of tensors


@dataclass
class Batch:
    """One padded training batch, masks included.  B sentences, S / T padded lengths."""

    src: Tensor  # (B, S) long: tokens + [EOS], right-padded with PAD
    tgt_in: Tensor  # (B, T) long: [BOS] + tokens, padded (decoder input)
    tgt_out: Tensor  # (B, T) long: tokens + [EOS], padded (what the decoder must predict)
    src_mask: Tensor  # (B, 1, 1, S) bool, True = real token
    tgt_mask: Tensor  # (B, 1, T, T) bool, causal and padding
    n_tokens: int  # non-pad tokens in tgt_out: the loss is summed over these

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        """A copy with every tensor on `device`."""
        return Batch(
            src=self.src.to(device, non_blocking=non_blocking),
            tgt_in=self.tgt_in.to(device, non_blocking=non_blocking),
            tgt_out=self.tgt_out.to(device, non_blocking=non_blocking),
            src_mask=self.src_mask.to(device, non_blocking=non_blocking),
            tgt_mask=self.tgt_mask.to(device, non_blocking=non_blocking),
            n_tokens=self.n_tokens,
        )

    def pin_memory(self) -> Batch:
        """A copy in page-locked memory (DataLoader(pin_memory=True) calls this)."""
        return Batch(
            src=self.src.pin_memory(),
            tgt_in=self.tgt_in.pin_memory(),
            tgt_out=self.tgt_out.pin_memory(),
            src_mask=self.src_mask.pin_memory(),
            tgt_mask=self.tgt_mask.pin_memory(),
            n_tokens=self.n_tokens,
        )


def _pad(seqs: Sequence[Sequence[int]], pad_id: int) -> Tensor:
    """Right-pad id lists to the longest one.  Returns (B, L) long."""
    # One torch.tensor call over padded lists beats a fill plus a slice per row, or
    # pad_sequence, for batches of short sentences.
    width = max((len(s) for s in seqs), default=0)
    rows = [[*s, *[pad_id] * (width - len(s))] for s in seqs]
    return torch.tensor(rows, dtype=torch.long).view(len(rows), width)  # (B, L), even if B = 0


def make_source(src: Sequence[Sequence[int]], pad_id: int, eos_id: int) -> tuple[Tensor, Tensor]:
    """Source id lists (no EOS) -> (src (B, S) long with EOS appended, src_mask (B, 1, 1, S))."""
    ids = _pad([[*s, eos_id] for s in src], pad_id)  # (B, S)
    return ids, padding_mask(ids, pad_id)  # (B, 1, 1, S)


def make_batch(
    src: Sequence[Sequence[int]],
    tgt: Sequence[Sequence[int]],
    pad_id: int,
    bos_id: int,
    eos_id: int,
) -> Batch:
    """Aligned id lists (no BOS/EOS) -> a padded Batch with masks.

    Teacher forcing: each target becomes full = [BOS] + t + [EOS]; the decoder reads
    full[:-1] and must predict full[1:], i.e. position i predicts the token after it.
    The shift is applied per sentence before padding, so tgt_in never contains EOS.
    """
    src_ids, src_mask = make_source(src, pad_id, eos_id)  # (B, S), (B, 1, 1, S)
    full = [[bos_id, *t, eos_id] for t in tgt]
    tgt_in = _pad([f[:-1] for f in full], pad_id)  # (B, T)
    tgt_out = _pad([f[1:] for f in full], pad_id)  # (B, T)
    return Batch(
        src=src_ids,
        tgt_in=tgt_in,
        tgt_out=tgt_out,
        src_mask=src_mask,
        tgt_mask=target_mask(tgt_in, pad_id),  # (B, 1, T, T)
        n_tokens=sum(len(t) + 1 for t in tgt),
    )


# ---------------------------------------------------------------- batching by length


def _rng(seed: int, epoch: int) -> random.Random:
    """A generator that depends only on (seed, epoch), identical across processes and runs."""
    # Python's hash() of a str is salted per process, so derive an int from sha256 instead.
    digest = hashlib.sha256(f"token_batches:{seed}:{epoch}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def token_batches(
    src_lens: Sequence[int],
    tgt_lens: Sequence[int],
    max_tokens: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
) -> list[list[int]]:
    """Length-bucketed batches of sentence indices, each within a padded-token budget.

    Pairs are sorted by (longer side, tgt_len, src_len), ties broken at random, and packed
    greedily so that n_sentences * (longest side in the batch + 1) <= max_tokens; the + 1
    is the BOS/EOS every side gains in make_batch. Sorting on the longer side first fills
    each batch to the budget's width on both sides, so less of it is padding than when
    sorted by target length (docs/speed.md has the figures). A pair too long
    for the budget on its own forms a batch of one. With shuffle, the order of the
    batches is shuffled too.
    Deterministic given (seed, epoch); every index appears in exactly one batch.
    """
    if len(src_lens) != len(tgt_lens):
        raise ValueError(f"{len(src_lens)} source lengths but {len(tgt_lens)} target lengths")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    rng = _rng(seed, epoch)
    ties = [rng.random() for _ in src_lens]
    order = sorted(range(len(src_lens)), key=lambda i: (max(src_lens[i], tgt_lens[i]),
                                                        tgt_lens[i], src_lens[i], ties[i]))
    batches: list[list[int]] = []
    batch: list[int] = []
    width = 0  # longest side in `batch`, + 1
    for i in order:
        w = max(width, src_lens[i] + 1, tgt_lens[i] + 1)
        if batch and (len(batch) + 1) * w > max_tokens:
            batches.append(batch)
            batch, w = [], max(src_lens[i], tgt_lens[i]) + 1
        batch.append(i)
        width = w
    if batch:
        batches.append(batch)
    if shuffle:
        rng.shuffle(batches)
    return batches


def shard(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This rank's share of the batches for distributed training.

    The tail is dropped so every rank gets the same number of batches (a rank with one
    more would wait forever in all-reduce); then rank takes batches[rank::world_size].
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    usable = len(batches) - len(batches) % world_size
    return batches[:usable][rank::world_size]


def padding_fraction(
    batches: list[list[int]], src_lens: Sequence[int], tgt_lens: Sequence[int]
) -> float:
    """Fraction of positions that are padding, source and target together, in these batches.

    Uses the same widths as make_batch: each side is its longest sentence + 1.
    """
    total = real = 0
    for batch in batches:
        src_width = max(src_lens[i] for i in batch) + 1
        tgt_width = max(tgt_lens[i] for i in batch) + 1
        total += len(batch) * (src_width + tgt_width)
        real += sum(src_lens[i] + tgt_lens[i] + 2 for i in batch)
    return 1.0 - real / total if total else 0.0


# ---------------------------------------------------------------- the same, vectorised


def length_batches(src_lens: np.ndarray, tgt_lens: np.ndarray, max_tokens: int, seed: int,
                   epoch: int, shuffle: bool = True) -> list[np.ndarray]:
    """token_batches over length arrays (n,), vectorised: the same batches, as index arrays.

    Faster because nothing is done per sentence in Python: the sort is one np.lexsort, and
    each batch's end is one binary search. Sorted by the longer side, the width of a batch
    is that of its last pair, so a batch from position a ends at the first j where
    (j - a + 1) * width[j] > max_tokens, i.e. where g[j] = j + 1 - max_tokens // width[j]
    exceeds a; g only grows, so np.searchsorted finds it. The random tie-breakers are the
    draws token_batches makes, from a numpy twin of its generator (_twin_of).
    """
    if len(src_lens) != len(tgt_lens):
        raise ValueError(f"{len(src_lens)} source lengths but {len(tgt_lens)} target lengths")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    n = len(src_lens)
    rng = _rng(seed, epoch)
    twin = _twin_of(rng)
    ties = twin.random_sample(n)  # (n,) what [rng.random() for _ in range(n)] draws
    _untwin(twin, rng)
    src, tgt = np.asarray(src_lens), np.asarray(tgt_lens)  # small integer types: less memory
    width = np.maximum(src, tgt).astype(np.int32) + 1  # (n,) each pair's longer side + 1
    order = np.lexsort((ties, src, tgt, width))  # (n,) by width, then tgt, src, tie
    del ties
    g = np.arange(1, n + 1, dtype=np.int64)
    g -= max_tokens // width[order]  # (n,) non-decreasing
    del width
    starts, a = [], 0
    while a < n:
        starts.append(a)
        a = max(int(np.searchsorted(g, a, side="right")), a + 1)  # + 1: too long alone
    batches = np.split(order, starts[1:]) if n else []
    if shuffle:
        rng.shuffle(batches)
    return batches


def _twin_of(rng: random.Random) -> np.random.RandomState:
    """A numpy generator in the state of `rng`: both are the same Mersenne Twister and make
    a float of two 32-bit draws the same way, so its random_sample() is rng.random()."""
    _, state, _ = rng.getstate()
    twin = np.random.RandomState()
    twin.set_state(("MT19937", np.array(state[:-1], dtype=np.uint32), state[-1], 0, 0.0))
    return twin


def _untwin(twin: np.random.RandomState, rng: random.Random) -> None:
    """Move `rng` on to where its twin is now (after the draws made on the twin)."""
    _, key, pos, _, _ = twin.get_state()
    rng.setstate((3, (*map(int, key), int(pos)), None))


# ---------------------------------------------------------------- what training draws from


@dataclass(frozen=True)
class TrainSet:
    """The pairs training draws from: a token store, which of its pairs fit the model, and
    each corpus's sampling weight (data.train's order)."""

    store: TokenStore
    weights: tuple[float, ...]  # one per corpus of the store
    keep: np.ndarray | None = None  # (n,) bool: pairs within the model's positions; None = all

    def __len__(self) -> int:
        return len(self.store) if self.keep is None else int(self.keep.sum())

    def within(self, limit: int) -> tuple[TrainSet, int]:
        """Only the pairs with both sides at most `limit` tokens; and how many were dropped."""
        lens = self.store.lens
        fits = (lens["src"] <= limit) & (lens["tgt"] <= limit)  # (n,)
        if self.keep is not None:
            fits &= self.keep
        return replace(self, keep=fits), len(self) - int(fits.sum())

    def epoch_items(self, seed: int, epoch: int) -> np.ndarray:
        """The store indices of an epoch's pairs, ascending, a pair repeated when drawn twice.

        Equal weights: every kept pair once. Otherwise an epoch has as many pairs as are
        kept, N, and corpus c (n_c kept pairs, weight w_c) gives k_c = round(N w_c n_c /
        sum_j w_j n_j) of them: each pair k_c // n_c times, and k_c % n_c more drawn
        without replacement, afresh each epoch from (seed, epoch, c). So a pair's chance
        to be seen is proportional to its corpus's weight (docs/data.md).
        """
        kept = []  # each corpus's kept pairs, as store indices
        for _, start, end in self.store.corpora:
            if self.keep is None:
                kept.append(np.arange(start, end, dtype=np.int64))
            else:
                inside = np.flatnonzero(self.keep[start:end])
                inside += start
                kept.append(inside)
        if len(set(self.weights)) <= 1:
            return kept[0] if len(kept) == 1 else np.concatenate(kept)
        sizes = np.array([k.size for k in kept], dtype=np.float64)
        share = np.asarray(self.weights, dtype=np.float64) * sizes
        wanted = np.rint(sizes.sum() * share / share.sum()).astype(np.int64)  # k_c
        parts = []
        for c, (pairs, k) in enumerate(zip(kept, wanted.tolist(), strict=True)):
            if pairs.size == 0 or k == 0:
                continue
            whole, extra = divmod(k, pairs.size)
            rng = np.random.default_rng([seed, epoch, c])
            parts += [np.tile(pairs, whole), rng.choice(pairs, size=extra, replace=False)]
        return np.sort(np.concatenate(parts))
