"""Data parallelism over ``torch.distributed`` (started by ``torchrun``).

Every process builds the same supernet from the same seed, samples the same
sub-networks (sampling is a function of the step), and trains on its share of each
global batch. After a step's sub-networks have accumulated their gradients, the
gradients are averaged across processes in one flat all-reduce, so every process takes
the same optimizer step and the weights stay identical.

Why not ``DistributedDataParallel``: its reducer hooks fire on every backward pass and
expect one fixed graph per step, while a supernet step runs several different
sub-graphs (with some parameters unused) before one optimizer step. Averaging the
accumulated gradients once per step is what DDP computes for a fixed graph, without
``find_unused_parameters`` bookkeeping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from onefit.errors import UserError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise UserError(
            f"training setting device={requested!r} must be 'auto', 'cpu', 'cuda', 'cuda:N' "
            "or 'mps'"
        ) from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(
            f"training setting device={requested!r} is not supported; use 'auto', 'cpu', "
            "'cuda', 'cuda:N' or 'mps'"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(
            f"training setting device={requested!r}: MPS (Apple GPU) is not available on "
            "this machine; use device='cpu' or 'auto'"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"training setting device={requested!r}: CUDA is not available on this "
                "machine; use device='cpu' or 'auto'"
            )
        if device.index is None:
            device = torch.device("cuda", local_rank)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(
                f"training setting device={requested!r}: this machine has {count} CUDA "
                f"device(s), cuda:0..cuda:{count - 1}"
            )
        torch.cuda.set_device(device)
    return device


def setup(requested_device: str = "auto") -> DistContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _pick_device(requested_device, local_rank)
    if world_size <= 1:
        return DistContext(0, 1, device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def broadcast_parameters(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every process (same seed should agree anyway)."""
    if not ctx.active:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def average_gradients(module: nn.Module, ctx: DistContext) -> None:
    """Average the accumulated gradients over processes with one flat all-reduce.

    Every process ran the same sub-networks, so the same parameters have gradients.
    """
    if ctx.active:
        _average_in_place([p.grad for p in module.parameters() if p.grad is not None], ctx)


@torch.no_grad()
def average_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Average floating-point buffers (batch-norm running statistics) over processes.

    Each process normalises its own share of the batch, so running statistics drift
    apart; averaging them after every step keeps one model (DDP instead broadcasts rank
    0's, which discards the other shards' statistics).
    """
    if ctx.active:
        _average_in_place([b for b in module.buffers() if b.is_floating_point()], ctx)


def _average_in_place(tensors: list[torch.Tensor], ctx: DistContext) -> None:
    """Replace each tensor by its mean over processes, with one flat all-reduce."""
    if not tensors:
        return
    flat = _flatten_dense_tensors(tensors)
    dist.all_reduce(flat)
    flat.div_(ctx.world_size)
    for tensor, averaged in zip(tensors, _unflatten_dense_tensors(flat, tensors)):
        tensor.copy_(averaged)


def any_true(flag: bool, ctx: DistContext) -> bool:
    """True on every process when ``flag`` is true on any (keeps processes in step)."""
    if not ctx.active:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


@torch.no_grad()
def max_divergence(module: nn.Module, ctx: DistContext) -> float:
    """Largest difference of any parameter or buffer between processes (0.0 when in sync)."""
    if not ctx.active:
        return 0.0
    tensors = [t.detach().float() for t in [*module.parameters(), *module.buffers()]]
    flat = _flatten_dense_tensors(tensors)
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).max().item())
