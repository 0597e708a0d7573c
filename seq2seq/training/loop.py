"""The training loop, top to bottom: tokenizers -> batches -> teacher-forced loss ->
AdamW with warm-up -> validation BLEU -> checkpoints.

Resume is exact: a checkpoint's train_state holds the optimizer, the step, the position
inside the epoch, the best scores, the early-stopping counter and every RNG state.
"""

import contextlib
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from seq2seq.checkpoint import average_checkpoints, load_checkpoint, model_shape_changes
from seq2seq.config import Config, dump_config, parse_duration
from seq2seq.data import Batch, filter_long, make_batch, shard, token_batches
from seq2seq.errors import Seq2SeqError
from seq2seq.fast import accelerate
from seq2seq.loss import TeacherForcedLoss
from seq2seq.model.build import build_model
from seq2seq.model.transformer import count_parameters
from seq2seq.prepare import load_or_prepare, load_training_data
from seq2seq.runtime import (
    SignalFlag,
    autocast,
    resolve_device,
    rng_state,
    set_rng_state,
    set_threads,
)
from seq2seq.training import distributed as dist
from seq2seq.training.progress import (
    LossWindow,
    SkippedSteps,
    TrainState,
    fraction_done,
    limit_reached,
)
from seq2seq.training.run_dir import RunDir
from seq2seq.training.schedule import adamw, learning_rate, step_unless
from seq2seq.training.validate import validate, validate_weights


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after saving last.pt."""


class Trainer:
    """One training run in one process (one rank under torchrun)."""

    def __init__(self, config: Config, resume: bool, overwrite: bool, progress: bool):
        self.config, self.cfg = config, config.train
        self.world = dist.init_world(self.cfg.device)
        self.device = dist.process_device(self.world, resolve_device(self.cfg.device))
        self.threads = set_threads(self.cfg.threads)
        self.run = RunDir(Path(self.cfg.run_dir), self.world.is_main)
        self.run.claim(resume, overwrite)
        self.progress = progress and self.world.is_main
        self.state = TrainState()
        self.done = 0.0  # fraction of the run done, for linear/cosine schedules
        self.epoch_len = 0  # optimizer steps per epoch on this rank
        torch.manual_seed(self.cfg.seed + self.world.rank)
        with dist.main_first(self.world):  # rank 0 trains the tokenizer, the others load it
            self.src_tok, self.tgt_tok = load_or_prepare(config, self.log)
        self.data = load_training_data(config, self.src_tok, self.tgt_tok, self.log)
        self._fit_data_to_positions()
        self.model = build_model(config.model, self.src_tok.vocab_size, self.tgt_tok.vocab_size,
                                 self.src_tok.pad_id, joint_vocab=self.src_tok is self.tgt_tok)
        self.model.to(self.device)
        loss = TeacherForcedLoss(self.model, self.cfg.label_smoothing)
        self.loss_module = self._wrap(accelerate(loss) if self.cfg.fast else loss)  # + model
        self.optimizer = adamw(self.model, self.cfg, self.device, self.learning_rate(1))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cfg.precision == "fp16")
        if resume:
            self._resume()
        self.skipped = SkippedSteps(self.state.nonfinite_in_row, self.device)
        self.run.write_config(config, dump_config)
        self.log(f"model: {count_parameters(self.model):,} parameters; device {self.device}, "
                 f"{self.threads} threads, {self.cfg.precision}, world size {self.world.size}")

    def _fit_data_to_positions(self) -> None:
        """Drop pairs longer than the model's positions (data.max_len may allow them).

        Dev pairs leave the validation loss only; BLEU translates them truncated. With no
        training pair left the loop would never take a step, so that is an error.
        """
        limit = self.config.model.max_positions - 1  # each side gains one token: EOS or BOS
        self.data.train, long_train = filter_long(self.data.train, limit)
        self.data.dev, long_dev = filter_long(self.data.dev, limit)
        if long_train or long_dev:
            self.log(f"data: dropped {long_train} training and {long_dev} validation pairs "
                     f"longer than model.max_positions - 1 = {limit} tokens")
        if not self.data.train.src:
            raise Seq2SeqError(f"no training pairs left: all are longer than data.max_len="
                               f"{self.config.data.max_len} tokens or model.max_positions - 1 = "
                               f"{limit}; raise them or check the training files")

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.world.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids)
        if self.cfg.compile:
            module = torch.compile(module, dynamic=True)
        return module

    def log(self, message: str) -> None:
        if self.world.is_main:
            tqdm.write(message)

    # ---- checkpoints -------------------------------------------------------------------

    def checkpoint(self, metrics: dict, with_train_state: bool) -> dict:
        state = {"config": self.config.to_dict(), "model": self.model.state_dict(),
                 "tokenizers": {"src": self.src_tok.model_bytes, "tgt": self.tgt_tok.model_bytes},
                 "step": self.state.step, "epoch": self.state.epoch, "metrics": metrics}
        if with_train_state:  # a collective under DDP: every rank calls this
            rng = dist.gather_objects(self.world, rng_state())  # every rank's, for exact resume
            state["train_state"] = {"optimizer": self.optimizer.state_dict(),
                                    "scaler": self.scaler.state_dict(),
                                    "progress": asdict(self.state), "rng": rng,
                                    "world_size": self.world.size}
        return state

    def _resume(self) -> None:
        path = self.run.path / "last.pt"
        saved = load_checkpoint(path, map_location=self.device)
        changes = model_shape_changes(saved["config"], self.config.to_dict())
        if changes:
            raise Seq2SeqError(f"--resume: the model config changed since {path} was written "
                               f"({'; '.join(changes)}); restore it or train into a new run_dir")
        if saved["tokenizers"]["src"] != self.src_tok.model_bytes:
            raise Seq2SeqError(f"--resume: the tokenizer in {self.run.path} differs from the "
                               f"one {path} was trained with")
        if "train_state" not in saved:
            raise Seq2SeqError(f"--resume: {path} holds no training state")
        ts = saved["train_state"]
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(ts["optimizer"])
        self.scaler.load_state_dict(ts["scaler"])
        self.state = TrainState(**ts["progress"])
        if ts["world_size"] == self.world.size:
            set_rng_state(ts["rng"][self.world.rank])
        else:
            torch.manual_seed(self.cfg.seed + 1000 * self.state.step + self.world.rank)
        self.run.trim_metrics(self.state.step)
        self.log(f"resumed from {path} at step {self.state.step}, epoch {self.state.epoch}")

    # ---- one optimizer step ------------------------------------------------------------

    def train_step(self, micro: list[Batch]) -> tuple[Tensor, Tensor, int]:
        """Forward/backward over the micro-batches of one step, then clip and update.

        The loss is normalised by the step's target tokens summed over all processes,
        so N processes with batch B train like one process with batch N x B.
        When the loss or the gradient norm is not finite the update is skipped, on the
        device: nothing in a step waits for the device to finish it.
        Returns (summed nll on this rank, 1.0 if the update was skipped else 0.0, both
        0-d tensors on the device; target tokens on this rank).
        """
        tokens = sum(b.n_tokens for b in micro)
        scale = self.world.size / dist.sum_tensor(self.world, tokens, self.device)
        nll_sum = torch.zeros((), device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        for i, b in enumerate(micro):
            sync = not self.world.active or i == len(micro) - 1
            no_sync = contextlib.nullcontext() if sync else self.loss_module.no_sync()
            with no_sync:
                with autocast(self.device, self.cfg.precision):
                    loss, nll = self.loss_module(b.src, b.tgt_in, b.tgt_out, b.src_mask,
                                                 b.tgt_mask, b.n_tokens)
                self.scaler.scale(loss * scale).backward()
            loss_sum += loss.detach()
            nll_sum += nll
        self.scaler.unscale_(self.optimizer)
        norm = (nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
                if self.cfg.clip_norm > 0 else torch.zeros((), device=self.device))
        # Under fp16 the scaler skips steps with non-finite gradients itself (and lowers
        # its scale): there only a non-finite loss counts as a skipped step.
        finite = torch.isfinite(loss_sum) & (torch.isfinite(norm) | self.scaler.is_enabled())
        # Ranks skip together: with clip_norm 0 a rank's own loss is all it would look at.
        skipped = dist.max_tensor_(self.world, (~finite).float())
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.state.step + 1)
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
        else:
            step_unless(self.optimizer, skipped)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return nll_sum, skipped, tokens

    def epoch_steps(self) -> list[list[list[int]]]:
        """This epoch's optimizer steps on this rank, each a list of micro-batches (indices)."""
        train = self.data.train
        batches = token_batches([len(s) for s in train.src], [len(t) for t in train.tgt],
                                self.cfg.batch_tokens, self.cfg.seed, self.state.epoch)
        mine = shard(batches, self.world.rank, self.world.size)
        acc = self.cfg.accumulate
        steps = [mine[i : i + acc] for i in range(0, len(mine), acc)]
        self.epoch_len = len(steps)
        return steps

    def learning_rate(self, step: int) -> float:
        return learning_rate(step, self.cfg.lr, self.cfg.warmup, self.cfg.schedule, self.done)

    def make_batch(self, indices: list[int]) -> Batch:
        train, tok = self.data.train, self.tgt_tok
        batch = make_batch([train.src[i] for i in indices], [train.tgt[i] for i in indices],
                           tok.pad_id, tok.bos_id, tok.eos_id)
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch

    # ---- the loop ----------------------------------------------------------------------

    def fit(self) -> Path:
        """Train until a limit, the time budget, early stopping or a signal."""
        stopper = SignalFlag()
        budget = parse_duration(self.cfg.max_time)
        start = time.perf_counter() - self.state.elapsed
        bar = tqdm(total=self.cfg.max_steps or None, initial=self.state.step,
                   disable=not self.progress, unit="step", dynamic_ncols=True)
        window = LossWindow(self.state.step)
        reason = self._stop_reason(budget, stopper)  # a resumed run may be at its limit already
        with stopper:
            while reason is None:
                steps = self.epoch_steps()
                if not steps:  # e.g. fewer batches than processes: an epoch would be empty
                    raise Seq2SeqError(
                        f"an epoch has no batches for {self.world.size} process(es); lower "
                        "train.batch_tokens or use fewer processes")
                for micro in steps[self.state.steps_in_epoch :]:
                    nll, skipped, tokens = self.train_step([self.make_batch(i) for i in micro])
                    self.state.steps_in_epoch += 1
                    self.state.step += 1
                    self.state.elapsed = time.perf_counter() - start
                    self.skipped.add(skipped)
                    window.add(nll, skipped, tokens)
                    bar.update(1)
                    if self.state.step % self.cfg.log_every == 0:
                        self._log_train(window, bar)
                    if self.state.step % self.cfg.eval_every == 0:
                        self._validate(start)
                    reason = self._stop_reason(budget, stopper)
                    if reason:
                        break
                else:
                    self.state.epoch += 1
                    self.state.steps_in_epoch = 0
                    reason = self._stop_reason(budget, stopper)
        bar.close()
        return self._finish(reason, start)

    def _count_skipped(self) -> None:
        """Learn of the updates skipped since the last look (a host sync: only where the
        loop waits anyway) and stop once train.max_nonfinite came in a row."""
        new, in_row, most = self.skipped.read()
        s = self.state
        s.nonfinite_total += new
        s.nonfinite_in_row = in_row
        if new:
            self.log(f"step {s.step}: {new} update(s) skipped for a non-finite loss since the "
                     f"last report ({in_row} in a row now, {s.nonfinite_total} in all)")
        if most >= self.cfg.max_nonfinite:
            raise Seq2SeqError(
                f"the loss was not finite for {most} steps in a row by step {s.step}; "
                "lower train.lr, raise train.warmup, or use fp32")

    def _stop_reason(self, budget: float, stopper: "SignalFlag") -> str | None:
        signalled = dist.all_sum(self.world, [float(stopper.raised)])[0] > 0
        reason = "signal" if signalled else limit_reached(self.state, self.cfg, budget)
        done = fraction_done(self.state, self.cfg, self.epoch_len, budget)
        # Rank 0's clock decides for every rank, so learning rates stay identical under DDP.
        reason, self.done = dist.broadcast_object(self.world, (reason, done))
        return reason

    def _log_train(self, window: LossWindow, bar: tqdm) -> None:
        self._count_skipped()
        row = window.flush(self.state.step, self.state.elapsed,
                           self.learning_rate(self.state.step), self.world)
        row["epoch"] = self.state.epoch
        loss = f"{row['train_loss']:.3f}" if "train_loss" in row else "-"
        bar.set_postfix(loss=loss, lr=f"{row['lr']:.2e}", tok_s=f"{row['tokens_per_s']:.0f}")
        self.run.append_metrics(row)

    def _validate(self, start: float) -> dict:
        t0 = time.perf_counter()
        metrics = {}
        if self.world.is_main:
            metrics = validate(self.model, self.data.dev, self.data.dev_text, self.src_tok,
                               self.tgt_tok, self.config, self.device)
            self._record_best(metrics)
        self.state.eval_seconds += time.perf_counter() - t0
        self.state.elapsed = time.perf_counter() - start
        self._save_last(metrics)
        if self.world.is_main:
            best_bleu, best_step = self.state.best[0]
            self.log(f"step {self.state.step} | val loss {metrics['val_loss']:.3f} "
                     f"ppl {metrics['val_ppl']:.2f} | BLEU {metrics['bleu']:.2f} "
                     f"chrF {metrics['chrf']:.2f} | best BLEU {best_bleu:.2f} @ {best_step}")
            self.run.append_metrics({"step": self.state.step, "elapsed": self.state.elapsed,
                                     **metrics})
        self.state.bad_evals = dist.broadcast_object(self.world, self.state.bad_evals)
        return metrics

    def _record_best(self, metrics: dict) -> None:
        """Keep the best-K checkpoints by validation BLEU; best.pt is the top one."""
        s, k = self.state, self.cfg.keep_best
        improved = not s.best or metrics["bleu"] > s.best[0][0]
        s.bad_evals = 0 if improved else s.bad_evals + 1
        if len(s.best) >= k and metrics["bleu"] <= s.best[-1][0]:
            return
        state = self.checkpoint(metrics, with_train_state=False)
        if improved:
            self.run.save("best.pt", state)
        if k > 1:
            self.run.save(f"best-step{s.step}.pt", state)
        s.best = sorted(s.best + [[metrics["bleu"], s.step]], key=lambda b: (-b[0], b[1]))
        for _, step in s.best[k:]:
            self.run.remove(f"best-step{step}.pt")
        s.best = s.best[:k]

    def _save_last(self, metrics: dict) -> None:
        self._count_skipped()  # the checkpoint's counts must be current
        state = self.checkpoint(metrics, with_train_state=True)  # collective under DDP
        if self.world.is_main:
            self.run.save("last.pt", state)

    def _finish(self, reason: str, start: float) -> Path:
        if reason == "signal":
            self._save_last({})
            raise Interrupted(f"interrupted at step {self.state.step}; {self.run.path}/last.pt "
                              f"saved; continue with: seq2seq train CONFIG --resume")
        if self.state.step and self.state.step % self.cfg.eval_every != 0:
            self._validate(start)
        s = self.state
        self.log(f"stopped: {reason}; {s.step} steps, {s.train_seconds:.0f}s training + "
                 f"{s.eval_seconds:.0f}s validation; checkpoints in {self.run.path}")
        if self.cfg.average_best and self.world.is_main:
            self._average_best()
        return self.run.path

    def _average_best(self) -> None:
        """Write averaged.pt from the best-K checkpoints and report its validation BLEU."""
        best = self.state.best[: self.cfg.average_best]
        paths = [p for _, step in best if (p := self.run.path / f"best-step{step}.pt").is_file()]
        if len(paths) < 2:
            self.log("average_best: fewer than 2 best checkpoints; averaged.pt not written")
            return
        state = average_checkpoints(paths)
        state["metrics"] = validate_weights(state["model"], self.model, self.data, self.src_tok,
                                            self.tgt_tok, self.config, self.device)
        self.run.save("averaged.pt", state)
        bleu = state["metrics"]["bleu"]
        self.log(f"averaged.pt from {len(paths)} checkpoints: BLEU {bleu:.2f} "
                 f"(best single: {best[0][0]:.2f} @ step {best[0][1]})")
        self.run.append_metrics({"step": self.state.step, "averaged": len(paths),
                                 **state["metrics"]})


def train(config: Config, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> Path:
    """Train the model a config describes; returns the run directory."""
    trainer, finished = None, False
    try:
        trainer = Trainer(config, resume, overwrite, progress)
        run_dir = trainer.fit()
        finished = True
        return run_dir
    finally:
        if trainer is not None:
            dist.close_world(trainer.world, finished)
