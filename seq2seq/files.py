"""Files a command writes: checked before work starts, written whole or not at all.

Outputs go to a temporary name beside their target and are renamed over it only when
complete, so a crash at any instant leaves the old file or the new one, never half.
An output that is also one of the command's inputs is refused before anything is read.
"""

import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, BinaryIO

from seq2seq.errors import Seq2SeqError

# OSErrors that a user causes and can fix (a path, a permission, a full disk), by errno.
_REASONS = {
    errno.ENOSPC: "the disk is full (no space left on device); free some space or write "
                  "elsewhere",
    errno.EDQUOT: "the disk quota is full; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ELOOP: "a symbolic link loop (a link that points back to itself)",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EEXIST: "something else already exists there",
}
USER_ERRNOS = frozenset(_REASONS)


def reason(error: OSError) -> str:
    """Say in words what went wrong, e.g. 'the disk is full (...)' for ENOSPC."""
    name = error.filename
    if error.errno == errno.EEXIST and name and not os.path.isdir(name):  # mkdir's view
        if os.path.islink(name) and not os.path.exists(name):
            return "a symbolic link that loops or leads nowhere"
        return f"{name} is a file, not a folder"
    return _REASONS.get(error.errno, error.strerror or str(error))


def user_os_error(error: BaseException) -> OSError | None:
    """The OSError a user caused behind `error` (itself, or what it was raised from), or None.

    torch.save, for one, turns a full disk into a RuntimeError raised while handling it.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in USER_ERRNOS:
            return error
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return None


class WriteError(Seq2SeqError, OSError):
    """A write a user can fix failed: a Seq2SeqError with one line for the CLI, and still
    an OSError (errno, strerror in words, filename) for callers that add their context."""

    def __init__(self, path: Path, error: OSError):
        OSError.__init__(self, error.errno, reason(error), str(path))
        self.message = f"cannot write {path}: {reason(error)}"

    def __str__(self) -> str:
        return self.message


def write_error(path: Path, error: BaseException | None, tmp: Path | str | None = None
                ) -> WriteError | None:
    """A one-line WriteError if `error` is a failed write of `path` (or its temporary file
    `tmp`) that a user caused, else None: an OSError that names another file came from
    reading an input, and is left to say so itself."""
    found = None if isinstance(error, Seq2SeqError) else user_os_error(error)
    if found is None:
        return None
    if found.filename is not None:
        named = Path(os.path.abspath(found.filename))
        ours = [Path(os.path.abspath(p)) for p in (path, tmp) if p is not None]
        if named not in ours and named not in Path(os.path.abspath(path)).parents:
            return None
    return WriteError(path, found)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Yield a temporary file beside `path`; fsync it and rename it over `path` on success.

    The folder is created if needed; the temporary file is removed if anything fails, and
    a full disk, a read-only folder or a bad path becomes one Seq2SeqError naming `path`.
    The new file gets the old file's mode, or the usual one (0o666 less the umask).
    """
    path = Path(path)
    if is_special(path):  # a device or a pipe (/dev/stdout, /dev/null): nothing to rename over
        with open(path, "wb") as f:
            yield f
        return
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        failure = write_error(path, error, tmp) if isinstance(error, Exception) else None
        if failure is not None:
            raise failure from None
        raise
    _fsync_dir(path.parent)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call write(f) on a temporary file beside `path`, fsync it, rename it over `path`."""
    with atomic_file(path) as f:
        write(f)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` with its suffix, for writers that take a path
    (matplotlib picks the format from the suffix); it is renamed over `path` on success."""
    path = Path(path)
    if is_special(path):
        yield path
        return
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        # Writers that wrap their OSError in a Seq2SeqError would name the temporary file.
        inner = error.__context__ if isinstance(error, Seq2SeqError) else error
        failure = write_error(path, inner, tmp) if isinstance(error, Exception) else None
        if failure is not None:
            raise failure from None
        if isinstance(error, Seq2SeqError):
            raise Seq2SeqError(str(error).replace(str(tmp), str(path))) from None
        raise


def is_special(path: Path) -> bool:
    """Whether `path` exists and is neither a regular file nor a folder (a device, a pipe)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _mode_for(path: Path) -> int:
    """The permission bits a plain open(path, 'w') would leave on the file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------- checks before work starts


