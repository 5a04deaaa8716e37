"""Channel arithmetic shared by elastic ops: rounding widths and re-sorting channels."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never dropping below 90 %.

    The rounding rule of MobileNetV2/V3 and Once-for-All; onefit uses it everywhere a
    width is derived (expand ratio x channels, width multiplier x base width), because
    the published MAC counts depend on it.

    Example:
        >>> make_divisible(16 * 1.2), make_divisible(24 * 3), make_divisible(20)
        (24, 72, 24)
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@torch.no_grad()
def permute_(tensors: Iterable[tuple[torch.Tensor | None, int]], order: torch.Tensor) -> None:
    """Reorder, in place, each ``tensor`` along ``dim`` by ``order``.

    Used to sort a block's hidden channels by importance: every tensor that produces or
    consumes those channels is permuted the same way, so the block computes the same
    function while its most important channels come first (what width slicing keeps).
    """
    for tensor, dim in tensors:
        if tensor is None:
            continue
        tensor.copy_(torch.index_select(tensor, dim, order.to(tensor.device)))


def importance_order(weight: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """Channel indices sorted by the L1 norm of ``weight`` along ``channel_dim``, largest first."""
    other_dims = [d for d in range(weight.dim()) if d != channel_dim]
    importance = weight.detach().abs().sum(dim=other_dims)
    return torch.argsort(importance, descending=True, stable=True)


def batch_norm_tensors(
    bn: torch.nn.modules.batchnorm._BatchNorm,
) -> list[tuple[torch.Tensor | None, int]]:
    """The per-channel tensors of a batch-norm layer, for :func:`permute_`."""
    return [(bn.weight, 0), (bn.bias, 0), (bn.running_mean, 0), (bn.running_var, 0)]


@torch.no_grad()
def sort_mlp_(fc1: torch.nn.Linear, fc2: torch.nn.Linear) -> None:
    """Order an MLP's hidden units by the L1 norm of ``fc2``'s weights reading them."""
    order = fc2.weight.abs().sum(dim=0).argsort(descending=True)
    permute_([(fc1.weight, 0), (fc1.bias, 0), (fc2.weight, 1)], order)


def head_order(out_weight: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """Feature indices of attention heads, most important head first.

    A head's importance is the L1 norm of the output projection's columns reading it;
    the result lists each head's ``head_dim`` features in that order, for permuting the
    rows of query/key/value projections and the columns of the output projection.
    """
    per_head = out_weight.detach().abs().reshape(-1, heads, head_dim).sum(dim=(0, 2))
    order = per_head.argsort(descending=True)
    offsets = torch.arange(head_dim, device=order.device)
    return (order[:, None] * head_dim + offsets).reshape(-1)
