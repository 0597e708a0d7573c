"""The token store: the training corpora encoded once into flat arrays on disk, which
training memory-maps, so a corpus of any size costs the memory of its lengths, not its text.

RUN_DIR/store/ holds, for each side (src, tgt), three raw little-endian arrays, and a
manifest.json that says what they were built from and what they hold:

    {side}.ids      the token ids of every kept pair, end to end (no BOS/EOS), in the
                    smallest unsigned type that holds the vocabulary (uint16 up to 65,536)
    {side}.offsets  int64, n + 1 of them: pair i's ids are ids[offsets[i]:offsets[i + 1]]
    {side}.lens     each pair's length, in the smallest type that holds data.max_len

Pairs keep the order of the corpora and their lines; the manifest's "corpora" gives each
corpus's range of pairs [start, end), which its sampling weight applies to. A store is
used only when the manifest's "built_from" (the format, both tokenizers' sha256, every
input file's fingerprint, data.max_len) equals the current one and every file has the
size the manifest gives; anything else rebuilds it. A build writes into a hidden folder
beside store/ and renames it into place only when complete, so a killed build never
leaves a store/ that could be used.

Training draws its batches from all over the store, and every page it touches would stay
mapped into the process: after an epoch, the whole store would count in its resident
memory. So pairs() hands the pages back once it has copied the ids out
(TokenStore.release): they stay in the kernel's page cache, which the next touch maps
again without reading the disk, and the process keeps only what one batch needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from seq2seq.encoding import CHUNK, SIDES, Encoded, Encoder, Encoding
from seq2seq.errors import Seq2SeqError
from seq2seq.files import reason
from seq2seq.tokenizer import Tokenizer

FORMAT = 1  # bump when the layout changes: an older store is rebuilt, never misread
LINE_EVERY = 1_000_000  # pairs between two progress lines when no bar is drawn
Pairs = Iterable[tuple[str, str]]
Log = Callable[[str], None]


# ---------------------------------------------------------------- what a store holds


@dataclass
class TokenStore:
    """A built store, memory-mapped: nothing is read from disk until it is indexed."""

    folder: Path
    manifest: dict
    ids: dict[str, np.ndarray]  # side -> (tokens,) flat ids
    offsets: dict[str, np.ndarray]  # side -> (n + 1,) int64
    lens: dict[str, np.ndarray]  # side -> (n,) tokens per pair
    maps: list[mmap.mmap] = field(default_factory=list, repr=False)  # under those arrays

    def __len__(self) -> int:
        return self.manifest["pairs"]

    @property
    def corpora(self) -> list[tuple[str, int, int]]:
        """(name, start, end) of each corpus's pairs, in data.train's order."""
        return [(c["name"], c["start"], c["end"]) for c in self.manifest["corpora"]]

    def pairs(self, indices: np.ndarray) -> tuple[list[list[int]], list[list[int]]]:
        """The token ids of the pairs at `indices` (n,): (source lists, target lists)."""
        out = []
        for side in SIDES:
            ids, bounds = self.ids[side], self.offsets[side]
            out.append([ids[a:b].tolist() for a, b in zip(bounds[indices].tolist(),
                                                          bounds[indices + 1].tolist(),
                                                          strict=True)])
        self.release()
        return out[0], out[1]

    def release(self) -> None:
        """Unmap the pages read so far from this process (MADV_DONTNEED); the arrays stay
        valid, and the next read maps the pages again from the page cache."""
        if hasattr(mmap, "MADV_DONTNEED"):  # Linux and the BSDs; elsewhere pages stay
            for m in self.maps:
                m.madvise(mmap.MADV_DONTNEED)


def built_from(src_tok: Tokenizer, tgt_tok: Tokenizer, inputs: list[dict],
               max_len: int) -> dict:
    """What a store's content depends on: compared whole, so any change rebuilds it.

    inputs: each training corpus's fingerprint (seq2seq.corpora.parallel.fingerprint);
    the files' modification times are left out, so a touched file is not re-encoded.
    """
    inputs = [{**fp, "files": [{k: v for k, v in f.items() if k != "mtime_ns"}
                               for f in fp["files"]]} for fp in inputs]
    tokenizers = {side: hashlib.sha256(tok.model_bytes).hexdigest()
                  for side, tok in zip(SIDES, (src_tok, tgt_tok), strict=True)}
    return json.loads(json.dumps({"format": FORMAT, "tokenizers": tokenizers,
                                  "inputs": inputs, "max_len": max_len}))  # as read back


def open_store(folder: Path, wanted: dict) -> tuple[TokenStore | None, str]:
    """The store in `folder` if it was built from exactly `wanted` and is whole, else
    (None, why it cannot be used)."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return None, "there is none yet"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        was = manifest["built_from"]
        files = _expected_sizes(manifest)
        if not isinstance(was, dict):
            raise TypeError(was)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None, "its manifest is unreadable"
    changed = _changes(was, wanted)
    if changed:
        return None, changed
    for name, size in files.items():
        have = (Path(folder) / name).stat().st_size if (Path(folder) / name).is_file() else -1
        if have != size:
            return None, f"{name} holds {max(have, 0)} bytes, not the {size} its manifest gives"
    return _mapped(Path(folder), manifest), "built from these inputs and tokenizers"


