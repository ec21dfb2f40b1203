"""Data-parallel training under ``torchrun``: the process group, the device, the data shard.

``torchrun --standalone --nproc_per_node=2 -m edge_ad train ...`` starts one process per rank with
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT set. ``Dist.from_env()`` then joins the
process group (nccl on a CUDA device, gloo on the CPU); without those variables (or WORLD_SIZE = 1)
it is the single-process run, exactly as before: no process group, CPU, no wrapping.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class Dist:
    """This process's place in a (possibly one-process) training run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None              # "gloo" | "nccl"; None: single process
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, sample grids and logs."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Dist":
        """Join torchrun's process group when WORLD_SIZE > 1, else the single-process Dist."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available() and os.environ.get("EDGE_AD_DIST_DEVICE", "auto") != "cpu":
            backend, device = "nccl", torch.device("cuda", local)
            torch.cuda.set_device(device)
        else:
            backend, device = "gloo", torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        return cls(rank=rank, world_size=world, local_rank=local, backend=backend, device=device)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` on this process's device, in DistributedDataParallel when distributed."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP
        module = module.to(self.device)
        return DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def shard(self, n: int, epoch: int, seed: int) -> list:
        """This rank's indices of an n-item epoch (DistributedSampler: one permutation per epoch
        shared by all ranks, split without overlap, each rank the same count)."""
        from torch.utils.data import DistributedSampler
        sampler = DistributedSampler(range(n), num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                     seed=seed, drop_last=True)
        sampler.set_epoch(epoch)
        return list(sampler)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (itself when single-process)."""
        if not self.enabled:
            return value
        import torch.distributed as dist
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable), in rank order ([obj] when single-process)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` (picklable) on every rank (``obj`` itself when single-process)."""
        if not self.enabled:
            return obj
        import torch.distributed as dist
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist
            dist.barrier()

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (itself otherwise)."""
    return getattr(module, "module", module)


def state_checksum(module: torch.nn.Module, parameters_only: bool = False) -> float:
    """A float64 fingerprint of a module's parameters (and buffers): replicas in sync agree exactly.
    Under DDP only the parameters are kept in sync: each rank's last forward pass updates its own
    BatchNorm running statistics (rank 0's are the ones saved)."""
    total = 0.0
    tensors = [p for p in module.parameters()] if parameters_only else list(module.state_dict().values())
    for i, t in enumerate(tensors):
        if t.is_floating_point():
            total += float(t.detach().double().sum().item()) * (1.0 + 1e-3 * i)
    return total
