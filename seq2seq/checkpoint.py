"""Checkpoints: the layout, atomic save, verified safe load, averaging, rebuilding a model.

A checkpoint is a dict of plain data (tensors, numbers, strings, bytes) that rebuilds
its own model and tokenizers, so `translate` and `evaluate` need nothing else:

    format_version  int (2; format 1 had no checksum and is still read, with a warning)
    config          the fully resolved config, as nested dicts
    model           the model's state_dict
    tokenizers      {"src": bytes, "tgt": bytes} SentencePiece models (same bytes when joint)
    step, epoch     where training was
    metrics         validation scores at this step, e.g. {"bleu": 91.2}
    train_state     optional: optimizer, scheduler, data position, RNG states (for --resume)
    checksum        "sha256+crc32:..." over everything above: damage is caught on load

It is loaded with torch.load(weights_only=True): a file that carries pickled code is
refused before any of it runs, and a file that is not a torch zip archive is never unpickled.
"""

import functools
import hashlib
import os
import pickle
import sys
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from seq2seq.config import Config, from_dict
from seq2seq.errors import Seq2SeqError
from seq2seq.fast import accelerate
from seq2seq.files import atomic_write, file_kind
from seq2seq.model.build import build_model
from seq2seq.tokenizer import Tokenizer

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # format 1: written before checksums
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically (temporary file, fsync, rename) with a checksum of the contents.

    A process killed at any instant leaves either the old file or the new one; weights that
    are NaN or infinite are refused, so a diverged run never overwrites a good checkpoint.
    """
    path = Path(path)
    body = {k: v for k, v in state.items() if k not in ("format_version", "checksum")}
    bad = non_finite_weight(body.get("model", {}))
    if bad is not None:
        raise Seq2SeqError(f"refusing to write {path}: the weight {bad} is NaN or infinite "
                           "(a diverged run?); nothing was written")
    full = {"format_version": FORMAT_VERSION, **body}
    full["checksum"] = content_checksum(full)
    atomic_write(path, lambda f: torch.save(full, f))


def content_checksum(state: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint dict but its "checksum", each tensor's CRC-32 in its bytes' place.

    CRC-32 catches damage on disk as surely as SHA-256 and is several times faster; each
    distinct tensor is checked once, on a thread pool (zlib releases the GIL).
    """
    parts: list[bytes | torch.Tensor] = []
    _flatten({k: v for k, v in state.items() if k != "checksum"}, parts)
    tensors = {_view_key(t): t for t in parts if isinstance(t, torch.Tensor)}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        digests = dict(zip(tensors, pool.map(_tensor_digest, tensors.values()), strict=True))
    total = hashlib.sha256()
    for part in parts:
        total.update(digests[_view_key(part)] if isinstance(part, torch.Tensor) else part)
    return "sha256+crc32:" + total.hexdigest()


def _flatten(value: Any, parts: list[bytes | torch.Tensor]) -> None:
    """Append bytes and tensors that spell `value`, tagged so no two values spell the same."""
    if isinstance(value, torch.Tensor):
        parts += [f"T{value.dtype}{tuple(value.shape)};".encode(), value]
    elif isinstance(value, dict):
        parts.append(f"D{len(value)};".encode())
        for key, item in value.items():
            _flatten(key, parts)
            _flatten(item, parts)
    elif isinstance(value, (list, tuple)):
        parts.append(f"{type(value).__name__}{len(value)};".encode())
        for item in value:
            _flatten(item, parts)
    elif isinstance(value, (bytes, bytearray)):
        parts += [f"B{len(value)};".encode(), bytes(value)]
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        parts += [f"S{len(data)};".encode(), data]
    else:  # numbers, None, torch.dtype ...: repr round-trips them exactly
        parts.append(f"{type(value).__name__}:{value!r};".encode())


def _view_key(tensor: torch.Tensor) -> tuple:
    """Equal for two views of the same memory (tied weights appear under several names)."""
    return (tensor.untyped_storage().data_ptr(), tensor.device, tensor.dtype,
            tensor.storage_offset(), tuple(tensor.shape), tensor.stride())


