"""What a run starts from: settings checked before anything is deleted, the model, the data
fitted to its positions, another run's weights (train.init_from), or a resumed run, where
a run that has already finished is left as it is."""

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import Config, ModelConfig, TrainConfig
from seq2seq.config_checks import parse_duration
from seq2seq.corpora.parallel import corpus_name
from seq2seq.data import filter_long
from seq2seq.errors import Seq2SeqError
from seq2seq.model.build import build_model
from seq2seq.prepare import TrainingData
from seq2seq.runtime import autocast
from seq2seq.tokenizer import Tokenizer
from seq2seq.training.progress import TrainState, limit_reached
from seq2seq.training.schedule import adamw
from seq2seq.training.tracking import summary_writer_class

Log = Callable[[str], None]

# Model keys that change no weight's shape or meaning: fine-tuning may set them anew.
FREE_MODEL_KEYS = ("dropout", "attention_dropout")


def check_settings(settings: TrainConfig, device: torch.device) -> None:
    """Fail now, before an earlier run's files are deleted, on settings that would
    otherwise fail only once the step is built: fp16 off CUDA, optimizer values, tracking
    without its package."""
    autocast(device, settings.precision)
    if settings.tensorboard:
        summary_writer_class()
    try:
        adamw(nn.Linear(1, 1), settings, torch.device("cpu"), settings.lr)
    except ValueError as error:
        raise Seq2SeqError(f"the optimizer refuses train.lr, train.betas, train.adam_eps or "
                           f"train.weight_decay: {error}") from None


def fit_to_positions(data: TrainingData, config: Config, log: Log) -> TrainingData:
    """Drop pairs longer than the model's positions (data.max_len may allow them).

    Dev pairs leave the validation loss only; BLEU translates them truncated. With no
    training pair left the loop would never take a step, and with no dev pair left the
    validation loss would mean nothing: both are errors.
    """
    limit = config.model.max_positions - 1  # each side gains one token: EOS or BOS
    train, long_train = data.train.within(limit)
    dev, long_dev = filter_long(data.dev, limit)
    if long_train or long_dev:
        log(f"data: dropped {long_train} training and {long_dev} validation pairs "
            f"longer than model.max_positions - 1 = {limit} tokens")
    if not len(train):
        raise Seq2SeqError(f"no training pairs left: all are longer than data.max_len="
                           f"{config.data.max_len} tokens or model.max_positions - 1 = "
                           f"{limit}; raise them or check the training files")
    if long_dev and not dev.src:
        raise Seq2SeqError(f"no validation pairs left: all {long_dev} in "
                           f"{corpus_name(config.data.dev)} are longer than "
                           f"model.max_positions - 1 = {limit} tokens; raise "
                           "model.max_positions or use shorter dev sentences")
    return replace(data, train=train, dev=dev)


