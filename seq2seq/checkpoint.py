"""Checkpoints: atomic save, safe load, averaging.

A checkpoint is a dict of plain data (tensors, numbers, strings, bytes) that rebuilds
its own model and tokenizers, so `translate` and `evaluate` need nothing else:

    format_version  int
    config          the fully resolved config, as nested dicts
    model           the model's state_dict
    tokenizers      {"src": bytes, "tgt": bytes} SentencePiece models (same bytes when joint)
    step, epoch     where training was
    metrics         validation scores at this step, e.g. {"bleu": 91.2}
    train_state     optional: optimizer, scheduler, data position, RNG states (for --resume)

It is loaded with torch.load(weights_only=True): a file that carries pickled code is
refused before any of it runs.
"""

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write

FORMAT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically (temporary file, fsync, rename): a process killed at any
    instant leaves either the old file or the new one."""
    atomic_write(Path(path), lambda f: torch.save({"format_version": FORMAT_VERSION, **state}, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; every failure is one Seq2SeqError naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise Seq2SeqError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise Seq2SeqError(f"{path}: refused: the file holds pickled objects other than "
                           "plain data (it could run code); only load checkpoints you trust, "
                           "written by seq2seq") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise Seq2SeqError(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                           f"{reason}") from None
    return _check_format(state, path)


def _check_format(state: Any, path: Path) -> dict[str, Any]:
    if not isinstance(state, dict) or "format_version" not in state:
        raise Seq2SeqError(f"{path}: not a seq2seq checkpoint (no format_version)")
    version = state["format_version"]
    if version != FORMAT_VERSION:
        raise Seq2SeqError(f"{path}: checkpoint format {version} is not supported; this "
                           f"seq2seq reads format {FORMAT_VERSION}")
    missing = [key for key in ("config", "model", "tokenizers") if key not in state]
    if missing:
        raise Seq2SeqError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


def average_checkpoints(paths: list[Path]) -> dict[str, Any]:
    """Average the model weights of several checkpoints of the same model.

    Returns a checkpoint (config and tokenizers from the first) without train_state.
    """
    if not paths:
        raise Seq2SeqError("average: name at least one checkpoint")
    first = load_checkpoint(paths[0])
    total = {k: v.double() if v.is_floating_point() else v for k, v in first["model"].items()}
    for path in paths[1:]:
        state = load_checkpoint(path)
        if state["config"].get("model") != first["config"].get("model"):
            raise Seq2SeqError(f"average: {path} has a different model config than {paths[0]}")
        if set(state["model"]) != set(total):
            differ = sorted(set(state["model"]) ^ set(total))[0]
            raise Seq2SeqError(f"average: {path} does not match {paths[0]} at {differ}")
        for key, value in state["model"].items():
            if total[key].shape != value.shape:
                raise Seq2SeqError(f"average: {path} does not match {paths[0]} at {key}")
            if value.is_floating_point():
                total[key] += value.double()
    averaged = {k: (v / len(paths)).to(first["model"][k].dtype) if v.is_floating_point() else v
                for k, v in total.items()}
    return {"config": first["config"], "model": averaged, "tokenizers": first["tokenizers"],
            "step": first.get("step", 0), "epoch": first.get("epoch", 0),
            "metrics": {}, "averaged_from": [str(p) for p in paths]}


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
    floats = [name for name, t in weights.items() if t.is_floating_point()]
    checks = [torch.isfinite(weights[name]).all() for name in floats]
    finite = torch.stack(checks).tolist() if checks else []  # one host sync for all
    bad = [name for name, ok in zip(floats, finite, strict=True) if not ok]
    if bad:
        raise Seq2SeqError(f"step {step}: weight {bad[0]} is not finite (NaN or inf), so no "
                           "checkpoint was written and the earlier ones are kept; lower "
                           "train.lr, raise train.warmup or use train.precision=fp32")
    state = {"config": config.to_dict(), "model": weights,
             "tokenizers": {"src": src_tok.model_bytes, "tgt": tgt_tok.model_bytes},
             "step": step, "epoch": epoch, "metrics": metrics}
    if train_state is not None:
        state["train_state"] = train_state
    return state