def _changes(was: dict, now: dict) -> str:
    """What differs between two built_from records, in words ('' when nothing)."""
    if was.get("format") != now["format"]:
        return f"its format {was.get('format')} is not this version's {now['format']}"
    if was.get("tokenizers") != now["tokenizers"]:
        return "the tokenizer changed"
    if was.get("max_len") != now["max_len"]:
        return f"data.max_len changed ({was.get('max_len')} -> {now['max_len']})"
    if was.get("inputs") != now["inputs"]:
        old = {f["path"]: f for fp in was.get("inputs", []) for f in fp.get("files", [])}
        moved = [f["path"] for fp in now["inputs"] for f in fp["files"] if old.get(f["path"]) != f]
        return (f"the training text {moved[0]} changed" if moved
                else "the training corpora changed")
    return ""


def _expected_sizes(manifest: dict) -> dict[str, int]:
    """Each array file's size in bytes, from the manifest."""
    n, sizes = manifest["pairs"], {}
    for side in SIDES:
        info = manifest["sides"][side]
        sizes[f"{side}.ids"] = info["tokens"] * np.dtype(info["ids_dtype"]).itemsize
        sizes[f"{side}.offsets"] = (n + 1) * 8
        sizes[f"{side}.lens"] = n * np.dtype(info["lens_dtype"]).itemsize
    return sizes


def _mapped(folder: Path, manifest: dict) -> TokenStore:
    n = manifest["pairs"]
    ids, offsets, lens, maps = {}, {}, {}, []
    for side in SIDES:
        info = manifest["sides"][side]
        ids[side] = _map(folder / f"{side}.ids", info["ids_dtype"], info["tokens"], maps)
        offsets[side] = _map(folder / f"{side}.offsets", "<i8", n + 1, maps)
        lens[side] = _map(folder / f"{side}.lens", info["lens_dtype"], n, maps)
    return TokenStore(folder, manifest, ids, offsets, lens, maps)


def _map(path: Path, dtype: str, count: int, maps: list[mmap.mmap]) -> np.ndarray:
    """A read-only memory map of `count` items, its mmap appended to `maps` (an empty file
    cannot be mapped: it gives an empty array)."""
    if count == 0:
        return np.zeros(0, dtype=dtype)
    with open(path, "rb") as f:  # the mapping outlives the file object
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    maps.append(m)
    return np.frombuffer(m, dtype=dtype, count=count)


# ---------------------------------------------------------------- building


@dataclass
class Counts:
    """What a build read, dropped (by reason) and kept."""

    read: int = 0
    empty: int = 0  # one side empty or whitespace only
    too_long: int = 0  # a side longer than data.max_len tokens
    tokens: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SIDES})

    @property
    def kept(self) -> int:
        return self.read - self.empty - self.too_long


