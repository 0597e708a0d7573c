"""Parallel text to batches: encode once (cached), filter, bucket, pad.

The flow is read_parallel (seq2seq.corpora.parallel) -> encode_parallel -> filter_long ->
token_batches (-> shard) -> make_batch.  make_batch is the one place where the
teacher-forcing shift happens and where the masks are built.
"""

from __future__ import annotations

import array
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

# Reading moved to seq2seq.corpora; these names stay importable from here for their callers.
from seq2seq.corpora.lines import STDIN, UTF16_HELP, looks_like_utf16, read_lines  # noqa: F401
from seq2seq.corpora.parallel import ParallelText, read_parallel  # noqa: F401
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write
from seq2seq.model.masks import padding_mask, target_mask
from seq2seq.tokenizer import Tokenizer

CACHE_VERSION = 1  # bump when the cache layout changes, so old files are ignored


# ---------------------------------------------------------------- encoding, cached


@dataclass(frozen=True)
class EncodedCorpus:
    """Token ids of aligned pairs, without BOS/EOS."""

    src: list[list[int]]
    tgt: list[list[int]]


def encode_parallel(
    text: ParallelText,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    cache_dir: Path | None = None,
) -> EncodedCorpus:
    """Tokenize both sides once; with cache_dir, reuse ids from an earlier run.

    The cache file is cache_dir/ids-<key>.pt, where the key hashes both tokenizers and the
    text, so changing either gives a new file instead of stale ids.  A cache file that
    cannot be read is ignored and rebuilt.
    """
    if cache_dir is None:
        return EncodedCorpus(src=src_tok.encode(text.src), tgt=tgt_tok.encode(text.tgt))
    path = Path(cache_dir) / f"ids-{_cache_key(text, src_tok, tgt_tok)}.pt"
    cached = _load_cache(path, len(text.src))
    if cached is not None:
        return cached
    corpus = EncodedCorpus(src=src_tok.encode(text.src), tgt=tgt_tok.encode(text.tgt))
    _save_cache(path, corpus)
    return corpus


def _cache_key(text: ParallelText, src_tok: Tokenizer, tgt_tok: Tokenizer) -> str:
    """sha256 over the format version, both tokenizers and both sides of the text."""
    h = hashlib.sha256(f"seq2seq-ids-v{CACHE_VERSION}".encode())
    for model in (src_tok.model_bytes, tgt_tok.model_bytes):
        h.update(len(model).to_bytes(8, "little"))
        h.update(model)
    for lines in (text.src, text.tgt):
        # Line lengths make the joined text unambiguous even if a line contains "\n".
        lengths = array.array("q", [len(line) for line in lines])
        h.update(len(lines).to_bytes(8, "little"))
        h.update(lengths.tobytes())
        h.update("\n".join(lines).encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


def _flatten(seqs: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Ragged id lists -> (flat ids (N,) int32, offsets (n+1,) int64)."""
    offsets = [0]
    for s in seqs:
        offsets.append(offsets[-1] + len(s))
    flat = [i for s in seqs for i in s]
    return torch.tensor(flat, dtype=torch.int32), torch.tensor(offsets, dtype=torch.int64)


def _unflatten(flat: Tensor, offsets: Tensor) -> list[list[int]]:
    """Inverse of _flatten."""
    ids, bounds = flat.tolist(), offsets.tolist()
    return [ids[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _save_cache(path: Path, corpus: EncodedCorpus) -> None:
    """torch.save the corpus as flat tensors, atomically (concurrent ranks may race here)."""
    src_ids, src_off = _flatten(corpus.src)
    tgt_ids, tgt_off = _flatten(corpus.tgt)
    state = {
        "version": CACHE_VERSION,
        "src_ids": src_ids,
        "src_offsets": src_off,
        "tgt_ids": tgt_ids,
        "tgt_offsets": tgt_off,
    }
    try:
        atomic_write(path, lambda f: torch.save(state, f))
    except OSError as e:
        raise Seq2SeqError(
            f"cannot write token cache {path}: {e.strerror}; make the cache directory "
            "writable or turn the cache off"
        ) from None


def _load_cache(path: Path, n_pairs: int) -> EncodedCorpus | None:
    """The cached corpus at `path`, or None if it is missing, corrupt or inconsistent."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["version"] != CACHE_VERSION:
            return None
        src_off, tgt_off = state["src_offsets"], state["tgt_offsets"]
        if len(src_off) != n_pairs + 1 or len(tgt_off) != n_pairs + 1:
            return None
        if int(src_off[-1]) != len(state["src_ids"]) or int(tgt_off[-1]) != len(state["tgt_ids"]):
            return None
        return EncodedCorpus(
            src=_unflatten(state["src_ids"], src_off), tgt=_unflatten(state["tgt_ids"], tgt_off)
        )
    except Exception:  # any unreadable cache (truncated, foreign, old) is rebuilt, never fatal
        return None


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
