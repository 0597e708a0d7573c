"""Parallel text in columns: a Hugging Face dataset folder, a Parquet file or an Arrow file.

The optional extra `datasets` (which brings pyarrow) is imported here only, lazily, and
only when such a corpus is named; its absence is one line saying how to install it.
Rows stream in record batches, so memory stays bounded by one batch.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seq2seq.errors import Seq2SeqError

if TYPE_CHECKING:
    from seq2seq.corpora.parallel import CorpusSpec

BATCH_ROWS = 4096  # rows per record batch read: bounded memory, little per-batch overhead
EXTRA = "pip install 'seq2seq[datasets]'"


def require_extra(kind: str, key: str) -> None:
    """Raise Seq2SeqError (naming key) when the packages a `kind` corpus needs are missing."""
    module = "datasets" if kind == "datasets" else "pyarrow"
    if importlib.util.find_spec(module) is None:
        raise Seq2SeqError(f"{key}: reading a {kind} corpus needs the {module} package, which "
                           f"is not installed; {EXTRA}")


def dataset_files(folder: Path, key: str) -> tuple[Path, ...]:
    """Every file of a dataset folder written by save_to_disk (for fingerprints)."""
    if not folder.exists():
        where = "" if folder.is_absolute() else f", relative to the current directory {Path.cwd()}"
        raise Seq2SeqError(f"folder not found: {folder} (named by {key}{where}); check {key}")
    if not folder.is_dir():
        raise Seq2SeqError(f"{folder} (named by {key}) is a file, not a dataset folder; name "
                           "a folder written by save_to_disk, or a Parquet or Arrow file with "
                           "parquet: or arrow:")
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any((folder / m).is_file() for m in markers):
        raise Seq2SeqError(f"{folder} (named by {key}) is not a dataset folder: it holds none "
                           f"of {', '.join(markers)} that save_to_disk writes")
    return tuple(sorted(p for p in folder.rglob("*") if p.is_file()))


def iter_rows(spec: CorpusSpec) -> Iterator[tuple[str, str]]:
    """Every (source, target) pair of a table corpus in row order; None reads as ""."""
    batches = {"datasets": _dataset_batches, "parquet": _parquet_batches,
               "arrow": _arrow_batches}[spec.kind](spec)
    first = next(batches, None)
    if first is None:
        return
    take = _columns(spec, first.schema.names)
    row = 0
    for batch in itertools.chain([first], batches):
        src, tgt = take(batch, row)
        for s, t in zip(src, tgt, strict=True):
            row += 1
            yield _text(s, spec, row, "source"), _text(t, spec, row, "target")


def _text(value: Any, spec: CorpusSpec, row: int, side: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Seq2SeqError(f"{spec.name}, row {row}: the {side} is {type(value).__name__} "
                           f"{value!r:.40}, not text; set {spec.key}.src_column and "
                           "tgt_column to text columns")
    return value


def _columns(spec: CorpusSpec, names: list[str]):
    """A function (batch, rows before it) -> (source values, target values)."""
    listed = ", ".join(names) or "none"
    if spec.src_column:
        for column in (spec.src_column, spec.tgt_column):
            if column not in names:
                raise Seq2SeqError(f"{spec.name} has no column {column!r} ({spec.key}); its "
                                   f"columns: {listed}")
        return lambda batch, row: (batch.column(spec.src_column).to_pylist(),
                                   batch.column(spec.tgt_column).to_pylist())
    translation = spec.translation_column or "translation"
    if translation in names:
        return lambda batch, row: _translations(spec, batch.column(translation).to_pylist(),
                                                translation, row)
    if spec.translation_column:
        raise Seq2SeqError(f"{spec.name} has no column {translation!r} ({spec.key}."
                           f"translation_column); its columns: {listed}")
    if spec.src_lang in names and spec.tgt_lang in names:
        return lambda batch, row: (batch.column(spec.src_lang).to_pylist(),
                                   batch.column(spec.tgt_lang).to_pylist())
    raise Seq2SeqError(f"{spec.name} ({spec.key}) has no translation column and no columns "
                       f"named {spec.src_lang} and {spec.tgt_lang} (data.src, data.tgt); its "
                       f"columns: {listed}; set {spec.key}.src_column and tgt_column")


def _translations(spec: CorpusSpec, values: list, column: str, row: int
                  ) -> tuple[list, list]:
    """Split {lang: text} mappings into the source and target values."""
    src, tgt = [], []
    for offset, value in enumerate(values, row + 1):
        if value is None:
            src.append(None)
            tgt.append(None)
            continue
        if not isinstance(value, dict):
            raise Seq2SeqError(f"{spec.name}, row {offset}: column {column!r} holds "
                               f"{type(value).__name__}, not a {{language: text}} mapping")
        for lang, side in ((spec.src_lang, src), (spec.tgt_lang, tgt)):
            if lang not in value:
                raise Seq2SeqError(
                    f"{spec.name}, row {offset}: the {column!r} mapping has no {lang!r} (it "
                    f"has {', '.join(map(str, value)) or 'nothing'}); set data.src and data.tgt "
                    "to its languages")
            side.append(value[lang])
    return src, tgt


def _dataset(spec: CorpusSpec):
    """The Dataset (one split of a DatasetDict) saved in spec.path."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(spec.path))
    except (FileNotFoundError, ValueError, OSError) as e:
        raise Seq2SeqError(f"cannot load the dataset {spec.path} ({spec.key}): "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if isinstance(loaded, datasets.Dataset):
        if spec.split:
            raise Seq2SeqError(f"{spec.path} ({spec.key}) holds one dataset, not splits; "
                               f"remove {spec.key}.split")
        return loaded
    splits = list(loaded)
    if spec.split:
        if spec.split not in loaded:
            raise Seq2SeqError(f"{spec.path} has no split {spec.split!r} ({spec.key}.split); "
                               f"its splits: {', '.join(splits)}")
        return loaded[spec.split]
    if len(splits) != 1:
        raise Seq2SeqError(f"{spec.path} holds the splits {', '.join(splits)}; choose one with "
                           f"{spec.key}.split")
    return loaded[splits[0]]


def _dataset_batches(spec: CorpusSpec) -> Iterator[Any]:
    # The arrow format reads the memory-mapped table without Python conversion per row.
    yield from _dataset(spec).with_format("arrow").iter(batch_size=BATCH_ROWS)


def _parquet_batches(spec: CorpusSpec) -> Iterator[Any]:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(spec.path)
    except (pyarrow.ArrowException, OSError) as e:
        raise Seq2SeqError(f"{spec.path} ({spec.key}) is not a readable Parquet file: "
                           f"{str(e).splitlines()[0]}") from None
    with source:
        yield from source.iter_batches(batch_size=BATCH_ROWS)


def _arrow_reader(spec: CorpusSpec):
    """An Arrow IPC reader: the file format, or the stream format datasets writes."""
    import pyarrow
    import pyarrow.ipc

    source = pyarrow.memory_map(str(spec.path))
    for opener in (pyarrow.ipc.open_file, pyarrow.ipc.open_stream):
        try:
            return opener(source)
        except pyarrow.ArrowInvalid:
            source.seek(0)
    raise Seq2SeqError(f"{spec.path} ({spec.key}) is not an Arrow IPC file or stream; give "
                       "a Parquet file with parquet:, or a dataset folder with dataset:")


def _arrow_batches(spec: CorpusSpec) -> Iterator[Any]:
    reader = _arrow_reader(spec)
    if hasattr(reader, "num_record_batches"):  # the file format
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
    else:
        yield from reader


def row_count(spec: CorpusSpec) -> int | None:
    """Rows in a table corpus, from its metadata; None where only a full read would tell."""
    if spec.kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(spec.path).metadata.num_rows
    if spec.kind == "datasets":
        return _dataset(spec).num_rows
    reader = _arrow_reader(spec)
    if hasattr(reader, "num_record_batches"):
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    return None
