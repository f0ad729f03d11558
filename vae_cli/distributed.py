"""Several processes, one run: PyTorch's own engine (torch.distributed, DistributedDataParallel),
started by torchrun. A plain `vae train` is a world of one and touches none of this.

Every rank draws the same global batch of rows and the same noise from identically seeded
generators and trains on its contiguous share; DistributedDataParallel averages the gradients.
Each rank's loss is its share's sum divided by the global batch size, times the world size, so
the averaged gradient is the gradient of the global batch mean: the same step a single process
takes with the same global batch, up to the order of floating-point sums.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch."""
        return batch.tensor_split(self.size)[self.rank] if self.distributed else batch

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor summed over all ranks (in place; a no-op in a world of one)."""
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, value):
        """Rank 0's value of a small picklable object, on every rank."""
        if not self.distributed:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device_name: str) -> World:
    """Join the process group torchrun set up in the environment (nccl on CUDA, gloo on CPU)."""
    if not launched_by_torchrun():
        return World()
    world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    uses_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if uses_cuda:
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if uses_cuda else "gloo")
    return world


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
