"""The processes of a run and their randomness: one process, or one rank of a torchrun launch (DDP).

`setup_distributed` joins the process group (gloo on CPU, nccl on CUDA) when WORLD_SIZE > 1; the
collectives here are no-ops for a single process, so the loop calls them unconditionally. Rank 0 decides
for everyone where one decision is needed (the time budget, the failures of the frame cache) and alone
writes. Determinism: torch's generator (dropout) is reseeded at each epoch from (seed, stage, epoch,
rank), and each rank's generator state is saved with a checkpoint, so a run resumed in the middle of an
epoch draws what the uninterrupted run drew. `weight_digest` tells whether the ranks ended in sync.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "broadcast_flag",
    "broadcast_object",
    "gather_objects",
    "rng_state",
    "seed_epoch",
    "set_rng_state",
    "setup_distributed",
    "sync_buffers",
    "weight_digest",
]

# Rank 0 may decode thousands of videos while the other ranks wait on a barrier.
PROCESS_GROUP_TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the launch and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str) -> DistInfo:
    """Join the torchrun process group if WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda, but CUDA is not available")
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=PROCESS_GROUP_TIMEOUT)
    return DistInfo(rank, world_size, local_rank, local_world, torch_device)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_sum(values: Sequence[float], info: DistInfo) -> list[float]:
    """The sums of `values` over the ranks (float64)."""
    if not info.distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_collective_device(info))
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's `flag`, on every rank."""
    tensor = torch.tensor([int(flag)], device=_collective_device(info))
    if info.distributed:
        dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def broadcast_object(value: Any, info: DistInfo) -> Any:
    """Rank 0's `value` (any picklable object), on every rank."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=_collective_device(info))
    return box[0]


def gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if not info.distributed:
        return [value]
    boxes: list[Any] = [None] * info.world_size
    dist.all_gather_object(boxes, value)
    return boxes


def sync_buffers(model: nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's BatchNorm statistics.

    DDP broadcasts buffers at the start of each forward, so after an epoch's last step each rank still
    holds the statistics updated by its own last batch; this makes them (and the checkpoint) equal.
    """
    if info.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def _collective_device(info: DistInfo) -> torch.device:
    return info.device if info.device.type == "cuda" else torch.device("cpu")


def rng_state() -> dict[str, Any]:
    """This process's torch generator states (CPU, and CUDA once initialised)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def seed_epoch(seed: int, stage: int, epoch: int, rank: int) -> None:
    """Reseed torch (dropout) and the host RNGs for one epoch of one rank."""
    value = int(np.random.SeedSequence([seed, stage, epoch, rank]).generate_state(1)[0])
    torch.manual_seed(value)
    random.seed(value)
    np.random.seed(value)


def weight_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, shapes and bytes): equal iff the weights are."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()
