"""Text files line by line, streaming: plain or gzip-compressed, UTF-8 checked on every line.

Only "\\n" ends a line (a trailing "\\r" is dropped with it); other Unicode line separators
stay inside the line, so two parallel files never drift out of alignment because of them.
A leading byte-order mark is dropped. Every error names the file and the 1-based line.
"""

from __future__ import annotations

import gzip
import io
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from seq2seq.errors import Seq2SeqError

STDIN = Path("-")  # the file name that means standard input
GZIP_MAGIC = b"\x1f\x8b"  # how a gzip stream starts; invalid as the start of UTF-8 text
BUFFER = 1 << 20  # read-ahead in bytes: fewer system calls and gzip decompressions per line
UTF16_HELP = ("the text is UTF-16, not UTF-8; convert it with "
              "`iconv -f UTF-16 -t UTF-8 FILE > FILE.utf8`")


def looks_like_utf16(data: bytes, first: bool) -> bool:
    """Whether bytes are UTF-16: a byte-order mark at the start (`first`), or NUL bytes in
    most even or most odd positions and hardly any of the others (ASCII text in UTF-16);
    one NUL in a short UTF-8 line ("a\\0b") is not enough."""
    if first and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    head = data[:4096]
    half = len(head) // 2
    zeros = sorted((head[0::2].count(0), head[1::2].count(0)))
    return zeros[1] >= max(2, 0.4 * half) and zeros[0] <= 0.05 * half


def display_name(path: Path) -> str:
    """How messages name a file: `stdin` for `-`, else the path as given."""
    return "stdin" if Path(path) == STDIN else str(path)


def open_text_bytes(path: Path) -> BinaryIO:
    """A buffered binary stream of a file's text, gunzipped when it starts like gzip.

    `-` is standard input (never gunzipped). Raises Seq2SeqError for a missing or
    unreadable file, saying where a relative path was looked for.
    """
    path = Path(path)
    if path == STDIN:
        return _stdin()
    try:
        f = open(path, "rb", buffering=BUFFER)  # the caller closes it
    except FileNotFoundError:
        where = "" if path.is_absolute() else f" (relative to the current directory {Path.cwd()})"
        raise Seq2SeqError(f"file not found: {path}{where}; check the path") from None
    except OSError as e:
        raise Seq2SeqError(f"cannot read {path}: {e.strerror}; check the path") from None
    try:
        magic = f.peek(2)[:2]
    except OSError as e:  # a folder opens on Linux but cannot be read
        f.close()
        raise Seq2SeqError(f"cannot read {path}: {e.strerror}; check the path") from None
    if magic != GZIP_MAGIC:
        return f
    f.close()
    # BufferedReader over GzipFile iterates lines in C, several times faster than GzipFile's.
    return io.BufferedReader(gzip.GzipFile(path, "rb"), buffer_size=BUFFER)


def _stdin() -> BinaryIO:
    """Standard input as a stream that can peek (a test harness may give one that cannot)."""
    stream = sys.stdin.buffer
    return stream if hasattr(stream, "peek") else io.BufferedReader(io.BytesIO(stream.read()))


def _head(stream: BinaryIO) -> bytes:
    """Up to the first 4 KB of a stream without consuming them."""
    try:
        return stream.peek(4096)[:4096]
    except (OSError, EOFError, zlib.error):
        return b""  # a broken gzip stream is reported by the line loop, with its line


def iter_lines(path: Path) -> Iterator[str]:
    """Yield a UTF-8 file's lines (plain or .gz, `-` = stdin), terminators removed.

    Constant memory. Raises Seq2SeqError naming the file (and line) for a missing file,
    UTF-16 text, invalid UTF-8 or a truncated or corrupt gzip stream.
    """
    name = display_name(path)
    stream = open_text_bytes(path)
    number = 0
    try:
        if looks_like_utf16(_head(stream), first=True):
            raise Seq2SeqError(f"{name}: {UTF16_HELP}")
        for number, raw in enumerate(stream, 1):
            if raw[-1:] == b"\n":
                raw = raw[:-1]
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _invalid_utf8(name, number, raw[e.start]) from None
            yield line.removeprefix("\ufeff") if number == 1 else line
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise Seq2SeqError(f"{name}, after line {number}: the gzip data is truncated or "
                           f"corrupt ({e}); decompress it by hand to check, or fetch it "
                           "again") from None
    except OSError as e:
        raise Seq2SeqError(f"cannot read {name} after line {number}: {e.strerror or e}") from None
    finally:
        if Path(path) != STDIN:
            stream.close()


def _invalid_utf8(name: str, number: int, byte: int) -> Seq2SeqError:
    return Seq2SeqError(
        f"{name}, line {number}: invalid UTF-8 (byte 0x{byte:02x}); re-encode the "
        "file as UTF-8 from its encoding, e.g. `iconv -f latin1 -t UTF-8` for Latin-1")


def read_lines(path: Path) -> list[str]:
    """Read a UTF-8 text file (plain or .gz; `-` is stdin) as a list of lines.

    Line terminators (LF or CRLF) are removed; inner and trailing whitespace is kept; a
    leading byte-order mark is dropped. See iter_lines for the errors.
    """
    return list(iter_lines(path))


def count_lines(path: Path) -> int:
    """Lines in an uncompressed file, counted in 1 MB blocks (for progress bars)."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(BUFFER):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")
