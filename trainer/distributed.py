"""Data-parallel training across processes started by torchrun (DistributedDataParallel).

``torchrun --nproc_per_node=N train.py ...`` starts N copies of train.py and tells each, through
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, who it is and where to meet. Every rank
trains a replica on its own shard of each batch; DDP averages the gradients, so the replicas stay
identical. NCCL is used when CUDA is available (one GPU per local rank), gloo on the CPU.

Every collective has a timeout, so a rank whose peer died or stalled fails instead of waiting
forever. A clean shutdown is a barrier, then destroy_process_group: without the barrier, about one
gloo run in 15 on these machines aborted at interpreter exit (SIGABRT) after both ranks had
finished; with it, no rank tears the group down while a peer may still be using it.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from types import TracebackType
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from utils.errors import UserError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT = timedelta(seconds=60)
# Rank 0 may spend minutes building the feature cache while the others wait for it.
SETUP_TIMEOUT = timedelta(minutes=30)
T = TypeVar("T")


def per_rank_batch_size(global_batch_size: int, world_size: int) -> int:
    """The config's batch_size is the global batch (what one optimizer step sees), so a run has
    the same recipe with any number of processes; each rank takes an equal part of it."""
    if global_batch_size % world_size:
        raise UserError(f"batch_size {global_batch_size} is the global batch and must divide evenly over "
                        f"the {world_size} processes; use a multiple of {world_size} (--bs) or another "
                        f"--nproc_per_node")
    return global_batch_size // world_size


class EvenBatches:
    """A rank's shard of a sharded InMemoryLoader, cut to the number of batches every rank has.

    Shards of a split that does not divide evenly differ by one sample; when the smaller shard
    fills whole batches, the larger ones get one more batch of a single sample. A rank stepping
    alone would wait forever in its gradient all-reduce, so that batch is left out: at most
    world_size - 1 samples of an epoch, and which ones changes with the epoch's shuffle.
    """

    def __init__(self, loader) -> None:
        self.loader = loader
        smallest_shard = len(loader.labels) // loader.world_size
        self.count = -(-smallest_shard // loader.batch_size)

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.count)


class DistributedContext:
    """One rank of a process group; a context manager that shuts the group down cleanly."""

    def __init__(self, rank, world_size, local_rank, timeout=TIMEOUT) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.backend = "nccl" if torch.cuda.is_available() else "gloo"
        if self.backend == "nccl":
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        dist.init_process_group(self.backend, init_method="env://", rank=rank, world_size=world_size,
                                timeout=timeout, device_id=self.device if self.backend == "nccl" else None)

    @staticmethod
    def started_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
        return "WORLD_SIZE" in (os.environ if environ is None else environ)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None,
                         timeout: timedelta = TIMEOUT) -> DistributedContext | None:
        """The context torchrun describes in the environment, or None for a plain single process."""
        environ = os.environ if environ is None else environ
        if not cls.started_by_torchrun(environ):
            return None
        missing = [k for k in TORCHRUN_VARIABLES if k not in environ]
        if missing:
            raise UserError(f"WORLD_SIZE is set but {', '.join(missing)} are not; start distributed "
                            f"training with torchrun --nproc_per_node=N train.py ...")
        try:
            rank, world, local = (int(environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        except ValueError:
            raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; start distributed "
                            "training with torchrun --nproc_per_node=N train.py ...") from None
        return cls(rank, world, local, timeout)

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and tensorboard events."""
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> DistributedDataParallel:
        """DDP copies rank 0's weights and buffers to every rank, then averages gradients over
        the ranks during backward. Buffers are not re-broadcast every step: the only ones are the
        pruning masks, which training never changes."""
        device_ids = [self.local_rank] if self.backend == "nccl" else None
        return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over all ranks (returned on the tensor's own device)."""
        reduced = tensor.to(self.device, copy=True)
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced.to(tensor.device)

    def broadcast_from_main(self, value: T) -> T:
        """Rank 0's ``value`` (any picklable object) on every rank, e.g. the run folder's name."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self, timeout: timedelta | None = None) -> None:
        dist.barrier(timeout=timeout)

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. builds the feature cache); the others wait, then run
        it and find the work done, so no two ranks write the same file at once."""
        if not self.is_main:
            self.barrier(SETUP_TIMEOUT)
        yield
        if self.is_main:
            self.barrier(SETUP_TIMEOUT)

    def close(self) -> None:
        """Barrier, then destroy the group: every rank has left its last collective first."""
        if dist.is_initialized():
            self.barrier()
            dist.destroy_process_group()

    def __enter__(self):
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:

        if exc_type is None:
            self.close()
        elif dist.is_initialized():
            # A failing rank must not wait at a barrier its peers never reach: leave now; torchrun
            # then stops the others, or their next collective times out.
            dist.destroy_process_group()
        return False
