"""A micro-batcher: requests that arrive within a few milliseconds of each other with the
same decoding options are translated as one batch, by one worker thread that alone owns
the model (so no two requests ever run the model at once)."""

import queue
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

Run = Callable[[Any, list], list]  # (key, items) -> one result per item


class Busy(Exception):
    """Too many requests are waiting; the caller should answer 503."""


@dataclass
class Job:
    key: Hashable  # requests batch together only when their keys are equal
    items: list
    future: Future = field(default_factory=Future)


_STOP = object()


class MicroBatcher:
    """Collects jobs into batches and runs them on one worker thread.

    run(key, items) is called with every item of the batched jobs, in arrival order, and
    returns one result per item; each job's future gets its own slice. An exception in
    run fails that batch's jobs only; the worker goes on with the next batch.
    """

    def __init__(self, run: Run, wait_s: float = 0.005, max_items: int = 64,
                 max_jobs: int = 256):
        """wait_s: how long the first job of a batch waits for others; max_items: the most
        items in one batch (a larger job runs alone); max_jobs: waiting jobs before
        submit raises Busy."""
        self._run, self.wait_s, self.max_items, self.max_jobs = run, wait_s, max_items, max_jobs
        self._queue: queue.Queue = queue.Queue()
        self._held: deque[Job] = deque()  # taken off the queue, waiting for their own batch
        self._stopping = False
        self.batches = 0  # how many batches have run, for tests and /health
        self._thread = threading.Thread(target=self._work, name="seq2seq-model", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._queue.qsize() + len(self._held)

    def submit(self, key: Hashable, items: list) -> Future:
        """Queue a job; its future resolves to one result per item (or run's exception)."""
        if self._stopping:
            raise Busy("the server is shutting down")
        if self.waiting >= self.max_jobs:
            raise Busy(f"{self.waiting} requests are already waiting")
        job = Job(key, list(items))
        self._queue.put(job)
        return job.future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the batches already queued, then stop the worker."""
        self._stopping = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                self._cancel_rest()
                return
            jobs = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if jobs:  # every job may have timed out (cancelled) while it waited
                self._run_batch(jobs)

    def _cancel_rest(self) -> None:
        """Jobs that came in while the batcher was stopping: failed with Busy, never left
        hanging."""
        rest = list(self._held)
        while True:
            try:
                rest.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for job in rest:
            if job is not _STOP and job.future.set_running_or_notify_cancel():
                job.future.set_exception(Busy("the server is shutting down"))

    def _run_batch(self, jobs: list[Job]) -> None:
        items = [item for job in jobs for item in job.items]
        try:
            results = self._run(jobs[0].key, items)
        except Exception as error:  # one bad batch must not end the worker
            if not _expected(error):
                traceback.print_exc(file=sys.stderr)
            for job in jobs:
                job.future.set_exception(error)
            return
        finally:
            self.batches += 1
        start = 0
        for job in jobs:
            job.future.set_result(results[start : start + len(job.items)])
            start += len(job.items)

    def _next_batch(self) -> list[Job] | None:
        """The oldest job and every job with its key that arrives within wait_s (jobs held
        back from earlier rounds first), up to max_items; None once stopped."""
        first = self._held.popleft() if self._held else self._queue.get()
        if first is _STOP:
            return None
        batch, size = [first], len(first.items)
        kept: deque[Job] = deque()
        for job in self._held:
            if self._joins(job, first, size):
                batch.append(job)
                size += len(job.items)
            else:
                kept.append(job)
        self._held = kept
        deadline = time.monotonic() + self.wait_s
        while size < self.max_items:
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                self._held.append(job)  # stop after this batch and those held before it
                break
            if self._joins(job, first, size):
                batch.append(job)
                size += len(job.items)
            else:
                self._held.append(job)
        return batch

    def _joins(self, job, first: Job, size: int) -> bool:
        """Whether job may join first's batch, which holds `size` items so far."""
        return (job is not _STOP and job.key == first.key
                and size + len(job.items) <= self.max_items)


def _expected(error: Exception) -> bool:
    """A user's error (its message is the answer), not a fault worth a traceback."""
    from seq2seq.errors import Seq2SeqError

    return isinstance(error, Seq2SeqError)
