"""A run directory: checkpoints, the resolved config, metrics.jsonl. One writer, no surprises.

The order of use keeps a user's earlier run safe until the new one is sure to start:

    run = RunDir(config.train.run_dir, writer=is_main)
    run.acquire()                  # the lock: one writer per directory, or an error naming it
    run.check(resume, overwrite)   # refuses to start over checkpoints; deletes nothing
    ...                            # every other check (inputs, device, ...)
    run.clear_previous()           # only now, and only the files seq2seq writes
    ...
    run.release()                  # also on failure: removes the folder if acquire made it

`with RunDir(...) as run:` acquires and releases.
"""

import contextlib
import datetime
import fcntl
import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

from seq2seq.checkpoint import save_checkpoint
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write, check_run_dir, reason

LOCK_NAME = ".seq2seq.lock"
# Exactly the names train writes into a run directory besides the tokenizer and the token
# store (prepare.py manages those, each checked against its manifest, so never stale).
CHECKPOINT = re.compile(r"(last|best|averaged|best-step\d+)\.pt")
OUTPUTS = ("metrics.jsonl", "config.yaml")
PARTIAL = re.compile(r"\..+\..+\.tmp")  # files.atomic_write's temporary names


class RunDir:
    """Files of one training run; only the writer (the main process) locks and writes.

    path: the folder (train.run_dir); an empty or blank name is refused, since it would
    mean the current directory. log: where one-line notes go (removed partial files).
    """

    def __init__(self, path: str | Path, writer: bool, log: Callable[[str], None] = print):
        if not str(path).strip():
            raise Seq2SeqError("train.run_dir is empty; name a folder for the run's files, "
                               "e.g. runs/my-run")
        self.path, self.writer, self.log = Path(path), writer, log
        self._lock = None  # the open lock file while held
        self._created: list[Path] = []  # folders acquire made, deepest last
        self._mode: tuple[bool, bool] | None = None  # (resume, overwrite) once checked

    def __enter__(self) -> "RunDir":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # ---- one writer --------------------------------------------------------------------

    def acquire(self) -> None:
        """Create the folder if needed and take its lock; raise Seq2SeqError naming the
        process that holds it. The lock dies with its process, however that ends."""
        if not self.writer or self._lock is not None:
            return
        check_run_dir(self.path, "train.run_dir")  # a file, a loop, read-only, full: one line
        try:
            self._make_folder()
            self._lock = _lock_file(self.path / LOCK_NAME)
            self._remove_partial_files()
        except OSError as e:
            self.release()
            raise Seq2SeqError(f"cannot use run directory {self.path}: {reason(e)}; "
                               "check train.run_dir") from None
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Drop the lock; a folder acquire created is removed again if nothing was written."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self.path / LOCK_NAME).unlink()  # while held: acquire checks the file it locks
            self._lock.close()
            self._lock = None
        self._remove_created()

    def _make_folder(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise Seq2SeqError(f"train.run_dir {self.path} is a file, not a folder; "
                               "name a folder for the run")
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        self._created = missing[::-1]

    def _remove_created(self) -> None:
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only empty folders go
        self._created = []

    def _remove_partial_files(self) -> None:
        """Delete the temporary files of saves that a kill interrupted (no one else writes
        here now: this process holds the lock)."""
        for folder in (self.path, self.path / "cache"):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if PARTIAL.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                    p.unlink(missing_ok=True)
                    self.log(f"run dir: removed {p}, left by a save that was interrupted")

    # ---- checks, then deletion ---------------------------------------------------------

    def checkpoints(self) -> list[Path]:
        """The checkpoints train wrote here (a user's other .pt files are not counted)."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if CHECKPOINT.fullmatch(p.name))

    def check(self, resume: bool, overwrite: bool) -> None:
        """Refuse to train over earlier checkpoints unless told to resume or overwrite.

        Deletes nothing: clear_previous does, once every other check has passed too.
        """
        if resume and overwrite:
            raise Seq2SeqError("--resume and --overwrite exclude each other")
        if resume and not (self.path / "last.pt").is_file():
            raise Seq2SeqError(f"--resume: no {self.path / 'last.pt'} to resume from; "
                               "train without --resume to start")
        existing = self.checkpoints()
        if existing and not (resume or overwrite):
            raise Seq2SeqError(f"{self.path} already holds checkpoints ({existing[0].name}, "
                               "...); add --resume to continue, --overwrite to start again, "
                               "or set another train.run_dir")
        self._mode = (resume, overwrite)

    def check_unused(self) -> None:
        """For `prepare`: refuse a run whose checkpoints were trained with its tokenizer."""
        if self.checkpoints():
            raise Seq2SeqError(f"{self.path} already holds checkpoints trained with its "
                               "tokenizer; set another train.run_dir, or retrain from "
                               "scratch with `train --overwrite`")

    def clear_previous(self) -> None:
        """Start afresh: delete the earlier run's checkpoints, metrics and config (only
        those names; with --resume nothing). Call it right before the first write."""
        if self._mode is None:
            raise RuntimeError("RunDir.check must run before clear_previous")
        if not self.writer or self._mode[0]:
            return
        for stale in self.checkpoints() + [self.path / name for name in OUTPUTS]:
            stale.unlink(missing_ok=True)

    # ---- writing -----------------------------------------------------------------------

    def write_config(self, config, dump) -> None:
        if self.writer:
            dump(config, self.path / "config.yaml")

    def save(self, name: str, state: dict) -> None:
        if self.writer:
            save_checkpoint(state, self.path / name)

    def remove(self, name: str) -> None:
        if self.writer:
            (self.path / name).unlink(missing_ok=True)

    def append_metrics(self, row: dict) -> None:
        if self.writer:
            with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def trim_metrics(self, step: int) -> None:
        """On resume, forget rows written after the checkpoint's step."""
        path = self.path / "metrics.jsonl"
        if not self.writer or not path.is_file():
            return
        rows = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                if (row := _row(line)) is not None and row.get("step", 0) <= step]
        text = "".join(r + "\n" for r in rows).encode("utf-8")
        atomic_write(path, lambda f: f.write(text))  # a kill mid-write keeps the old file


def _lock_file(path: Path):
    """Open and flock `path`, then record who holds it; raise Seq2SeqError if taken."""
    while True:
        f = open(path, "a+", encoding="utf-8")  # held open while locked
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = _holder(f.read())
            f.close()
            raise Seq2SeqError(f"{path.parent} is in use by another seq2seq process "
                               f"({holder}); wait for it to finish or stop it, or set another "
                               "train.run_dir") from None
        except BaseException:
            f.close()
            raise
        # The holder before us may have unlinked the file between our open and our lock:
        # then we locked a file nobody else will find, and must lock the new one instead.
        try:
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}))
        f.flush()
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()  # e.g. a full disk; still held, so no one else has this file
        f.close()
        raise
    return f


def _holder(text: str) -> str:
    """'pid 123 on host h, since 2026-01-01T12:00:00+00:00', from a lock file's record."""
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on host {info['host']}, since {info['since']}"
    except (json.JSONDecodeError, KeyError, TypeError):
        return "it has only just started"  # locked, but its record is not written yet


def _row(line: str) -> dict | None:
    """One metrics row, or None for a blank line or one torn by a crash mid-append."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None