def model_on(model_config: ModelConfig, src_tok: Tokenizer, tgt_tok: Tokenizer,
             device: torch.device) -> nn.Module:
    """The model the config describes, on `device`; an allocation failure is one line."""
    m = model_config
    if device.type == "cpu":
        _check_fits_in_memory(m, src_tok, tgt_tok)
    try:
        model = build_model(m, src_tok.vocab_size, tgt_tok.vocab_size, src_tok.pad_id,
                            joint_vocab=src_tok is tgt_tok)
        return model.to(device)
    except (RuntimeError, MemoryError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise Seq2SeqError(
            f"could not build the model on {device} (model.d_model={m.d_model}, "
            f"model.d_ff={m.d_ff}, model.encoder_layers={m.encoder_layers}, "
            f"model.decoder_layers={m.decoder_layers}, model.max_positions={m.max_positions}, "
            f"vocabulary {src_tok.vocab_size}/{tgt_tok.vocab_size}): {reason}; "
            "make it smaller") from None


def _check_fits_in_memory(m: ModelConfig, src_tok: Tokenizer, tgt_tok: Tokenizer) -> None:
    """Refuse, before allocating, a model whose training state cannot fit in this machine's
    memory: the kernel would otherwise kill the process, or the machine would swap for hours."""
    try:
        with torch.device("meta"):  # shapes only: no memory
            shape = build_model(m, src_tok.vocab_size, tgt_tok.vocab_size, src_tok.pad_id,
                                joint_vocab=src_tok is tgt_tok)
    except (RuntimeError, MemoryError):  # the real build below reports it
        return
    n = sum(p.numel() for p in shape.parameters())
    need = 16 * n  # fp32 weights, gradients and AdamW's two moments, before activations
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this system: let it try
        return
    if need > have:
        raise Seq2SeqError(
            f"the model has {n:,} parameters; training them needs at least {need / 2**30:.1f} "
            f"GiB (weights, gradients, optimizer state) but this machine has "
            f"{have / 2**30:.1f} GiB; lower model.d_model, model.d_ff or the layer counts")


# ---------------------------------------------------------------- other runs


class AlreadyFinished(Exception):
    """--resume on a run that reached its limit: nothing to do, nothing changed."""


def check_not_finished(last: Path, config: Config) -> None:
    """Raise AlreadyFinished when the run whose `last` checkpoint this is has reached one of
    config's limits (max_steps, max_epochs, max_time, patience) and has nothing left to
    write; a damaged checkpoint is left for resume to report."""
    try:
        state = TrainState(**load_checkpoint(last)["train_state"]["progress"])
    except (KeyError, TypeError):
        return
    settings = config.train
    reason = limit_reached(state, settings, parse_duration(settings.max_time))
    if reason is None:
        return
    if settings.average_best and not (last.parent / "averaged.pt").is_file():
        return  # the resumed run writes averaged.pt, which an interrupt left unwritten
    key = reason.split("=")[0] if "=" in reason else "patience"
    raise AlreadyFinished(f"{last.parent} is finished: {reason} reached at step {state.step}; "
                          f"nothing changed (to train further, raise train.{key}: "
                          f"--resume --set train.{key}=...)")


@dataclass
class WarmStart:
    """The checkpoint named by train.init_from: where it is, its tokenizers and weights."""

    path: Path
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    weights: dict
    step: int
    bleu: float | None


def warm_start(config: Config, run_dir: Path) -> WarmStart:
    """Load train.init_from and check it fits config: the same model shape and tokenizer
    settings (its tokenizers are reused); anything else is one line naming what differs."""
    path = Path(config.train.init_from)
    if path.resolve().parent == run_dir.resolve():
        raise Seq2SeqError(f"train.init_from {path} is in train.run_dir {run_dir}, whose "
                           "checkpoints a new run replaces; copy it elsewhere or set another "
                           "train.run_dir")
    try:
        saved = load_checkpoint(path)
    except Seq2SeqError as error:
        raise Seq2SeqError(f"train.init_from: {error}") from None
    differs = differences(saved["config"], config.to_dict())
    if differs:
        raise Seq2SeqError(f"train.init_from {path} does not fit this config: "
                           f"{'; '.join(differs)} (checkpoint -> config); set them as the "
                           "checkpoint has them")
    tokenizers = saved["tokenizers"]
    src_tok = Tokenizer(tokenizers["src"])
    tgt_tok = src_tok if tokenizers["tgt"] == tokenizers["src"] else Tokenizer(tokenizers["tgt"])
    bleu = saved.get("metrics", {}).get("bleu")
    return WarmStart(path, src_tok, tgt_tok, saved["model"], saved["step"], bleu)


def differences(saved: dict, current: dict) -> list[str]:
    """The model keys (but dropout) and tokenizer keys that differ, as 'key: a -> b'."""
    found = []
    for section, free in (("model", FREE_MODEL_KEYS), ("tokenizer", ())):
        old, new = saved.get(section, {}), current.get(section, {})
        found += [f"{section}.{key}: {old.get(key)!r} -> {new.get(key)!r}"
                  for key in sorted(set(old) | set(new))
                  if key not in free and old.get(key) != new.get(key)]
    return found


def load_weights(model: nn.Module, start: WarmStart) -> None:
    """Put the init_from weights into the new run's model; a mismatch is one line."""
    try:
        model.load_state_dict(start.weights)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or ["?"]
        raise Seq2SeqError(f"train.init_from {start.path}: its weights do not fit this "
                           f"model: {lines[min(1, len(lines) - 1)][:200]}") from None
