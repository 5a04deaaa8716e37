"""Batch norm over a prefix of its channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that normalises however many leading channels it receives.

    Affine parameters and running statistics are sliced to the input's channel count,
    so each sub-network trains and later recalibrates its own prefix of the shared
    statistics. Subclassing ``nn.BatchNorm2d`` keeps every tool that resets or
    recalibrates batch-norm layers working on supernets too.

    Example:
        >>> bn = ElasticBatchNorm2d(16).eval()
        >>> bn(torch.randn(2, 10, 4, 4)).shape
        torch.Size([2, 10, 4, 4])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels > self.num_features:
            raise ValueError(
                f"{type(self).__name__} holds {self.num_features} channels, got {channels}"
            )
        factor = 0.0
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            # momentum=None means a cumulative average, which BN recalibration relies on.
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
        use_batch_stats = self.training or self.running_mean is None

        def part(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[:channels]

        return F.batch_norm(
            x,
            part(self.running_mean) if not self.training or self.track_running_stats else None,
            part(self.running_var) if not self.training or self.track_running_stats else None,
            part(self.weight),
            part(self.bias),
            use_batch_stats,
            factor,
            self.eps,
        )

    @torch.no_grad()
    def to_static(self, channels: int) -> nn.BatchNorm2d:
        """A plain ``nn.BatchNorm2d`` with a copy of the first ``channels`` channels."""
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum, affine=self.affine)
        if self.affine:
            bn.weight.copy_(self.weight[:channels])
            bn.bias.copy_(self.bias[:channels])
        if self.running_mean is not None and self.running_var is not None:
            bn.running_mean.copy_(self.running_mean[:channels])
            bn.running_var.copy_(self.running_var[:channels])
        if self.num_batches_tracked is not None and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn
