"""Text pairs to arrays of token ids, on every core, in order: what the token store is
built from (seq2seq.store).

A chunk of pairs is encoded by one worker process with its own copy of the tokenizers;
results come back in the order the chunks went out, and only a few chunks are in flight
at once, so the text read ahead stays small whatever the corpus size.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from seq2seq.tokenizer import Tokenizer

SIDES = ("src", "tgt")
CHUNK = 20_000  # pairs a worker encodes at once: enough to amortise the pickling
Chunk = list[tuple[str, str]]


@dataclass
class Encoded:
    """One chunk's kept pairs as arrays, and what was dropped."""

    ids: dict[str, np.ndarray]  # side -> flat ids of the kept pairs
    lens: dict[str, np.ndarray]  # side -> (kept,) lengths
    read: int
    empty: int
    too_long: int


class Encoder:
    """Encodes chunks of pairs; built once per worker process (from the models' bytes)."""

    def __init__(self, src_model: bytes, tgt_model: bytes, max_len: int, ids_dtype: str,
                 threads: int = -1):
        self.src = Tokenizer(src_model)
        self.tgt = self.src if tgt_model == src_model else Tokenizer(tgt_model)
        self.max_len, self.dtype, self.threads = max_len, np.dtype(ids_dtype), threads
        self.args = (src_model, tgt_model, max_len, ids_dtype)

    def __call__(self, chunk: Chunk) -> Encoded:
        pairs = [(s, t) for s, t in chunk if s.strip() and t.strip()]
        ids = {"src": self.src.encode([s for s, _ in pairs], threads=self.threads),
               "tgt": self.tgt.encode([t for _, t in pairs], threads=self.threads)}
        lens = {side: np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
                for side, seqs in ids.items()}
        keep = (lens["src"] <= self.max_len) & (lens["tgt"] <= self.max_len)  # (pairs,)
        flat = {side: np.fromiter(itertools.chain.from_iterable(itertools.compress(seqs, keep)),
                                  dtype=self.dtype, count=int(lens[side][keep].sum()))
                for side, seqs in ids.items()}
        return Encoded(flat, {side: lens[side][keep] for side in SIDES}, read=len(chunk),
                       empty=len(chunk) - len(pairs), too_long=len(pairs) - int(keep.sum()))


_WORKER: Encoder | None = None  # a pool worker's own encoder, made once by _start_worker


def _start_worker(args: tuple) -> None:
    global _WORKER
    _WORKER = Encoder(*args, threads=1)  # the pool is the parallelism: one thread each


def _encode_in_worker(chunk: Chunk) -> Encoded:
    return _WORKER(chunk)


class Encoding:
    """Encodes streams of pairs chunk by chunk, in order: in this process when there is one
    worker or a stream fits one chunk, else over a pool of `workers` processes with a
    bounded queue (the text read ahead stays 2 * workers chunks, whatever the corpus size).

    Use it as a context manager: leaving it stops the pool, also after an error or a signal.
    """

    def __init__(self, encoder: Encoder, workers: int = 0, chunk: int = CHUNK):
        self.encoder, self.chunk = encoder, chunk
        self.workers = workers or cores()
        self.pool = None

    def __call__(self, pairs: Iterable[tuple[str, str]]) -> Iterator[Encoded]:
        """Each chunk of `pairs` encoded, in order."""
        parts = _chunks(pairs, self.chunk)
        head = list(itertools.islice(parts, 2))
        if self.workers == 1 or len(head) < 2:
            yield from map(self.encoder, itertools.chain(head, parts))
            return
        if self.pool is None:
            self.pool = multiprocessing.get_context().Pool(self.workers, _start_worker,
                                                           (self.encoder.args,))
        pending = collections.deque()
        for part in itertools.chain(head, parts):
            pending.append(self.pool.apply_async(_encode_in_worker, (part,)))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def __enter__(self) -> Encoding:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()  # every result is in, or an error stops the rest
            self.pool.join()
            self.pool = None


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _chunks(pairs: Iterable[tuple[str, str]], size: int) -> Iterator[Chunk]:
    it = iter(pairs)
    while part := list(itertools.islice(it, size)):
        yield part
