"""The training loop, top to bottom: tokenizers -> batches -> teacher-forced loss ->
AdamW with warm-up -> validation BLEU -> checkpoints.

setup() builds a Run once (device, run directory, tokenizers, data, model, step, resume);
fit() trains it; train() does both. Resume is exact (resume.py).
"""

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seq2seq.averaging import average_checkpoints
from seq2seq.checkpoint import build_checkpoint
from seq2seq.config import Config, dump_config
from seq2seq.config_checks import parse_duration
from seq2seq.errors import Seq2SeqError
from seq2seq.model.transformer import count_parameters
from seq2seq.prepare import (
    TrainingData,
    adopt,
    check_inputs,
    load_or_prepare,
    load_training_data,
    training_inputs,
)
from seq2seq.runtime import SignalFlag, precision_named, resolve_device, set_threads
from seq2seq.tokenizer import Tokenizer
from seq2seq.training import best as best_k
from seq2seq.training import distributed as dist
from seq2seq.training.distributed import World
from seq2seq.training.feed import Feed, ahead_for, batch_of, epoch_steps
from seq2seq.training.progress import (
    LossWindow,
    SkippedSteps,
    TrainState,
    fraction_done,
    limit_reached,
)
from seq2seq.training.report import Report, is_terminal, write_line
from seq2seq.training.resume import resume_from, training_state
from seq2seq.training.run_dir import RunDir
from seq2seq.training.schedule import learning_rate
from seq2seq.training.start import (
    AlreadyFinished,
    WarmStart,
    check_not_finished,
    check_settings,
    fit_to_positions,
    load_weights,
    model_on,
    warm_start,
)
from seq2seq.training.step import TrainStep, build_step
from seq2seq.training.tracking import Tracker, open_tracker
from seq2seq.training.validate import validate

