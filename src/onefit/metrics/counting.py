"""Counting multiply-accumulates (MACs) and parameters.

Convention (the one Once-for-All and DyNAS-T publish): MACs are the multiply-
accumulates of convolutions, linear layers and matrix products, for one input (batch
size 1). Bias additions, batch norm, activations, pooling and element-wise products
are not counted. Parameters are all learnable tensors (batch-norm running statistics
are buffers, not parameters).

Two independent routes give these numbers: the analytic formulas below, which each
supernet sums over a config without building anything, and :func:`count`, which runs
any ``nn.Module`` once under ``torch.utils.flop_counter.FlopCounterMode``. The test
suite checks that they agree exactly on every extracted sub-network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


@dataclass(frozen=True)
class Cost:
    """MACs and parameter count of a model or a part of one."""

    macs: int = 0
    params: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.params + other.params)


def conv_output_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel conv (or ceil-mode pool) with ``stride``."""
    return (size - 1) // stride + 1


def conv_cost(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    out_size: int,
    *,
    groups: int = 1,
    bias: bool = False,
    batch_norm: bool = False,
) -> Cost:
    """A square conv producing an ``out_size`` x ``out_size`` map, optionally followed by BN."""
    weights = out_channels * (in_channels // groups) * kernel_size * kernel_size
    params = weights + (out_channels if bias else 0) + (2 * out_channels if batch_norm else 0)
    return Cost(macs=weights * out_size * out_size, params=params)


def linear_cost(in_features: int, out_features: int, *, bias: bool = True) -> Cost:
    return Cost(
        macs=in_features * out_features,
        params=in_features * out_features + (out_features if bias else 0),
    )


def per_token(cost: Cost, tokens: int) -> Cost:
    """A per-token layer (linear) applied to ``tokens`` tokens: MACs scale, params do not."""
    return Cost(macs=cost.macs * tokens, params=cost.params)


def encoder_layer_cost(width: int, heads: int, head_dim: int, hidden: int, tokens: int) -> Cost:
    """A transformer encoder layer (ViT's pre-norm or BERT's post-norm alike): two layer
    norms, q/k/v and output projections, attention over ``tokens``, a 2-layer MLP."""
    inner = heads * head_dim
    total = Cost(macs=0, params=4 * width)  # two LayerNorms
    total += per_token(linear_cost(width, 3 * inner), tokens)  # q, k and v
    # Scores q k^T and their product with v: two (tokens x tokens) products per head.
    total += Cost(macs=2 * heads * tokens * tokens * head_dim, params=0)
    total += per_token(linear_cost(inner, width), tokens)
    total += per_token(linear_cost(width, hidden), tokens)
    return total + per_token(linear_cost(hidden, width), tokens)


def _cpu_flash_attention_flops(
    query_shape: Sequence[int],
    key_shape: Sequence[int],
    value_shape: Sequence[int],
    *_: Any,
    **__: Any,
) -> int:
    return int(sdpa_flop_count(query_shape, key_shape, value_shape))


# Attention kernels FlopCounterMode has no formula for (torch 2.x counts the CUDA ones).
_EXTRA_FORMULAS = {
    op: _cpu_flash_attention_flops
    for op in [getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)]
    if op is not None
}


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts the CPU attention kernels."""
    return FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)


@torch.no_grad()
def count(
    model: nn.Module, input_shape: Sequence[int], *, dtype: torch.dtype | None = None
) -> Cost:
    """Measure MACs (one forward pass of a single input) and parameters of any module.

    ``input_shape`` excludes the batch dimension, e.g. ``(3, 224, 224)``; ``dtype`` is
    the input's (default: the model's floating type; ``torch.long`` for token ids). Meant for
    static models: on a supernet it would also count the kernel-transform products of
    its elastic layers (use ``supernet.cost`` there). Every submodule's train/eval mode
    is restored afterwards.

    Example:
        >>> count(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 16, 2)),
        ...       (3, 4, 4))
        Cost(macs=3712, params=482)
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if dtype is None:
        floating = param is not None and param.is_floating_point()
        dtype = param.dtype if param is not None and floating else torch.float32
    x = torch.zeros(1, *input_shape, device=device, dtype=dtype)
    modes = {module: module.training for module in model.modules()}
    # nn.MultiheadAttention's fused inference kernel is invisible to FlopCounterMode;
    # the regular path computes the same result through countable ops.
    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha is not None else None
    model.eval()
    if mha is not None:
        mha.set_fastpath_enabled(False)
    try:
        with flop_counter() as counter:
            model(x)
    finally:
        for module, training in modes.items():
            module.training = training
        if mha is not None:
            mha.set_fastpath_enabled(fastpath)
    # FlopCounterMode counts a multiply-accumulate as two floating-point operations.
    macs = counter.get_total_flops() // 2
    params = sum(p.numel() for p in model.parameters())
    return Cost(macs=int(macs), params=int(params))
