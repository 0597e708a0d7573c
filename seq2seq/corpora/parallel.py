"""Parallel corpora as the config names them, read as a stream of (source, target) pairs.

data.train (one corpus or a list), data.dev and data.test each resolve to a CorpusSpec:
plain or gzip files ({prefix}.{src} / {prefix}.{tgt}, or src_file / tgt_file), a TSV
file, a Hugging Face dataset folder, or a Parquet / Arrow file. iter_pairs streams any of
them in file order with constant memory; bad input is one Seq2SeqError naming the file and
the 1-based line (or row). docs/data.md describes the formats.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import random
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from seq2seq.config import Config, CorpusConfig
from seq2seq.corpora import tables
from seq2seq.corpora.lines import count_lines, iter_lines
from seq2seq.errors import Seq2SeqError

KINDS = ("plain", "tsv", "datasets", "parquet", "arrow")  # CorpusSpec.kind


@dataclass(frozen=True)
class CorpusSpec:
    """One corpus named in the config, resolved to the files that exist."""

    name: str  # how messages and manifests name it: the prefix, or the file or folder
    kind: str  # one of KINDS
    files: tuple[Path, ...]  # the files read: (src, tgt) for plain; every file of a dataset
    weight: float = 1.0  # relative sampling weight among data.train's corpora
    key: str = "data.train"  # the config key that named it, e.g. data.train[1] or data.dev
    path: Path | None = None  # tsv / parquet / arrow file, or dataset folder
    split: str = ""  # datasets: the split of a DatasetDict
    src_column: str = ""  # tables: the source text column; "" = found by tables.columns
    tgt_column: str = ""  # tables: the target text column
    translation_column: str = ""  # tables: the column of {src: ..., tgt: ...} mappings
    src_lang: str = "src"  # data.src: the source key in a translation mapping
    tgt_lang: str = "tgt"  # data.tgt


# ---------------------------------------------------------------- the config, resolved


def training_corpora(config: Config) -> list[CorpusSpec]:
    """data.train's corpora, each resolved to files that exist and can be read.

    Raises Seq2SeqError naming the key (data.train or data.train[i]) and the paths tried.
    """
    train = config.data.train
    if isinstance(train, tuple):
        return [_resolve(config, entry, f"data.train[{i}]") for i, entry in enumerate(train)]
    return [_resolve(config, train, "data.train")]


def corpus_spec(config: Config, key: str) -> CorpusSpec:
    """The single corpus of a key ("data.dev" or "data.test"), resolved like data.train's."""
    section, _, name = key.partition(".")
    value = getattr(config.data, name, None) if section == "data" else None
    if value is None or isinstance(value, tuple):
        raise ValueError(f"{key} is not a single-corpus key")
    if value == "":
        raise Seq2SeqError(f"{key} is not set in the config; name a corpus there")
    return _resolve(config, value, key)


def corpus_name(entry: str | CorpusConfig) -> str:
    """How messages name a corpus key's value without reading the disk: the prefix or path."""
    if isinstance(entry, str):
        return entry
    if entry.src_file:
        return f"{entry.src_file} and {entry.tgt_file}"
    return next(getattr(entry, s) for s in ("prefix", "tsv", "dataset", "parquet", "arrow")
                if getattr(entry, s))


def check_corpora(config: Config, splits: Iterable[str]) -> None:
    """Resolve every corpus of `splits` ("train", "dev", "test"; an unset test is skipped),
    so a missing or unreadable input fails before any work."""
    for split in splits:
        if split == "train":
            training_corpora(config)
        elif getattr(config.data, split):
            corpus_spec(config, f"data.{split}")


