"""DistributedDataParallel on CPU (gloo): two ranks train like one process on the same batches.

Rank r takes batches r, r+2, r+4, ... of the epoch's global order; one step of two
ranks therefore sees global batches (2i, 2i+1), exactly what a single process with
train.accumulate=2 sees in its step i, with the same token normalisation.
"""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from seq2seq.config import load_config
from seq2seq.training.distributed import World, close_world, init_world
from seq2seq.training.loop import fit, setup
from seq2seq.training.run_dir import RunDir
from tests.conftest import tiny_config_yaml, write_slice

STEPS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def overrides(run_dir, accumulate: int) -> list[str]:
    return [f"train.run_dir={run_dir}", f"train.accumulate={accumulate}",
            f"train.max_steps={STEPS}", "train.eval_every=100", "model.dropout=0.0",
            "train.threads=1"]


def rank_main(rank: int, world: int, port: int, config_path: str, run_dir: str, out: str):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    config = load_config(config_path, overrides(run_dir, accumulate=1))
    world = init_world(config.train.device)
    with RunDir(config.train.run_dir, world.is_main) as run_dir:
        run = setup(config, world, run_dir, resume=False, overwrite=False, progress=False)
        fit(run)
    torch.save(run.model.state_dict(), f"{out}/rank{rank}.pt")
    close_world(world)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    data = write_slice(tmp, n_train=200, n_dev=8)
    config = tiny_config_yaml(tmp, data, batch_tokens=200)
    # Train the tokenizer once, so both runs share it.
    single = load_config(config, overrides(tmp / "single", accumulate=2))
    with RunDir(single.train.run_dir, writer=True) as run_dir:
        run = setup(single, World(), run_dir, resume=False, overwrite=False, progress=False)
        fit(run)
    return tmp, config, run.model.state_dict()


def test_two_gloo_ranks_match_each_other_and_one_process(corpus):
    tmp, config, single_weights = corpus
    run_dir = tmp / "ddp"
    run_dir.mkdir()
    (run_dir / "spm.model").write_bytes((tmp / "single/spm.model").read_bytes())
    mp.spawn(rank_main, args=(2, free_port(), str(config), str(run_dir), str(tmp)), nprocs=2,
             join=True)
    rank0 = torch.load(tmp / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp / "rank1.pt", weights_only=True)
    for key, value in rank0.items():
        assert torch.equal(value, rank1[key]), f"ranks disagree on {key}"
        torch.testing.assert_close(value, single_weights[key], rtol=0, atol=1e-5)
    assert (run_dir / "last.pt").is_file()  # rank 0 writes the checkpoints


def rank_resume(rank: int, world: int, port: int, config_path: str, run_dir: str, out: str,
                steps: int, resume: bool):
    """A rank training to `steps` (resuming when told), saving its weights to out."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    sets = [f"train.run_dir={run_dir}", f"train.max_steps={steps}", "train.eval_every=2",
            "model.dropout=0.1", "train.threads=1"]
    config = load_config(config_path, sets)
    world = init_world(config.train.device)
    assert world.host_group is not None  # hosts agree over a gloo group of their own
    with RunDir(config.train.run_dir, world.is_main) as run_dir:
        run = setup(config, world, run_dir, resume=resume, overwrite=False, progress=False)
        fit(run)
    torch.save(run.model.state_dict(), f"{out}/rank{rank}.pt")
    close_world(world)


def spawn_run(tmp, config, run_dir, out, steps, resume):
    mp.spawn(rank_resume, args=(2, free_port(), str(config), str(run_dir), str(out), steps,
                                resume), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_resume_under_ddp_is_exact(corpus):
    tmp, config, _ = corpus
    for name in ("straight", "split"):
        (tmp / name).mkdir()
        (tmp / name / "spm.model").write_bytes((tmp / "single/spm.model").read_bytes())
    straight = spawn_run(tmp, config, tmp / "straight", tmp / "straight", 4, resume=False)
    spawn_run(tmp, config, tmp / "split", tmp / "split", 2, resume=False)
    resumed = spawn_run(tmp, config, tmp / "split", tmp / "split", 4, resume=True)
    for rank in range(2):
        for key, value in straight[rank].items():
            assert torch.equal(value, resumed[rank][key]), f"rank {rank} differs at {key}"