def _tensor_digest(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return zlib.crc32(flat.view(torch.uint8).numpy()).to_bytes(4, "big")


def non_finite_weight(weights: dict[str, Any]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, or None."""
    for name, tensor in weights.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            wide = torch.float64 if tensor.dtype == torch.float64 else torch.float32
            # a sum is far cheaper than isfinite() and keeps any NaN or inf; overflow rechecks
            if not torch.isfinite(tensor.sum(dtype=wide)) and not torch.isfinite(tensor).all():
                return name
    return None


def resolve_checkpoint(path: str | Path, pick: bool = True) -> Path:
    """The file a checkpoint path names: a folder (a run directory) means its best.pt, else
    its only *.pt, said on stderr ("using RUN/best.pt"); any other folder is a Seq2SeqError
    naming the checkpoints in it. pick=False refuses every folder (`average`); a path that
    is not a folder is returned as it is, for load_checkpoint to judge."""
    path = Path(path)
    if not path.is_dir():
        return path
    try:
        found = sorted(p for p in path.iterdir() if p.suffix == ".pt" and p.is_file())
    except OSError as error:
        raise Seq2SeqError(f"cannot list the folder {path}: {error.strerror}") from None
    if not found:
        from seq2seq.engines import is_export_dir, read_manifest  # a light module, no torch

        if is_export_dir(path):
            source = read_manifest(path).get("source_checkpoint")
            raise Seq2SeqError(f"{path} is a CTranslate2 export, which `translate` and "
                               "`evaluate` run; this needs a checkpoint, e.g. the one it came "
                               f"from ({source})")
        raise Seq2SeqError(f"{path} is a folder with no checkpoints (*.pt) in it; give a "
                           "checkpoint file, e.g. RUN_DIR/best.pt written by `seq2seq train`")
    best = path / "best.pt"
    chosen = best if best in found else found[0] if len(found) == 1 else None
    if pick and chosen is not None:
        print(f"using {chosen}", file=sys.stderr)
        return chosen
    names = ", ".join(str(p) for p in found[:6]) + (", ..." if len(found) > 6 else "")
    if pick:
        raise Seq2SeqError(f"{path} is a folder, not a checkpoint, and holds several with no "
                           f"best.pt among them: {names}; give one of them")
    raise Seq2SeqError(f"{path} is a folder, not a checkpoint; name the files in it: {names}")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely and verify it; every failure is one Seq2SeqError naming it."""
    path = Path(path)
    state = _read(path, map_location)
    version = _check_version(state, path)
    if version >= 2:
        _verify_checksum(state, path)
    else:
        _warn_unverified(str(path))
    _check_fields(state, path)
    return state


def _read(path: Path, map_location: str | torch.device) -> Any:
    if path.is_dir():
        raise Seq2SeqError(f"{path} is a folder, not a checkpoint; give a *.pt file in it")
    if not path.is_file():
        raise Seq2SeqError(f"checkpoint not found: {path}")
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError as error:
        raise Seq2SeqError(f"cannot read checkpoint {path}: {error.strerror}") from None
    if not head.startswith(ZIP_MAGIC):  # never unpickle what torch.save did not write
        kind = file_kind(path, head)
        raise Seq2SeqError(f"{path} is {kind}, not a checkpoint; give a *.pt file written by "
                           "`seq2seq train`" if kind else f"{path} is not a checkpoint: it does "
                           "not start like one (damaged, or another kind of file)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a damaged archive can fail anywhere inside torch's reader
        damage = _zip_damage(path)
        if damage == "":
            raise Seq2SeqError(f"{path} is a zip archive, not a checkpoint; give a *.pt file "
                               "written by `seq2seq train`") from None
        if damage is None and isinstance(error, pickle.UnpicklingError) and (
                "Unsupported operand" not in str(error)):  # a global or a class: code
            raise Seq2SeqError(f"{path}: refused: the file holds pickled objects other than "
                               "plain data (it could run code); only load checkpoints you "
                               "trust, written by seq2seq") from None
        reason = damage or (str(error).splitlines() or [type(error).__name__])[0]
        raise Seq2SeqError(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                           f"{reason}") from None


def _zip_damage(path: Path) -> str | None:
    """Why the zip archive is damaged, None if it is whole, "" if torch did not write it."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad, names = archive.testzip(), archive.namelist()
    except Exception as error:  # any failure to read the archive is damage to report
        return f"a damaged zip archive ({str(error) or type(error).__name__})"
    if bad is not None:
        return f"{bad} fails its CRC check"
    return None if any(name.endswith("/data.pkl") for name in names) else ""


def _check_version(state: Any, path: Path) -> int:
    if not isinstance(state, dict) or "format_version" not in state:
        raise Seq2SeqError(f"{path}: not a seq2seq checkpoint (no format_version; damaged, or "
                           "written by another program)")
    version = state["format_version"]
    if type(version) is not int:
        raise Seq2SeqError(f"{path}: format_version is {_kind(version)} ({_show(version)}), "
                           "not a whole number: not a checkpoint written by seq2seq")
    if version not in READABLE_FORMATS:
        newer = "; it was written by a newer seq2seq" if version > FORMAT_VERSION else ""
        formats = " and ".join(str(v) for v in READABLE_FORMATS)
        raise Seq2SeqError(f"{path}: checkpoint format {version} is not supported; this "
                           f"seq2seq reads formats {formats}{newer}")
    return version


def _verify_checksum(state: dict[str, Any], path: Path) -> None:
    expected = state.get("checksum")
    if not isinstance(expected, str):
        what = "has no checksum" if expected is None else f"has {_kind(expected)} as checksum"
        raise Seq2SeqError(f"{path}: the checkpoint {what} (format {FORMAT_VERSION} carries "
                           "one): damaged, or not written by seq2seq")
    try:
        actual = content_checksum(state)
    except Exception as error:  # crafted content that cannot even be hashed
        raise Seq2SeqError(f"{path}: holds data seq2seq never writes "
                           f"({type(error).__name__}); not a seq2seq checkpoint") from None
    if actual != expected:
        raise Seq2SeqError(f"{path}: checksum mismatch: the file changed after seq2seq wrote "
                           "it (damaged on disk or in a copy); use another checkpoint")


@functools.cache  # once per file and process: evaluate and translate may load it twice
def _warn_unverified(path: str) -> None:
    print(f"warning: {path} is a format-1 checkpoint with no checksum, so it was not "
          f"verified; `seq2seq average {path} -o NEW.pt` writes a verified copy of its weights",
          file=sys.stderr)


def _check_fields(state: dict[str, Any], path: Path) -> None:
    """Every field seq2seq reads exists and has the type it reads it as."""
    missing = [name for name, required, _, _ in _FIELDS if required and name not in state]
    if missing:
        raise Seq2SeqError(f"{path}: checkpoint lacks {', '.join(missing)}")
    for name, _, problem_of, expected in _FIELDS:
        problem = problem_of(state[name]) if name in state else None
        if problem is not None:
            raise Seq2SeqError(f"{path}: not a valid checkpoint: {name} is {problem}, "
                               f"expected {expected}")


def _mapping_problem(value: Any, fits: Any, required: tuple[str, ...] = ()) -> str | None:
    """Why `value` is not a dict of str keys whose values pass `fits`, or None."""
    if not isinstance(value, dict):
        return _kind(value)
    for key in required:
        if key not in value:
            return f"a mapping without {key!r}"
    for key, item in value.items():
        if not isinstance(key, str) or not fits(item):
            return f"a mapping whose entry {_show(key)} is {_kind(item)}"
    return None


def _count_problem(value: Any) -> str | None:
    if type(value) is int and value >= 0:
        return None
    return f"{_kind(value)} ({_show(value)})"


_FIELDS = (  # name, required, problem (None when fine), what is expected
    ("config", True, lambda v: _mapping_problem(v, lambda s: isinstance(s, dict)),
     "a mapping of sections, each a mapping"),
    ("model", True, lambda v: _mapping_problem(v, lambda t: isinstance(t, torch.Tensor)),
     "a mapping of parameter names to tensors"),
    ("tokenizers", True,
     lambda v: _mapping_problem(v, lambda b: isinstance(b, bytes), ("src", "tgt")),
     "{'src': bytes, 'tgt': bytes}, SentencePiece models"),
    ("step", False, _count_problem, "a whole number >= 0"),
    ("epoch", False, _count_problem, "a whole number >= 0"),
    ("metrics", False, lambda v: _mapping_problem(v, lambda _: True), "a mapping of scores"),
    ("train_state", False, lambda v: _mapping_problem(v, lambda _: True), "a mapping"),
)


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a decimal number", str: "a string",
             bytes: "bytes", list: "a list", tuple: "a tuple", dict: "a mapping",
             type(None): "missing (None)"}
    if isinstance(value, torch.Tensor):
        return "a tensor"
    return names.get(type(value), "a " + type(value).__name__)


def _show(value: Any, width: int = 40) -> str:
    text = value if isinstance(value, str) and width > 40 else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


class Rebuilt(NamedTuple):
    """What a checkpoint turns back into: a model in eval mode, its tokenizers, its config."""

    model: nn.Module
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    config: Config


def checkpoint_config(state: dict[str, Any], source: str = "checkpoint") -> Config:
    """The validated Config a loaded checkpoint was trained with."""
    return from_dict(state["config"], source=f"{source} config")


def rebuild(state: dict[str, Any], device: torch.device, source: str = "checkpoint") -> Rebuilt:
    """Rebuild model, tokenizers and config from a dict load_checkpoint returned.

    Args:
        state: the loaded checkpoint.
        device: where the model's weights go.
        source: names the checkpoint in error messages, e.g. its path.
    """
    config = checkpoint_config(state, source)
    src_tok, tgt_tok = (_tokenizer(state, side, source) for side in ("src", "tgt"))
    joint = state["tokenizers"]["src"] == state["tokenizers"]["tgt"]
    model = build_model(config.model, src_tok.vocab_size, tgt_tok.vocab_size, src_tok.pad_id,
                        joint_vocab=joint)
    bad = non_finite_weight(state["model"])
    if bad is not None:
        raise Seq2SeqError(f"{source}: the weight {bad} is NaN or infinite; it cannot translate")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:  # the first line only names the class; the next says why
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or ["?"]
        why = _show(lines[min(1, len(lines) - 1)], 160)
        raise Seq2SeqError(f"{source}: the weights do not fit its own config: {why}") from None
    if config.train.fast:  # the CPU kernels of seq2seq/fast, as the model trained with
        accelerate(model)
    return Rebuilt(model.to(device).eval(), src_tok, tgt_tok, config)


def _tokenizer(state: dict[str, Any], side: str, source: str) -> Tokenizer:
    try:
        return Tokenizer(state["tokenizers"][side])
    except Seq2SeqError as error:
        raise Seq2SeqError(f"{source}: tokenizers.{side}: {error}") from None


def model_shape_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys of the model config that differ between two config dicts, as 'key: a -> b'."""
    old, new = saved.get("model", {}), current.get("model", {})
    return [f"model.{key}: {old.get(key)!r} -> {new.get(key)!r}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def build_checkpoint(config, model: torch.nn.Module, src_tok, tgt_tok, step: int, epoch: int,
                     metrics: dict, train_state: dict | None = None) -> dict[str, Any]:
    """The checkpoint layout above, from a run's parts; refuses weights that are not finite.

    config: a Config (stored as config.to_dict()); model: its state_dict is stored;
    src_tok, tgt_tok: Tokenizers (their model_bytes); train_state: optimizer, scaler,
    progress, rng, world_size for --resume, or None for a checkpoint to translate with.
    Raises Seq2SeqError on a NaN or inf weight, so no such checkpoint is ever written and
    the previous files stay as they are.
    """
    weights = model.state_dict()
    bad = non_finite_weight(weights)
    if bad is not None:
        raise Seq2SeqError(f"step {step}: weight {bad} is not finite (NaN or inf), so no "
                           "checkpoint was written and the earlier ones are kept; lower "
                           "train.lr, raise train.warmup or use train.precision=fp32")
    state = {"config": config.to_dict(), "model": weights,
             "tokenizers": {"src": src_tok.model_bytes, "tgt": tgt_tok.model_bytes},
             "step": step, "epoch": epoch, "metrics": metrics}
    if train_state is not None:
        state["train_state"] = train_state
    return state