def _resolve(config: Config, entry: str | CorpusConfig, key: str) -> CorpusSpec:
    data = config.data
    c = entry if isinstance(entry, CorpusConfig) else CorpusConfig(prefix=entry)
    common = {"weight": c.weight, "key": key, "src_lang": data.src, "tgt_lang": data.tgt}
    if c.prefix:
        src, tgt = (_existing(f"{c.prefix}.{side}", key) for side in (data.src, data.tgt))
        return CorpusSpec(c.prefix, "plain", (src, tgt), **common)
    if c.src_file:
        src = _existing(c.src_file, key + ".src_file")
        tgt = _existing(c.tgt_file, key + ".tgt_file")
        return CorpusSpec(f"{src} and {tgt}", "plain", (src, tgt), **common)
    if c.tsv:
        path = _existing(c.tsv, key + ".tsv")
        return CorpusSpec(str(path), "tsv", (path,), path=path, **common)
    kind, where = next((k, getattr(c, s)) for k, s in (("datasets", "dataset"),
                       ("parquet", "parquet"), ("arrow", "arrow")) if getattr(c, s))
    source = {"datasets": "dataset"}.get(kind, kind)
    tables.require_extra(kind, f"{key}.{source}")
    path = Path(where)
    if kind == "datasets":
        files = tables.dataset_files(path, f"{key}.{source}")
    else:
        files = (_existing(where, f"{key}.{source}", gz=False),)
    name = f"{path}:{c.split}" if c.split else str(path)
    return CorpusSpec(name, kind, files, path=path, split=c.split, src_column=c.src_column,
                      tgt_column=c.tgt_column, translation_column=c.translation_column,
                      **common)


def _existing(name: str, key: str, gz: bool = True) -> Path:
    """The file `name`, else (gz) `name`.gz: the first that exists, checked to be readable."""
    tried = [Path(name)] if name.endswith(".gz") or not gz else [Path(name), Path(name + ".gz")]
    for path in tried:
        if os.path.lexists(path):
            check_readable(path, key)
            return path
    named = f"named by {key}"
    if not tried[0].is_absolute():
        named += f", relative to the current directory {Path.cwd()}"
    hint = f"; check {key.split('[')[0]} in the config"
    if "multi30k" in name.lower():  # a recipe run before its data was fetched
        folder = tried[0].parent
        where = "" if folder == Path("data/multi30k") else f" --dir {folder}"
        hint = f"; `seq2seq download multi30k{where}` fetches it"
    paths = " or ".join(str(p) for p in tried)
    raise Seq2SeqError(f"file not found: {paths} ({named}){hint}")


