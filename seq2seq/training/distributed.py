"""PyTorch's own distributed engine, started by torchrun: process group, rank, agreement.

Single-process runs never touch torch.distributed; every helper here is a no-op then.
Numbers and objects the hosts agree on travel over a gloo group of CPU tensors of their
own (World.host_group), so agreeing never waits for a GPU to finish its queued work (over
NCCL it would).
"""

import contextlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from seq2seq.errors import Seq2SeqError


@dataclass(frozen=True)
class World:
    """This process's place in the run; host_group is the gloo group hosts agree over
    (None in a single process, which agrees with no one)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    host_group: object = field(default=None, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def init_world(device_name: str) -> World:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1).

    Backend: NCCL for CUDA devices, gloo otherwise; SEQ2SEQ_DIST_BACKEND overrides.
    Host agreement always gets a gloo group of its own, whatever the backend, so there
    is one path to test.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    uses_cuda = device_name.startswith("cuda") or (
        device_name == "auto" and torch.cuda.is_available())
    backend = os.environ.get("SEQ2SEQ_DIST_BACKEND") or ("nccl" if uses_cuda else "gloo")
    if uses_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as error:
            raise Seq2SeqError(f"could not join the process group ({backend}): {error}") from None
    return World(rank, size, local_rank, host_group=dist.new_group(backend="gloo"))


def process_device(world: World, device: torch.device) -> torch.device:
    """Each process on a CUDA machine takes the GPU of its local rank."""
    if world.active and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def all_sum(world: World, values: list[float]) -> list[float]:
    """Sum numbers over all processes (on the hosts)."""
    if not world.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, group=world.host_group)
    return t.tolist()


def sum_tensor(world: World, value: float, device: torch.device) -> float | torch.Tensor:
    """Sum a number over all processes, into a 0-d tensor on `device` that nothing waits
    for (a single process gets `value` back as it is)."""
    if not world.active:
        return value
    t = torch.full((), float(value), device=device)  # a fill, not a copy the host waits on
    dist.all_reduce(t)
    return t


def max_tensor_(world: World, t: torch.Tensor) -> torch.Tensor:
    """Replace a tensor by its elementwise maximum over all processes, in place, on the
    device (no host wait); a single process's tensor stays as it is."""
    if world.active:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def broadcast_object(world: World, obj):
    """Rank 0's object, on every rank (for decisions only rank 0 can make)."""
    if not world.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=world.host_group)
    return box[0]


def gather_objects(world: World, obj) -> list:
    """Every rank's object, in rank order, on every rank."""
    if not world.active:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj, group=world.host_group)
    return out


@contextlib.contextmanager
def main_first(world: World):
    """Run the block on rank 0 first, then on the others (e.g. to create shared files)."""
    if world.active and not world.is_main:
        dist.barrier()
    yield
    if world.active and world.is_main:
        dist.barrier()


def close_world(world: World, finished: bool = True) -> None:
    """Leave the process group. After a finished run every rank first waits for the
    others, so none tears its connections down while another is still writing or in a
    collective; after an error it leaves at once (the others may never arrive)."""
    if world.active and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()  # every group, the host group too