Log = Callable[[str], None]


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after saving last.pt.

    what: what happened and was saved; todo: what the resume command does, e.g. "continue".
    str() names the command generically; told() with the user's own command line.
    """

    def __init__(self, what: str, todo: str = "continue"):
        super().__init__(what, todo)
        self.what, self.todo = what, todo

    def told(self, command: str) -> str:
        return f"{self.what}; {self.todo} with: {command}"

    def __str__(self) -> str:
        return self.told("seq2seq train CONFIG --resume")


@dataclass
class Run:
    """What one training run is made of, built once by setup(). The loop changes only
    `state` (and, through the step, the model's weights)."""

    config: Config
    world: World
    device: torch.device
    run_dir: RunDir
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    data: TrainingData
    model: nn.Module
    step: TrainStep
    state: TrainState
    log: Log
    progress: bool
    tracker: Tracker


def train(config: Config, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> Path:
    """Train the model a config describes; returns the run directory."""
    world = dist.init_world(config.train.device)
    finished = False
    try:
        # One writer per run directory: the lock is held until the run ends, and a run
        # that fails before writing anything leaves no directory behind.
        with RunDir(config.train.run_dir, world.is_main, main_log(world)) as run_dir:
            try:
                path = fit(setup(config, world, run_dir, resume, overwrite, progress))
            except AlreadyFinished as done:
                main_log(world)(str(done))
                path = run_dir.path
        finished = True
        return path
    finally:
        dist.close_world(world, finished)


# ---------------------------------------------------------------- setup


def setup(config: Config, world: World, run_dir: RunDir, resume: bool, overwrite: bool,
          progress: bool) -> Run:
    """Everything a run needs before its first step, in the order it is needed; `run_dir`
    is locked by this process."""
    settings = config.train
    log = main_log(world)
    device = dist.process_device(world, resolve_device(settings.device))
    threads = set_threads(settings.threads)
    bar = progress and world.is_main and is_terminal(sys.stderr)  # for a store build
    src_tok, tgt_tok, data, start = open_run_dir(config, world, run_dir, device, resume,
                                                 overwrite, log, bar)
    torch.manual_seed(settings.seed + world.rank)
    model = model_on(config.model, src_tok, tgt_tok, device)
    if start is not None:  # fine-tuning: its weights, a fresh optimizer and schedule
        load_weights(model, start)
        bleu = "" if start.bleu is None else f", BLEU {start.bleu:.2f}"
        log(f"init_from: weights of {start.path} (step {start.step}{bleu}); the optimizer "
            "and learning rate schedule start afresh")
    step = build_step(model, settings, world, device)
    state = TrainState()
    if resume:
        state = resume_from(run_dir.path / "last.pt", config, step, src_tok, log)
        run_dir.trim_metrics(state.step)
    run_dir.clear_previous()  # only now: the data, the model and the step are all built
    run_dir.write_config(config, dump_config)
    log(f"model: {count_parameters(model):,} parameters; device {device}, {threads} threads, "
        f"{precision_named(settings.precision, device)}, world size {world.size}")
    tracker = open_tracker(settings.tensorboard, run_dir.path, state.step, world.is_main)
    return Run(config, world, device, run_dir, src_tok, tgt_tok, data, model, step, state, log,
               progress and world.is_main, tracker)


def main_log(world: World) -> Log:
    """A log that prints on the main process only, above the progress bar, flushed."""
    return write_line if world.is_main else (lambda message: None)


def open_run_dir(config: Config, world: World, run_dir: RunDir, device: torch.device,
                 resume: bool, overwrite: bool, log: Log, bar: bool = False
                 ) -> tuple[Tokenizer, Tokenizer, TrainingData, WarmStart | None]:
    """Check everything, then the tokenizers and data: the one place setup reads or writes
    the run directory before training; an earlier run's files stay until setup has built
    the whole run. Returns them with train.init_from's checkpoint (None when off or
    resuming)."""
    run_dir.check(resume, overwrite)
    if resume:  # a finished run is left as it is
        check_not_finished(run_dir.path / "last.pt", config)
    check_inputs(config)
    check_settings(config.train, device)
    start = warm_start(config, run_dir.path) if config.train.init_from and not resume else None
    corpora = training_inputs(config)
    with dist.main_first(world):  # rank 0 trains the tokenizer and builds the store
        if start is not None and world.is_main:
            adopt(config, start.src_tok, start.tgt_tok, str(start.path))
        src_tok, tgt_tok = load_or_prepare(config, log, resume=resume, corpora=corpora)
        data = load_training_data(config, src_tok, tgt_tok, log, corpora,
                                  build=world.is_main, bar=bar)
    return src_tok, tgt_tok, fit_to_positions(data, config, log), start


# ---------------------------------------------------------------- the loop


def fit(run: Run) -> Path:
    """Train until a limit, the time budget, early stopping or a signal.

    Signals are caught from the first step to the last file written, so a Ctrl-C (or a
    second one) never stops a save halfway.
    """
    settings, state = run.config.train, run.state
    budget = parse_duration(settings.max_time)
    clock = Clock(state.elapsed)
    skipped = SkippedSteps(state.nonfinite_in_row, run.device)
    window = LossWindow(state.step)
    report = Report(settings, budget, run.progress, run.world.is_main, run.log)
    with SignalFlag() as stopper, run.tracker, report:
        reason = None
        while reason is None:
            steps = epoch_steps(run.data.train, settings, run.world, state.epoch)
            with feed(run, steps[state.steps_in_epoch :]) as batches:
                for micro in batches:
                    reason, done = stop_check(run, stopper, budget, len(steps))
                    if reason is not None:
                        break
                    lr = learning_rate(state.step + 1, settings.lr, settings.warmup,
                                       settings.schedule, done)
                    nll, flag, tokens = run.step.step(micro, lr)
                    state.steps_in_epoch += 1
                    state.step += 1
                    state.elapsed = clock()
                    skipped.add(flag)
                    window.add(nll, flag, tokens)
                    report.advance(state, fraction_done(state, settings, len(steps), budget),
                                   len(steps))
                    if state.step % settings.log_every == 0:
                        log_train(run, window, skipped, lr, report, len(steps))
                    if state.step % settings.eval_every == 0:
                        evaluate_and_save(run, clock, skipped)
                else:  # the epoch ran to its end
                    state.epoch += 1
                    state.steps_in_epoch = 0
        report.close()
        return finish(run, reason, clock, skipped, stopper)


class Clock:
    """Wall seconds of the run so far, counting those of the runs it resumes."""

    def __init__(self, elapsed: float):
        self.start = time.perf_counter() - elapsed

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def feed(run: Run, steps: list) -> Feed:
    """The batches of these steps on the run's device (built ahead on a GPU)."""
    train, tok = run.data.train, run.tgt_tok
    return Feed(steps, lambda indices: batch_of(train, tok, indices), run.device,
                ahead_for(run.device))


def stop_check(run: Run, stopper: SignalFlag, budget: float, epoch_len: int
               ) -> tuple[str | None, float]:
    """(why the run stops before its next step, or None; the fraction of the run done,
    for the schedule). Rank 0's clock decides for every rank, so learning rates stay
    identical under DDP."""
    settings = run.config.train
    reason = "signal" if signalled(run, stopper) else limit_reached(run.state, settings, budget)
    done = fraction_done(run.state, settings, epoch_len, budget)
    return dist.broadcast_object(run.world, (reason, done))


def signalled(run: Run, stopper: SignalFlag) -> bool:
    """Whether any process has been sent SIGINT or SIGTERM."""
    return dist.all_sum(run.world, [float(stopper.raised)])[0] > 0


def count_skipped(run: Run, skipped: SkippedSteps) -> None:
    """Learn of the updates skipped since the last look (a host sync: only where the
    loop waits anyway) and stop once train.max_nonfinite came in a row."""
    new, in_row, most = skipped.read()
    state = run.state
    state.nonfinite_total += new
    state.nonfinite_in_row = in_row
    if new:
        run.log(f"step {state.step}: {new} update(s) skipped for a non-finite loss since the "
                f"last report ({in_row} in a row now, {state.nonfinite_total} in all)")
    if most >= run.config.train.max_nonfinite:
        raise Seq2SeqError(
            f"the loss was not finite for {most} steps in a row by step {state.step}; "
            "lower train.lr, raise train.warmup, or use fp32")


def log_train(run: Run, window: LossWindow, skipped: SkippedSteps, lr: float, report: Report,
              epoch_len: int) -> None:
    """One metrics row for the steps since the last: loss, rate, throughput; on the bar or
    as a line, and to TensorBoard."""
    count_skipped(run, skipped)
    row = window.flush(run.state.step, run.state.elapsed, lr, run.world)
    row["epoch"] = run.state.epoch
    report.training(row, run.state, epoch_len)
    run.tracker.add(row, run.state.step)
    run.run_dir.append_metrics(row)


# ---------------------------------------------------------------- validation and checkpoints


def checkpoint(run: Run, metrics: dict, with_train_state: bool) -> dict:
    """The run's checkpoint now; with train_state it is a collective under DDP."""
    state, step = run.state, run.step
    train_state = training_state(step, state) if with_train_state else None
    return build_checkpoint(run.config, run.model, run.src_tok, run.tgt_tok, state.step,
                            state.epoch, metrics, train_state)


def evaluate_and_save(run: Run, clock: Clock, skipped: SkippedSteps) -> None:
    """Validate, rank the BLEU among the best K, then write their files and last.pt."""
    state, settings, is_main = run.state, run.config.train, run.world.is_main
    count_skipped(run, skipped)  # the checkpoint's counts must be current
    t0 = time.perf_counter()
    metrics, verdict = {}, None
    if is_main:
        metrics = validate(run.model, run.data.dev, run.data.dev_text, run.src_tok,
                           run.tgt_tok, run.config, run.device)
        verdict = best_k.judge(state.best, state.bad_evals, metrics["bleu"], state.step,
                               settings.keep_best)
        state.best, state.bad_evals = verdict.best, verdict.bad_evals
    state.eval_seconds += time.perf_counter() - t0
    state.elapsed = clock()
    state.last_eval_step = state.step
    last = checkpoint(run, metrics, with_train_state=True)  # every rank refuses NaN alike
    if is_main:
        best_k.keep_best(run.run_dir, verdict, state.step,
                         {k: v for k, v in last.items() if k != "train_state"})
        run.run_dir.save("last.pt", last)
        best_bleu, best_step = state.best[0]
        run.log(f"step {state.step} | val loss {metrics['val_loss']:.3f} "
                f"ppl {metrics['val_ppl']:.2f} | BLEU {metrics['bleu']:.2f} "
                f"chrF {metrics['chrf']:.2f} | best BLEU {best_bleu:.2f} @ {best_step}")
        run.run_dir.append_metrics({"step": state.step, "elapsed": state.elapsed, **metrics})
        run.tracker.add(metrics, state.step)
        run.tracker.flush()
    state.bad_evals = dist.broadcast_object(run.world, state.bad_evals)


def finish(run: Run, reason: str, clock: Clock, skipped: SkippedSteps, stopper: SignalFlag
           ) -> Path:
    """Save last.pt (after a final validation unless a signal stopped the run), then
    average the best K; a signal during the final validation leaves that to --resume."""
    state, settings = run.state, run.config.train
    if reason == "signal":
        count_skipped(run, skipped)
        run.run_dir.save("last.pt", checkpoint(run, {}, with_train_state=True))
        raise Interrupted(f"interrupted at step {state.step}; {run.run_dir.path}/last.pt "
                          "saved")
    if state.step and state.last_eval_step != state.step:  # not validated at this step yet
        evaluate_and_save(run, clock, skipped)
    run.log(f"stopped: {reason}; {state.step} steps, {state.train_seconds:.0f}s training + "
            f"{state.eval_seconds:.0f}s validation; checkpoints in {run.run_dir.path}")
    if settings.average_best and signalled(run, stopper):
        raise Interrupted(f"interrupted after the last step, {state.step}; "
                          f"{run.run_dir.path}/last.pt saved; averaged.pt not written",
                          todo="write it")
    if settings.average_best and run.world.is_main:
        write_average(run)
    return run.run_dir.path


def write_average(run: Run) -> None:
    """Write averaged.pt from the best-K checkpoints and report its validation BLEU."""
    best = run.state.best
    names = best_k.to_average(best, run.config.train.average_best)
    paths = [path for name in names if (path := run.run_dir.path / name).is_file()]
    if len(paths) < 2:
        run.log("average_best: fewer than 2 best checkpoints; averaged.pt not written")
        return
    averaged = average_checkpoints(paths)
    model = copy.deepcopy(run.model)  # the run's own model stays as it is
    model.load_state_dict(averaged["model"])
    metrics = validate(model, run.data.dev, run.data.dev_text, run.src_tok, run.tgt_tok,
                       run.config, run.device)
    state = build_checkpoint(run.config, model, run.src_tok, run.tgt_tok, averaged["step"],
                             averaged["epoch"], metrics)
    state["averaged_from"] = averaged["averaged_from"]
    run.run_dir.save("averaged.pt", state)
    run.log(f"averaged.pt from {len(paths)} checkpoints: BLEU {metrics['bleu']:.2f} "
            f"(best single: {best[0][0]:.2f} @ step {best[0][1]})")
    run.run_dir.append_metrics({"step": run.state.step, "averaged": len(paths), **metrics})
    run.tracker.add(metrics, run.state.step, prefix="averaged/")
