"""Squeeze-and-excitation over a prefix of its channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from onefit.elastic.channels import importance_order, make_divisible, permute_
from onefit.elastic.conv import ElasticConv2d
from onefit.static import SqueezeExcite


class ElasticSqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-excite whose width follows its input's channel count.

    For ``c`` active channels the hidden width is ``make_divisible(c // reduction, 8)``,
    the rule Once-for-All uses, so sub-networks match the published MAC counts.

    Example:
        >>> se = ElasticSqueezeExcite(96)
        >>> se(torch.randn(1, 72, 7, 7)).shape
        torch.Size([1, 72, 7, 7])
    """

    def __init__(self, max_channels: int, reduction: int = 4, divisor: int = 8) -> None:
        super().__init__()
        self.reduction = reduction
        self.divisor = divisor
        hidden = self.hidden_channels(max_channels)
        self.reduce = ElasticConv2d(max_channels, hidden, 1, bias=True)
        self.expand = ElasticConv2d(hidden, max_channels, 1, bias=True)

    def hidden_channels(self, channels: int) -> int:
        return make_divisible(channels // self.reduction, self.divisor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = F.relu(self.reduce(scale, out_channels=self.hidden_channels(channels)))
        return x * F.hardsigmoid(self.expand(scale, out_channels=channels))

    @torch.no_grad()
    def to_static(self, channels: int) -> SqueezeExcite:
        hidden = self.hidden_channels(channels)
        se = SqueezeExcite(channels, hidden, device="meta")  # both convs replaced below
        se.reduce = self.reduce.to_static(channels, hidden)
        se.expand = self.expand.to_static(hidden, channels)
        return se

    @torch.no_grad()
    def permute_channels(self, order: torch.Tensor) -> None:
        """Reorder the excited channels (the block's hidden channels) by ``order``."""
        permute_([(self.reduce.weight, 1), (self.expand.weight, 0), (self.expand.bias, 0)], order)

    @torch.no_grad()
    def sort_hidden(self) -> None:
        """Sort the SE's own hidden units by importance (L1 of the expand weights)."""
        order = importance_order(self.expand.weight, channel_dim=1)
        permute_([(self.reduce.weight, 0), (self.reduce.bias, 0), (self.expand.weight, 1)], order)