def build_store(folder: Path, corpora: list[tuple[str, Pairs]], src_tok: Tokenizer,
                tgt_tok: Tokenizer, max_len: int, wanted: dict, log: Log, bar: bool = False,
                workers: int = 0, chunk: int = CHUNK) -> tuple[TokenStore, Counts]:
    """Encode every corpus's pairs into a store at `folder`, replacing an old one there.

    corpora: (name, pairs) in data.train's order; each pairs stream is read once, in
    chunks, so the text is never all in memory. workers: encoding processes (0 = one per
    CPU this process may use; 1 = none, in this process). bar: a tqdm bar on stderr, else
    a log line every LINE_EVERY pairs. Raises Seq2SeqError when no pair is left.
    """
    folder = Path(folder)
    _remove_leftovers(folder)
    start = time.perf_counter()
    dtypes = {"ids": _smallest(max(src_tok.vocab_size, tgt_tok.vocab_size) - 1),
              "lens": _smallest(max_len)}
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", suffix=".tmp", dir=folder.parent))
        os.chmod(tmp, os.stat(folder.parent).st_mode & 0o7777)  # the run dir's, not 0700
    except OSError as e:
        raise Seq2SeqError(f"cannot write the token store in {folder.parent}: "
                           f"{reason(e)}") from None
    try:
        writer = _Writer(tmp, dtypes)
        encoder = Encoder(src_tok.model_bytes, tgt_tok.model_bytes, max_len, dtypes["ids"])
        with _Progress(bar, log) as progress, Encoding(encoder, workers, chunk) as encode:
            ranges = []
            for name, pairs in corpora:
                begin = writer.counts.kept
                for part in encode(pairs):
                    writer.add(part)
                    progress.advance(part.read)
                ranges.append({"name": name, "start": begin, "end": writer.counts.kept})
        counts = writer.close()
        if counts.kept == 0:
            raise Seq2SeqError(
                f"no training pairs left: of {counts.read} read, {counts.empty} have an empty "
                f"side and {counts.too_long} are longer than data.max_len={max_len} tokens; "
                "raise data.max_len or check the training files")
        manifest = {"built_from": wanted, "pairs": counts.kept, "corpora": ranges,
                    "sides": {s: {"ids_dtype": dtypes["ids"], "lens_dtype": dtypes["lens"],
                                  "tokens": counts.tokens[s]} for s in SIDES},
                    "dropped": {"empty": counts.empty, "too_long": counts.too_long},
                    "read": counts.read, "seconds": round(time.perf_counter() - start, 3)}
        _write_manifest(tmp, manifest)
        _swap_in(tmp, folder)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Seq2SeqError(f"cannot write the token store {folder}: {reason(e)}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-built store is never left to be used
        raise
    return _mapped(folder, manifest), counts


def _smallest(largest: int) -> str:
    """The smallest unsigned little-endian dtype that holds 0..largest, e.g. '<u2'."""
    return np.dtype(np.min_scalar_type(max(largest, 0))).newbyteorder("<").str


def _write_manifest(tmp: Path, manifest: dict) -> None:
    with open(tmp / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _swap_in(tmp: Path, folder: Path) -> None:
    """Put the finished build at `folder`: the old store is renamed away first (a kill
    between the renames leaves no store, which the next run rebuilds), then deleted."""
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", suffix=".tmp",
                                    dir=folder.parent))
        os.replace(folder, old / folder.name)
    os.replace(tmp, folder)
    with contextlib.suppress(OSError):
        fd = os.open(folder.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the renames themselves survive a power cut
        finally:
            os.close(fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(folder: Path) -> None:
    """Delete the hidden folders of builds a kill interrupted (the run dir's lock makes
    this process the only writer)."""
    if not folder.parent.is_dir():
        return
    for p in folder.parent.glob(f".{folder.name}-*.tmp"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


class _Writer:
    """Appends encoded chunks to the array files of a store being built."""

    def __init__(self, folder: Path, dtypes: dict[str, str]):
        self.folder, self.dtypes, self.counts = folder, dtypes, Counts()
        self.files = {side: open(folder / f"{side}.ids", "wb") for side in SIDES}  # noqa: SIM115
        self.lens: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}

    def add(self, part: Encoded) -> None:
        for side in SIDES:
            part.ids[side].tofile(self.files[side])
            self.lens[side].append(part.lens[side].astype(self.dtypes["lens"]))
            self.counts.tokens[side] += int(part.ids[side].size)
        self.counts.read += part.read
        self.counts.empty += part.empty
        self.counts.too_long += part.too_long

    def close(self) -> Counts:
        """Write lengths and offsets, flush every file to disk; returns the counts."""
        for side in SIDES:
            lens = np.concatenate(self.lens[side]) if self.lens[side] else np.zeros(0, "<u1")
            self.lens[side] = []
            offsets = np.zeros(lens.size + 1, dtype="<i8")
            np.cumsum(lens, dtype=np.int64, out=offsets[1:])
            for name, array in ((f"{side}.lens", lens.astype(self.dtypes["lens"])),
                                (f"{side}.offsets", offsets)):
                with open(self.folder / name, "wb") as f:
                    array.tofile(f)
                    f.flush()
                    os.fsync(f.fileno())
            self.files[side].flush()
            os.fsync(self.files[side].fileno())
            self.files[side].close()
        return self.counts


class _Progress:
    """Pairs read so far: a tqdm bar on stderr, or a plain line every LINE_EVERY pairs."""

    def __init__(self, bar: bool, log: Log):
        self.log, self.read, self.start = log, 0, time.perf_counter()
        self.bar = tqdm(desc="prepare: encoding", unit=" pairs", unit_scale=True,
                        disable=not bar, file=sys.stderr, dynamic_ncols=True, leave=False)

    def advance(self, n: int) -> None:
        before, self.read = self.read, self.read + n
        self.bar.update(n)
        if self.bar.disable and before // LINE_EVERY != self.read // LINE_EVERY:
            rate = self.read / max(time.perf_counter() - self.start, 1e-9)
            self.log(f"prepare: encoded {self.read:,} pairs ({rate:,.0f} pairs/s)")

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


def summary(counts: Counts, folder: Path, seconds: float, built: bool) -> str:
    """The one line prepare ends with: read, dropped by reason, tokens, size on disk, time."""
    size = sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())
    how = f"built in {_duration(seconds)}" if built else f"reused, checked in {seconds:.1f}s"
    return (f"prepare: {counts.read:,} pairs read, {counts.kept:,} kept; dropped "
            f"{counts.empty:,} with an empty side and {counts.too_long:,} too long; tokens "
            f"{counts.tokens['src']:,} source, {counts.tokens['tgt']:,} target; store "
            f"{folder} {size / 2**20:,.1f} MiB on disk, {how}")


def counts_of(store: TokenStore) -> Counts:
    """The counts a store's manifest records."""
    m = store.manifest
    return Counts(read=m["read"], empty=m["dropped"]["empty"], too_long=m["dropped"]["too_long"],
                  tokens={side: m["sides"][side]["tokens"] for side in SIDES})


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
