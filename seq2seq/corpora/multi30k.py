"""Multi30k Task 1: fetch the gzipped raw files, check their SHA-256, unpack them, and
build the release's tokenized files for scoring.

Files come from the public Multi30k repository on GitHub or from a local mirror
folder holding the same twelve ``{split}.{lang}.gz`` files. Every file is written
under a temporary name next to its target and moved into place only once its
checksum matches, so an interrupted or failed run never leaves a half-written or
unverified file behind. A rerun checks each unpacked text against its archive and
unpacks it again if it differs (a truncated or edited file is not trusted).

`build_tokenized` then writes ``tok/{split}.lc.norm.tok.{lang}`` for the evaluation splits,
made from the raw files the way the release made its data/task1/tok (seq2seq/moses.py); a
rerun makes them again in memory and rewrites only a file that differs.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from seq2seq.errors import Seq2SeqError
from seq2seq.files import reason, same_file
from seq2seq.moses import TOK_DIR, language_of, moses_pipeline, tok_name

BASE_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
SPLITS = ("train", "val", "test_2016_flickr")
LANGS = ("de", "en", "fr", "cs")
# Tokenized only where a score is computed: train is read raw (SentencePiece), and its
# four tokenized copies would cost a minute of every download.
TOK_SPLITS = ("val", "test_2016_flickr")
TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 16

# SHA-256 of the published .gz files (github.com/multi30k/dataset, data/task1/raw/).
SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "train.cs.gz": "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "val.cs.gz": "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "test_2016_flickr.cs.gz": "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1",
}

# What urlopen and response.read raise when the network lets us down
# (URLError, HTTPError, timeouts and resets are all OSError subclasses).
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


def multi30k_paths(dest: Path, split: str, lang: str) -> Path:
    """Return the plain-text path of one Multi30k file, e.g. ``dest/train.de``.

    Args:
        dest: the folder given to `download_multi30k`.
        split: one of ``SPLITS``.
        lang: one of ``LANGS``.
    """
    if split not in SPLITS:
        raise Seq2SeqError(f"unknown Multi30k split {split!r}; use one of {', '.join(SPLITS)}")
    if lang not in LANGS:
        raise Seq2SeqError(f"unknown Multi30k language {lang!r}; use one of {', '.join(LANGS)}")
    return Path(dest) / f"{split}.{lang}"


def download_multi30k(
    dest: Path, mirror: Path | None = None, progress: bool = True, base_url: str = BASE_URL,
    checksums: dict[str, str] | None = None,
) -> list[Path]:
    """Fetch, verify and unpack the 12 Multi30k Task 1 files into `dest`.

    Files already in `dest` with a matching checksum and their text file are left untouched.

    Args:
        dest: folder to write ``{split}.{lang}.gz`` and ``{split}.{lang}`` into (created).
        mirror: a local folder holding the ``.gz`` files to copy instead of downloading.
        progress: show a tqdm bar (one step per file) on stderr; False prints nothing.
        base_url: where to download from when there is no mirror.
        checksums: SHA-256 per ``.gz`` name; default the published ones (`SHA256`).
    Returns:
        the 12 plain-text paths, split-major (train.de, train.en, ..., test_2016_flickr.cs).
    """
    dest = Path(dest)
    if mirror is not None and not Path(mirror).is_dir():
        raise Seq2SeqError(
            f"mirror folder {mirror} does not exist or is not a folder; "
            f"pass a folder holding the Multi30k .gz files"
        )
    if mirror is not None and same_file(dest, Path(mirror)):
        raise Seq2SeqError(f"--dir {dest} is the --mirror folder; unpacking there would "
                           "overwrite the mirror's files, so give another --dir")
    _make_folder(dest)
    texts = [multi30k_paths(dest, split, lang) for split in SPLITS for lang in LANGS]
    with tqdm(total=len(texts), desc="multi30k", unit="file", disable=not progress) as bar:
        for text in texts:
            bar.set_postfix_str(text.name)
            _install(text, mirror, base_url, checksums or SHA256)
            bar.update(1)
    return texts


def tokenized_path(dest: Path, split: str, lang: str) -> Path:
    """The tokenized file `build_tokenized` writes, e.g. ``dest/tok/val.lc.norm.tok.de``."""
    multi30k_paths(dest, split, lang)  # checks split and lang
    return Path(dest) / TOK_DIR / tok_name(split, lang)


def build_tokenized(dest: Path, splits: tuple[str, ...] = TOK_SPLITS, progress: bool = True
                    ) -> list[Path]:
    """Make the release's lowercased, normalised, tokenized files from the unpacked raw ones.

    A file already holding exactly what the pipeline gives is left untouched; any other is
    written again, atomically. Seq2SeqError without sacremoses, or for a missing raw file.

    Args:
        dest: the folder `download_multi30k` unpacked into; the files go to ``dest/tok/``.
        splits: some of ``SPLITS``.
        progress: a tqdm bar (one step per file) on stderr.
    Returns:
        the tokenized paths, split-major like `download_multi30k`'s.
    """
    pipelines = {lang: moses_pipeline(lang) for lang in LANGS}  # before any work
    pairs = [(multi30k_paths(dest, split, lang), tokenized_path(dest, split, lang))
             for split in splits for lang in LANGS]
    for raw, _ in pairs:
        if not raw.is_file():
            raise Seq2SeqError(f"{raw} is missing; run `seq2seq download multi30k --dir "
                               f"{dest}` to unpack it first")
    _make_folder(Path(dest) / TOK_DIR)
    with tqdm(total=len(pairs), desc="multi30k tok", unit="file", disable=not progress) as bar:
        for raw, tok in pairs:
            bar.set_postfix_str(tok.name)
            line = pipelines[language_of(raw)]
            lines = raw.read_bytes().decode("utf-8").split("\n")
            if lines[-1] == "":
                lines.pop()  # the final newline ends the last line; it does not start one
            data = "".join(line(text) + "\n" for text in lines).encode("utf-8")
            if not (tok.is_file() and tok.read_bytes() == data):
                with _atomic_writer(tok) as out:
                    out.write(data)
            bar.update(1)
    return [tok for _, tok in pairs]


def _install(text: Path, mirror: Path | None, base_url: str, checksums: dict[str, str]
             ) -> None:
    """Make sure ``text.gz`` is verified and ``text`` is unpacked from it, fetching if needed."""
    gz = text.with_name(text.name + ".gz")
    if gz.is_file() and _sha256_of(gz) == checksums[gz.name]:
        if not _unpacked_matches(gz, text):
            _unpack(gz, text)
        return
    if mirror is None:
        source = base_url.rstrip("/") + "/" + gz.name
        chunks = _url_chunks(source)
    else:
        source = str(Path(mirror) / gz.name)
        chunks = _file_chunks(Path(source))
    _fetch(chunks, gz, source, checksums[gz.name])
    _unpack(gz, text)


def _fetch(chunks: Iterator[bytes], gz: Path, source: str, expected: str) -> None:
    """Write `chunks` to `gz` through a temporary file, kept only if its SHA-256 is `expected`."""
    digest = hashlib.sha256()
    with _atomic_writer(gz) as out:
        for chunk in chunks:
            digest.update(chunk)
            out.write(chunk)
        actual = digest.hexdigest()
        if actual != expected:
            raise Seq2SeqError(
                f"checksum mismatch for {gz.name} from {source}: expected sha256 {expected}, "
                f"got {actual}; the copy is corrupt, rerun the command or replace the file"
            )


def _unpack(gz: Path, text: Path) -> None:
    """Decompress verified `gz` into `text` (plain UTF-8, one sentence per line), atomically."""
    with gzip.open(gz, "rb") as source, _atomic_writer(text) as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)


def _unpacked_matches(gz: Path, text: Path) -> bool:
    """Whether `text` holds exactly what verified `gz` unpacks to (read side by side)."""
    if not text.is_file():
        return False
    with gzip.open(gz, "rb") as packed, text.open("rb") as unpacked:
        while True:
            chunk = packed.read(CHUNK_BYTES)
            if unpacked.read(len(chunk) or 1) != chunk:
                return False
            if not chunk:
                return True


def _url_chunks(url: str) -> Iterator[bytes]:
    """Yield the body of `url` in chunks; a network failure becomes a Seq2SeqError naming it."""
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except _NETWORK_ERRORS as exc:
        raise _network_error(url, exc) from exc
    with response:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except _NETWORK_ERRORS as exc:
                raise _network_error(url, exc) from exc
            if not chunk:
                return
            yield chunk


def _network_error(url: str, exc: BaseException) -> Seq2SeqError:
    """Build the one-line message for a failed download of `url`."""
    if isinstance(exc, urllib.error.HTTPError):
        detail = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        detail = str(exc.reason)
    else:
        detail = str(exc) or type(exc).__name__
    return Seq2SeqError(
        f"could not download {url} ({' '.join(detail.split())}); rerun the command to retry, "
        f"or use --mirror DIR with a folder holding the Multi30k .gz files"
    )


def _file_chunks(path: Path) -> Iterator[bytes]:
    """Yield the bytes of mirror file `path` in chunks; a missing file becomes a Seq2SeqError."""
    try:
        source = path.open("rb")
    except OSError as exc:
        raise Seq2SeqError(
            f"cannot read mirror file {path} ({exc.strerror or exc}); put the Multi30k "
            f"{path.name} there or drop --mirror to download it"
        ) from exc
    with source:
        while chunk := source.read(CHUNK_BYTES):
            yield chunk


@contextlib.contextmanager
def _atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Yield a temporary file next to `path`; move it onto `path` on success, delete it on error."""
    # The pid keeps two concurrent runs apart; the leading dot hides the file from globs.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with tmp.open("wb") as out:
            yield out
        os.replace(tmp, path)
    except OSError as exc:
        # Fetch and unpack errors arrive here as Seq2SeqError; an OSError is a local write problem.
        tmp.unlink(missing_ok=True)
        raise Seq2SeqError(f"cannot write {path}: {reason(exc)}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _make_folder(dest: Path) -> None:
    """Create `dest` (and parents), turning an OS refusal into a Seq2SeqError."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Seq2SeqError(
            f"cannot create download folder {dest}: {reason(exc)}; pick another --dir"
        ) from exc
