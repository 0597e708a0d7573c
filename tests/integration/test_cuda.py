"""The GPU path: a CUDA training step equal to the CPU's, bf16 and fp16 training that learns,
the whole loop on CUDA (batches built ahead in pinned memory, a NaN skipped on the device),
cached decoding equal to the CPU's, and NCCL in one process (two where two GPUs exist).

Every test here is marked `cuda` and is skipped, with the reason, where torch sees no GPU;
scripts/gpu_check.sh runs them on a GPU machine (`pytest -m cuda`).

Tolerances: one fp32 step on CUDA gives the CPU's summed loss within 1e-5 relative and
weights within 1e-5 absolute. The step uses adam_eps 1e-3 so that AdamW's first update,
lr * g / (|g| + eps), is a smooth function of the gradient (with eps 1e-9 it is lr * sign(g),
which rounding can flip for a gradient near zero): weights then differ by no more than the
gradients do.
"""

import dataclasses
import os
import socket

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import TrainConfig, load_config
from seq2seq.data import make_batch
from seq2seq.search import beam_search, greedy_search
from seq2seq.training.distributed import World, close_world, init_world
from seq2seq.training.feed import Feed
from seq2seq.training.loop import fit, setup, train
from seq2seq.training.run_dir import RunDir
from seq2seq.training.step import build_step
from tests.conftest import BOS, EOS, PAD, random_ids, tiny_config_yaml, tiny_model, write_slice
from tests.integration.test_reliability import nan_loss_on

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device here (torch.cuda.is_available() is false); scripts/gpu_check.sh "
           "runs these on a GPU")]

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)
SETTINGS = TrainConfig(lr=1e-3, warmup=0, adam_eps=1e-3, label_smoothing=0.1, clip_norm=1.0,
                       max_steps=1)


