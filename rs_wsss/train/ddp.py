"""Multi-process training with torchrun (DistributedDataParallel over the trainable adapter/decoder).

``torchrun --nproc-per-node N -m rs_wsss_cli.main train ...`` (or ``rs-wsss train --nproc N``): gloo on CPU, nccl on
GPU. Each rank takes its slice of the global batch of a step (so N ranks see exactly the samples of a single-process
run with the same ``train.batch``), VPE prototypes are updated from all-reduced seed sums and counts (identical on
every rank), gradients are averaged by DDP, and only rank 0 writes checkpoints.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def in_group() -> bool:
    """Whether this process has joined a process group."""
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if in_group():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: str) -> tuple[int, int]:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or in_group():
        return world()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return world()


def finish() -> None:
    """Leave the process group together (no-op for a single process).

    Without this a rank that finished first exits with DDP's reducer and gloo's threads still alive, and 4 of 39
    torchrun runs aborted at interpreter teardown ("terminate called without an active exception", SIGABRT) while the
    other rank was still writing. Collecting the DDP wrapper's cycles first lets its reducer release the group.
    """
    if not in_group():
        return
    import gc

    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def rank_slice(global_batch: int) -> slice:
    """This rank's share of a step's global batch of ``global_batch`` samples (all of it for a single process).

    Raises:
        RsWsssError: the global batch does not split evenly over the processes.
    """
    from ..errors import RsWsssError

    rank, n = world()
    if global_batch % n:
        raise RsWsssError(f"train.batch={global_batch} must be a multiple of the {n} processes")
    k = global_batch // n
    return slice(rank * k, (rank + 1) * k)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over all ranks (``t`` itself for a single process)."""
    if world()[1] > 1:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def wrap(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """DDP over the trainable modules (the frozen backbones have no gradients and are not synchronised)."""
    from torch.nn.parallel import DistributedDataParallel

    if world()[1] <= 1:
        return model
    ids = [torch.device(device).index or 0] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
