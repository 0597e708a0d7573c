"""Feeding the loop: an epoch's optimizer steps as store indices, and their batches, built
ahead on a background thread on a GPU so that the device never waits for them.

On a CPU the batches are built when they are needed: the step uses every core, and a
thread building the next batch would only take time from it.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from seq2seq.config import TrainConfig
from seq2seq.data import Batch, TrainSet, length_batches, make_batch, shard
from seq2seq.errors import Seq2SeqError
from seq2seq.tokenizer import Tokenizer
from seq2seq.training.distributed import World

Step = list[np.ndarray]  # one optimizer step: its micro-batches, each (B,) store indices
AHEAD = 2  # steps built ahead on a GPU: one being copied while the next is built


def epoch_steps(train: TrainSet, settings: TrainConfig, world: World, epoch: int) -> list[Step]:
    """The epoch's optimizer steps on this rank, each a list of micro-batches (indices).

    Every rank computes the same batches of the same (seed, epoch) and takes its share.
    """
    items = train.epoch_items(settings.seed, epoch)  # (N,) store indices
    lens = train.store.lens
    batches = length_batches(lens["src"][items], lens["tgt"][items], settings.batch_tokens,
                             settings.seed, epoch)  # positions in items
    # The store indices, batch after batch, in one array; each batch a view of it.
    flat = items[np.concatenate(batches)]  # (N,)
    del items
    bounds = np.cumsum([len(b) for b in batches])[:-1]
    mine = shard(np.split(flat, bounds), world.rank, world.size)
    acc = settings.accumulate
    steps = [mine[i : i + acc] for i in range(0, len(mine), acc)]
    if not steps:  # e.g. fewer batches than processes: an epoch would be empty
        raise Seq2SeqError(f"an epoch has no batches for {world.size} process(es); lower "
                           "train.batch_tokens or use fewer processes")
    return steps


def batch_of(train: TrainSet, tok: Tokenizer, indices: np.ndarray) -> Batch:
    """The training pairs at store `indices` (B,) as a Batch on the CPU."""
    src, tgt = train.store.pairs(indices)
    return make_batch(src, tgt, tok.pad_id, tok.bos_id, tok.eos_id)


def ahead_for(device: torch.device) -> int:
    """How many steps to build ahead on `device`: AHEAD on a GPU, none on a CPU."""
    return AHEAD if device.type == "cuda" else 0


class Feed:
    """The batches of `steps`, on `device`, one list (a step's micro-batches) at a time.

    ahead > 0: a background thread builds up to `ahead` steps in advance (in pinned memory
    for a GPU, whose copies then overlap the running step). `waited` counts the seconds
    the loop spent waiting for a step's batches. Use it as a context manager: leaving it
    stops the thread, wherever the loop broke off.
    """

    def __init__(self, steps: list[Step], make: Callable[[np.ndarray], Batch],
                 device: torch.device, ahead: int):
        self.steps, self.make, self.device, self.ahead = steps, make, device, ahead
        self.pin = device.type == "cuda"
        self.waited = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=max(ahead, 1))
        self._stop = threading.Event()
        self._thread = None
        if ahead > 0:
            self._thread = threading.Thread(target=self._build, name="seq2seq-feed",
                                            daemon=True)
            self._thread.start()

    def __iter__(self) -> Iterator[list[Batch]]:
        if self._thread is None:
            for step in self.steps:
                start = time.perf_counter()
                built = [self.make(m).to(self.device) for m in step]
                self.waited += time.perf_counter() - start
                yield built
            return
        for _ in self.steps:
            start = time.perf_counter()
            kind, item = self._queue.get()
            self.waited += time.perf_counter() - start
            if kind == "error":
                raise item
            yield [b.to(self.device, non_blocking=self.pin) for b in item]

    def _build(self) -> None:
        """The thread: each step's batches, in order, into the bounded queue."""
        try:
            for step in self.steps:
                built = [self.make(m) for m in step]
                if self.pin:
                    built = [b.pin_memory() for b in built]
                if not self._put(("step", built)):
                    return
        except BaseException as error:  # the loop raises it where it waits
            self._put(("error", error))

    def _put(self, item: tuple) -> bool:
        """Queue `item` unless the feed is closing; False when it is."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "Feed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