def a_batch(seed: int = 0):
    """Eight random pairs of 5 to 12 tokens (no BOS/EOS)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, 13, (2, 8), generator=g).tolist()
    src = [random_ids(1, n, seed=seed + i)[0].tolist() for i, n in enumerate(lengths[0])]
    tgt = [random_ids(1, n, seed=seed + 50 + i)[0].tolist() for i, n in enumerate(lengths[1])]
    return make_batch(src, tgt, PAD, BOS, EOS)


def one_step(device: torch.device, settings: TrainConfig = SETTINGS, world=None):
    """(summed nll, weights after) of one training step of the tiny model on `device`."""
    model = tiny_model(dropout=0.0).train().to(device)
    step = build_step(model, settings, world or World(), device)
    nll, _, _ = step.step([a_batch().to(device)], settings.lr)
    return float(nll), {k: v.detach().cpu() for k, v in model.state_dict().items()}


def test_a_training_step_on_cuda_matches_the_cpu_step():
    cpu_nll, cpu_weights = one_step(CPU)
    cuda_nll, cuda_weights = one_step(CUDA)
    assert cuda_nll == pytest.approx(cpu_nll, rel=1e-5)
    for key, value in cpu_weights.items():
        torch.testing.assert_close(cuda_weights[key], value, rtol=0, atol=1e-5, msg=key)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_runs_and_the_loss_falls(precision):
    settings = dataclasses.replace(SETTINGS, precision=precision, lr=3e-3, adam_eps=1e-9)
    model = tiny_model(dropout=0.0).train().to(CUDA)
    step = build_step(model, settings, World(), CUDA)
    batch = a_batch().to(CUDA)
    losses, skipped = [], 0.0
    for _ in range(60):
        nll, flag, tokens = step.step([batch], settings.lr)
        losses.append(float(nll) / tokens)
        skipped += float(flag)
    assert all(loss == loss for loss in losses), losses  # no NaN
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
    assert skipped == 0  # fp16 overflows are the scaler's to skip, not counted as bad steps
    if precision == "fp16":
        assert step.scaler.is_enabled() and step.scaler.get_scale() > 0


def test_cached_decoding_on_cuda_equals_the_cpu_output():
    model = tiny_model()
    src = random_ids(6, 9, seed=3)
    src[4, 6:] = PAD  # a shorter sentence, padded
    mask = (src != PAD).view(6, 1, 1, 9)
    limits = torch.full((6,), 15)
    outputs = {}
    for device in (CPU, CUDA):
        m, s, k, n = model.to(device), src.to(device), mask.to(device), limits.to(device)
        outputs[device.type] = (greedy_search(m, s, k, BOS, EOS, n),
                                beam_search(m, s, k, BOS, EOS, n, beam_size=4))
    for cpu, cuda in zip(outputs["cpu"], outputs["cuda"], strict=True):
        assert cuda.tokens == cpu.tokens
        assert cuda.scores == pytest.approx(cpu.scores, abs=1e-4)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_the_training_loop_on_cuda_builds_batches_ahead_and_skips_a_nan_on_the_device(
        precision, tmp_path, monkeypatch):
    """The whole loop on CUDA: batches built ahead in pinned memory, a non-finite loss on
    the third update skipped on the device and counted, checkpoints written."""
    threads, build = [], Feed._build
    monkeypatch.setattr(Feed, "_build", lambda feed: (threads.append(feed.pin), build(feed)))
    nan_loss_on(monkeypatch, lambda call: call == 3)
    data = write_slice(tmp_path, n_train=100, n_dev=8)
    config = load_config(tiny_config_yaml(tmp_path, data, max_steps=6, eval_every=3,
                                          log_every=1, max_nonfinite=3),
                         ["train.device=cuda", f"train.precision={precision}"])
    last = load_checkpoint(train(config, progress=False) / "last.pt")
    progress = last["train_state"]["progress"]
    assert last["step"] == 6 and threads and all(threads)  # built ahead, pinned
    assert progress["nonfinite_total"] == 1
    assert all(torch.isfinite(w).all() for w in last["model"].values())


class OneRank(World):
    """A world of one process that still takes the distributed code paths (DDP, NCCL
    all-reduces), which World(size=1) skips."""

    @property
    def active(self) -> bool:
        return True


def test_a_one_process_nccl_group_trains_like_no_group(tmp_path):
    plain_nll, plain_weights = one_step(CUDA)
    torch_dist.init_process_group("nccl", init_method=f"file://{tmp_path}/group", rank=0,
                                  world_size=1)
    try:
        world = OneRank(0, 1, 0, host_group=torch_dist.new_group(backend="gloo"))
        nll, weights = one_step(CUDA, world=world)
    finally:
        torch_dist.destroy_process_group()
    assert nll == pytest.approx(plain_nll, rel=1e-6)
    for key, value in plain_weights.items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=1e-6, msg=key)


# ---------------------------------------------------------------- two GPUs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SETS = ["train.device=cuda", "train.max_steps=3", "train.eval_every=100", "model.dropout=0.0",
        "train.threads=1"]


def rank_main(rank: int, port: int, config_path: str, run_dir: str, out: str):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    config = load_config(config_path, [*SETS, f"train.run_dir={run_dir}"])
    world = init_world(config.train.device)  # NCCL: the device is CUDA
    with RunDir(config.train.run_dir, world.is_main) as run_dir:
        run = setup(config, world, run_dir, resume=False, overwrite=False, progress=False)
        fit(run)
    torch.save({k: v.cpu() for k, v in run.model.state_dict().items()}, f"{out}/rank{rank}.pt")
    close_world(world)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="fewer than two GPUs here")
def test_two_nccl_ranks_train_like_one_process_with_accumulation(tmp_path):
    data = write_slice(tmp_path, n_train=200, n_dev=8)
    config = tiny_config_yaml(tmp_path, data, batch_tokens=200)
    single = load_config(config, [*SETS, f"train.run_dir={tmp_path / 'single'}",
                                  "train.accumulate=2"])
    with RunDir(single.train.run_dir, writer=True) as run_dir:
        run = setup(single, World(), run_dir, resume=False, overwrite=False, progress=False)
        fit(run)
    one = {k: v.cpu() for k, v in run.model.state_dict().items()}
    (tmp_path / "ddp").mkdir()
    (tmp_path / "ddp/spm.model").write_bytes((tmp_path / "single/spm.model").read_bytes())
    mp.spawn(rank_main, args=(free_port(), str(config), str(tmp_path / "ddp"), str(tmp_path)),
             nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key, value in one.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), f"ranks disagree on {key}"
        torch.testing.assert_close(ranks[0][key], value, rtol=0, atol=1e-5, msg=key)
