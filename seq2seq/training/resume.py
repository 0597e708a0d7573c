"""Exact resume: the training state a checkpoint carries, and loading it back.

train_state holds the optimizer, the gradient scaler, the progress (step, the position
inside the epoch, the best scores, the early-stopping counter, the time so far) and
every rank's RNG states, so a resumed run takes the steps the straight one would have.
"""

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from seq2seq.checkpoint import load_checkpoint, model_shape_changes
from seq2seq.config import Config
from seq2seq.errors import Seq2SeqError
from seq2seq.runtime import rng_state, set_rng_state
from seq2seq.tokenizer import Tokenizer
from seq2seq.training import distributed as dist
from seq2seq.training.progress import TrainState
from seq2seq.training.step import TrainStep


def training_state(step: TrainStep, state: TrainState) -> dict:
    """What --resume needs besides the weights; a collective under DDP (every rank's RNG)."""
    rng = dist.gather_objects(step.world, rng_state())
    return {"optimizer": step.optimizer.state_dict(), "scaler": step.scaler.state_dict(),
            "progress": asdict(state), "rng": rng, "world_size": step.world.size}


def resume_from(path: Path, config: Config, step: TrainStep, src_tok: Tokenizer,
                log: Callable[[str], None]) -> TrainState:
    """Load last.pt into the model, optimizer, scaler and RNGs; returns its progress."""
    saved = load_checkpoint(path, map_location=step.device)
    changes = model_shape_changes(saved["config"], config.to_dict())
    if changes:
        raise Seq2SeqError(f"--resume: the model config changed since {path} was written "
                           f"({'; '.join(changes)}); restore it or train into a new run_dir")
    if saved["tokenizers"]["src"] != src_tok.model_bytes:
        raise Seq2SeqError(f"--resume: the tokenizer in {path.parent} differs from the "
                           f"one {path} was trained with")
    if "train_state" not in saved:
        raise Seq2SeqError(f"--resume: {path} holds no training state")
    try:
        state = _restore(saved, step, config.train.seed)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # a damaged train_state
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise Seq2SeqError(f"--resume: {path} holds a damaged training state ({reason}); "
                           "resume from a copy or train into a new run_dir") from None
    log(f"resumed from {path} at step {state.step}, epoch {state.epoch}")
    return state


def _restore(saved: dict, step: TrainStep, seed: int) -> TrainState:
    """Put a checkpoint's weights, optimizer, scaler and RNG states into place."""
    saved_state = saved["train_state"]
    step.model.load_state_dict(saved["model"])
    step.optimizer.load_state_dict(saved_state["optimizer"])
    step.scaler.load_state_dict(saved_state["scaler"])
    state = TrainState(**saved_state["progress"])
    world = step.world
    if saved_state["world_size"] == world.size:
        set_rng_state(saved_state["rng"][world.rank])
    else:
        torch.manual_seed(seed + 1000 * state.step + world.rank)
    return state