def check_output(output: Path, inputs: Iterable[Path | None], option: str,
                 stdin: IO | None = None) -> Path:
    """Refuse an output that is one of the inputs, a folder, or not writable; else return
    the file to write (a symbolic link is followed, so the link itself stays).

    Args:
        output: the path given to `option` (e.g. "-o").
        inputs: files the command reads (None entries are skipped).
        option: the option's name, for the message.
        stdin: the stream read as input, when it is; refused if it is the output's file.
    """
    if is_special(Path(output)):  # /dev/stdout and friends are written as they are
        return Path(output)
    target = _follow(Path(output), option)
    for source in inputs:
        if source is not None and same_file(target, Path(source)):
            raise Seq2SeqError(f"{option} {output} is also the input {source}; writing it "
                               "would destroy the input, so write the output elsewhere")
    if stdin is not None and _is_stdin_file(target, stdin):
        raise Seq2SeqError(f"{option} {output} is the file read on stdin; writing it would "
                           "destroy the input, so write the output elsewhere")
    if target.is_dir():
        raise Seq2SeqError(f"{option} {output} is a folder; give a file name")
    check_writable_folder(target.parent, f"{option} {output}")
    return target


def check_writable_folder(folder: Path, what: str) -> None:
    """Refuse `folder` (existing or to be created) if nothing can be written there.

    Looping links, a file in the way, a read-only or full file system and missing
    permissions are each one Seq2SeqError naming `what`.
    """
    folder = Path(folder)
    existing = folder
    while True:
        try:
            info = os.stat(existing)
            break
        except FileNotFoundError:
            if existing.parent == existing:
                raise Seq2SeqError(f"cannot write {what}: {existing} does not exist") from None
            existing = existing.parent
        except OSError as error:
            raise Seq2SeqError(f"cannot write {what}: {existing}: {reason(error)}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise Seq2SeqError(f"cannot write {what}: {existing} is not a folder")
    fs = os.statvfs(existing)
    if fs.f_flag & os.ST_RDONLY:
        raise Seq2SeqError(f"cannot write {what}: {existing} is on a read-only file system; "
                           "write elsewhere")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise Seq2SeqError(f"cannot write {what}: permission denied in {existing}")
    if (fs.f_bfree if os.geteuid() == 0 else fs.f_bavail) == 0:  # root may use reserved blocks
        raise Seq2SeqError(f"cannot write {what}: the disk holding {existing} is full; free "
                           "some space or write elsewhere")


def check_run_dir(path: Path, what: str) -> None:
    """Refuse a run directory that is a file, a looping link, or not writable."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise Seq2SeqError(f"{what} {path} is a symbolic link to nothing") from None
        check_writable_folder(path, f"{what} {path}")
        return
    except OSError as error:
        raise Seq2SeqError(f"{what} {path}: {reason(error)}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise Seq2SeqError(f"{what} {path} is a file, not a folder; set another {what}")
    check_writable_folder(path, f"{what} {path}")


def check_regular_file(path: Path, what: str) -> Path:
    """Refuse a path that is not a readable regular file (a folder, a FIFO, a device, a
    looping link), which would hang or read as empty."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise Seq2SeqError(f"{what} not found: {path}") from None
    except OSError as error:
        raise Seq2SeqError(f"cannot read {what} {path}: {reason(error)}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else (
            "a FIFO" if stat.S_ISFIFO(info.st_mode) else "not a regular file")
        raise Seq2SeqError(f"{what} {path} is {kind}; give a regular file")
    return Path(path)


def _follow(path: Path, option: str) -> Path:
    """`path` with symbolic links resolved; a looping link is an error."""
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise Seq2SeqError(f"{option} {path}: {reason(error)}") from None
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through links, hard links and relative paths)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare where they would be
        return os.path.abspath(os.path.realpath(a)) == os.path.abspath(os.path.realpath(b))


def _is_stdin_file(target: Path, stdin: IO) -> bool:
    """Whether the stream is reading the very file `target` names."""
    try:
        ours = os.fstat(stdin.fileno())
        theirs = os.stat(target)
    except (OSError, ValueError, AttributeError):  # not a real file, or no output yet
        return False
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


def file_kind(path: Path, head: bytes) -> str | None:
    """What a file that is not a torch zip archive is, from its name and first bytes."""
    if not head:
        return "an empty file"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "a Python pickle (left unread: a pickle can run code)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file"
    if head.startswith(b"\n") and (b"<unk>" in head or path.suffix == ".model"):
        return "a SentencePiece model"
    text = _as_text(head)
    if text is None:
        return None
    suffix, start = path.suffix.lower(), text.lstrip()[:1]
    if suffix == ".json" or (start and start in "{["):
        return "a JSON file"
    if suffix in (".yaml", ".yml") or re.search(r"(?m)^[\w.-]+:(\s|$)", text):
        return "a YAML file"
    return "a text file"


def _as_text(head: bytes) -> str | None:
    """The bytes as UTF-8 text (a character cut at the end is allowed), or None."""
    if b"\0" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:
            return None
        return head[: error.start].decode("utf-8")
