"""Checkpoint averaging: the mean of several checkpoints' weights, of one model and one
vocabulary, written as a checkpoint that translates like any other."""

from pathlib import Path
from typing import Any

from seq2seq.checkpoint import (
    load_checkpoint,
    model_shape_changes,
    non_finite_weight,
    save_checkpoint,
)
from seq2seq.errors import Seq2SeqError
from seq2seq.files import check_output


def average_checkpoints(paths: list[Path]) -> dict[str, Any]:
    """Average the model weights of several checkpoints of one model and tokenizer.

    Returns a checkpoint (config and tokenizers from the first) without train_state.
    """
    if not paths:
        raise Seq2SeqError("average: name at least one checkpoint")
    first, total = None, {}
    for path in paths:
        state = load_checkpoint(path)
        first = state if first is None else first
        _refuse_different(state, path, first, paths[0])
        bad = non_finite_weight(state["model"])
        if bad is not None:
            raise Seq2SeqError(f"average: {path} holds NaN or infinite weights ({bad}); "
                               "leave it out")
        for key, value in state["model"].items():
            if value.is_floating_point():  # other tensors (counters, masks) keep the first's
                total[key] = total[key] + value.double() if key in total else value.double()
    averaged = {k: (total[k] / len(paths)).to(v.dtype) if k in total else v
                for k, v in first["model"].items()}
    return {"config": first["config"], "model": averaged, "tokenizers": first["tokenizers"],
            "step": first.get("step", 0), "epoch": first.get("epoch", 0),
            "metrics": {}, "averaged_from": [str(p) for p in paths]}


def _refuse_different(state: dict, path: Path, first: dict, first_path: Path) -> None:
    """Averaging needs one vocabulary and one architecture: equal shapes are not enough."""
    for side, name in (("src", "source"), ("tgt", "target")):
        if state["tokenizers"][side] != first["tokenizers"][side]:
            raise Seq2SeqError(f"average: {path} has a different {name} tokenizer (vocabulary) "
                               f"than {first_path}; average checkpoints of one run")
    changes = model_shape_changes(first["config"], state["config"])
    if changes:
        raise Seq2SeqError(f"average: {path} has a different model config than {first_path} "
                           f"({'; '.join(changes)})")
    weights, reference = state["model"], first["model"]
    differ = sorted(set(weights) ^ set(reference)) or [
        k for k in reference if weights[k].shape != reference[k].shape]
    if differ:
        raise Seq2SeqError(f"average: {path} does not match {first_path} at {differ[0]}")


def write_average(paths: list[Path], output: Path) -> dict[str, Any]:
    """Average `paths` into `output`, refusing an output that is one of the inputs."""
    target = check_output(Path(output), paths, "-o")
    state = average_checkpoints(paths)
    save_checkpoint(state, target)
    return state