def check_readable(path: Path, key: str) -> None:
    """Raise Seq2SeqError, naming `key`, unless `path` is a regular file this process reads."""
    named = f"named by {key}"
    if not path.is_absolute():
        named += f", relative to the current directory {Path.cwd()}"
    try:
        mode = os.stat(path).st_mode
    except OSError as e:  # a dangling link, a loop, a part of the path that is no folder
        raise Seq2SeqError(f"cannot read {path} ({named}): {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise Seq2SeqError(f"cannot read {path} ({named}): it is a folder, not a text file")
    if not stat.S_ISREG(mode):  # a pipe would be read once, and the text is read twice
        raise Seq2SeqError(f"cannot read {path} ({named}): not a regular file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise Seq2SeqError(f"cannot read {path} ({named}): {e.strerror}") from None


def plain_spec(src: Path, tgt: Path, key: str = "") -> CorpusSpec:
    """Two aligned files given directly (key "": not named by the config), as read_parallel."""
    src, tgt = Path(src), Path(tgt)
    return CorpusSpec(f"{src} and {tgt}", "plain", (src, tgt), key=key)


# ---------------------------------------------------------------- reading


def iter_pairs(spec: CorpusSpec) -> Iterator[tuple[str, str]]:
    """Every (source, target) pair of a corpus in file order, empty sides included.

    Streams with constant memory. Raises Seq2SeqError naming the file and the 1-based line
    (or row) for unequal line counts, a TSV line without exactly one tab, invalid UTF-8 or
    UTF-16 text, a corrupt gzip stream, or a missing column.
    """
    if spec.kind == "plain":
        return _plain_pairs(*spec.files)
    if spec.kind == "tsv":
        return _tsv_pairs(spec.files[0])
    if spec.kind in ("datasets", "parquet", "arrow"):
        return tables.iter_rows(spec)
    raise ValueError(f"unknown corpus kind {spec.kind!r}")


def _plain_pairs(src_path: Path, tgt_path: Path) -> Iterator[tuple[str, str]]:
    src, tgt = iter_lines(src_path), iter_lines(tgt_path)
    try:
        number = 0
        for s in src:  # not zip: it would swallow the source line read when tgt ends
            t = next(tgt, None)
            if t is None:
                rest = _rest(src)
                counts = None if rest is None else (number + 1 + rest, number)
                raise _uneven(tgt_path, src_path, number, s, (src_path, tgt_path), counts)
            number += 1
            yield s, t
        extra = next(tgt, None)
        if extra is not None:
            rest = _rest(tgt)
            counts = None if rest is None else (number, number + 1 + rest)
            raise _uneven(src_path, tgt_path, number, extra, (src_path, tgt_path), counts)
    finally:
        src.close()
        tgt.close()


def _rest(lines: Iterator[str]) -> int | None:
    """How many lines an iterator still holds; None when they cannot be read."""
    try:
        return sum(1 for _ in lines)
    except Seq2SeqError:
        return None


def _uneven(shorter: Path, longer: Path, ends: int, extra: str, paths: tuple[Path, Path],
            counts: tuple[int, int] | None) -> Seq2SeqError:
    """Where the shorter file ends, the next line of the longer, and (counts) both lengths."""
    ending = f"ends at line {ends}" if ends else "is empty"
    text = extra if len(extra) <= 40 else extra[:40] + "..."
    total = "" if counts is None else (f" ({paths[0]} has {counts[0]} lines but {paths[1]} "
                                       f"has {counts[1]})")
    return Seq2SeqError(
        f"{shorter} {ending} but {longer} goes on: line {ends + 1} is {text!r}{total}; "
        "parallel files need one sentence per line, line i of one translating line i of "
        "the other")


def _tsv_pairs(path: Path) -> Iterator[tuple[str, str]]:
    lines = iter_lines(path)
    try:
        for number, line in enumerate(lines, 1):
            src, tab, tgt = line.partition("\t")
            if not tab and not line:
                yield "", ""  # a blank line: an empty pair, dropped and counted by the caller
            elif not tab or "\t" in tgt:
                tabs = line.count("\t")
                fix = ("put a tab between the source and the target" if not tabs else
                       "remove or replace the tabs inside the text")
                raise Seq2SeqError(
                    f"{path}, line {number}: {tabs} tabs, but a TSV line is source<TAB>target "
                    f"with exactly one; {fix}")
            else:
                yield src, tgt
    finally:
        lines.close()


@dataclass(frozen=True)
class ParallelText:
    """Aligned sentence pairs: src[i] translates to tgt[i]."""

    src: list[str]
    tgt: list[str]
    dropped_empty: int  # pairs dropped because one side was empty or whitespace-only


def read_corpus(spec: CorpusSpec) -> ParallelText:
    """All pairs of one corpus with text on both sides, in memory (dev and test text)."""
    src, tgt, read = [], [], 0
    for s, t in iter_pairs(spec):
        read += 1
        if s.strip() and t.strip():
            src.append(s)
            tgt.append(t)
    if not src:
        raise empty_corpus_error(spec, read)
    return ParallelText(src=src, tgt=tgt, dropped_empty=read - len(src))


def empty_corpus_error(spec: CorpusSpec, read: int) -> Seq2SeqError:
    """The error for a corpus with no pair left after dropping empty-side pairs."""
    text = spec.kind in ("plain", "tsv")
    name = " and ".join(map(str, spec.files)) if text else spec.name
    key = f"{spec.key}: " if spec.key else ""
    return Seq2SeqError(
        f"no sentence pairs in {name} ({key}{read} {'pairs' if text else 'rows'}, none with "
        "text on both sides); check the files are not empty")


def read_training_text(config: Config) -> ParallelText:
    """Every training corpus, concatenated in data.train's order (weights not applied)."""
    texts = [read_corpus(spec) for spec in training_corpora(config)]
    if len(texts) == 1:
        return texts[0]
    return ParallelText(src=[line for text in texts for line in text.src],
                        tgt=[line for text in texts for line in text.tgt],
                        dropped_empty=sum(text.dropped_empty for text in texts))


def read_parallel(src_path: Path, tgt_path: Path) -> ParallelText:
    """Read two aligned files (plain or .gz, one sentence per line); drop empty-side pairs."""
    return read_corpus(plain_spec(src_path, tgt_path))


# ---------------------------------------------------------------- sampling, fingerprints


def sample_pairs(specs: Iterable[CorpusSpec], n: int, seed: int) -> tuple[list[str], list[str]]:
    """A seeded uniform sample of up to n pairs with text on both sides, over all corpora.

    One streaming pass (reservoir sampling, Li's algorithm L: few random draws); memory is
    the sample's. The pairs come back in corpus order; with n >= the number of pairs, every
    pair. The same corpora and seed give the same sample.
    """
    if n < 1:
        raise ValueError(f"sample size must be positive, got {n}")
    rng = random.Random(hashlib.sha256(f"sample_pairs:{seed}".encode()).digest())
    pairs = ((s, t) for spec in specs for s, t in iter_pairs(spec) if s.strip() and t.strip())
    # Parallel lists, not a list of tuples: strings are not tracked by the garbage collector,
    # so a large sample does not make every collection walk it.
    src, tgt = [], []
    for s, t in itertools.islice(pairs, n):
        src.append(s)
        tgt.append(t)
    order = list(range(len(src)))
    w = math.exp(math.log(1.0 - rng.random()) / n)
    upcoming = n + _skip(rng, w)
    for i, (s, t) in enumerate(pairs, n):
        if i == upcoming:
            j = rng.randrange(n)
            src[j], tgt[j], order[j] = s, t, i
            w *= math.exp(math.log(1.0 - rng.random()) / n)
            upcoming = i + 1 + _skip(rng, w)
    ranks = sorted(range(len(order)), key=order.__getitem__)
    return [src[r] for r in ranks], [tgt[r] for r in ranks]


def _skip(rng: random.Random, w: float) -> int:
    """How many items algorithm L passes over before the next replacement."""
    if w >= 1.0:  # a float-rounding edge: the next item replaces one
        return 0
    return int(math.log(1.0 - rng.random()) / math.log1p(-w))


def fingerprint(spec: CorpusSpec, content: bool = True) -> dict:
    """What a built artefact depends on: kind, settings and each file's size, mtime_ns and
    (content) sha256, so a changed input rebuilds it. Plain JSON data."""
    files = []
    for path in spec.files:
        try:
            info = os.stat(path)
        except OSError as e:
            raise Seq2SeqError(f"cannot read {path} ({spec.key}): {e.strerror}") from None
        entry = {"path": str(path), "size": info.st_size, "mtime_ns": info.st_mtime_ns}
        if content:
            entry["sha256"] = sha256_file(path, spec.key)
        files.append(entry)
    settings = {"split": spec.split, "src_column": spec.src_column,
                "tgt_column": spec.tgt_column, "translation_column": spec.translation_column,
                "src_lang": spec.src_lang, "tgt_lang": spec.tgt_lang}
    return {"name": spec.name, "kind": spec.kind, "settings": settings, "files": files}


def sha256_file(path: Path, key: str) -> str:
    """sha256 of a file's bytes, read in 1 MB blocks."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError as e:
        raise Seq2SeqError(f"cannot read {path} ({key}): {e.strerror}") from None
    return h.hexdigest()


def count_lines_hint(spec: CorpusSpec) -> int | None:
    """About how many pairs a corpus holds, cheaply, for progress bars; None if unknown
    (gzip would need decompressing)."""
    if spec.kind in ("plain", "tsv"):
        path = spec.files[0]
        with open(path, "rb") as f:
            if f.read(2) == b"\x1f\x8b":
                return None
        return count_lines(path)
    return tables.row_count(spec)
