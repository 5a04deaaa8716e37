"""The elastic stand-ins that replace a converted model's layers.

In a traced graph a layer is called with its input only, so the sizes it should
produce (output width, kernel) are attributes that the supernet sets when a config is
activated, instead of forward arguments.
"""

from __future__ import annotations

import torch
from torch import nn

from onefit.convert.custom_rules import ChannelRule
from onefit.elastic import ElasticConv2d, ElasticLinear


class ActiveConv2d(ElasticConv2d):
    """:class:`~onefit.elastic.ElasticConv2d` whose output width and kernel are attributes."""

    active_out: int | None = None
    active_kernel: int | None = None

    def forward(
        self, x: torch.Tensor, out_channels: int | None = None, kernel_size: int | None = None
    ) -> torch.Tensor:
        return super().forward(
            x, out_channels or self.active_out, kernel_size or self.active_kernel
        )


class ActiveLinear(ElasticLinear):
    """:class:`~onefit.elastic.ElasticLinear` whose output width is an attribute."""

    active_out: int | None = None

    def forward(self, x: torch.Tensor, out_features: int | None = None) -> torch.Tensor:
        return super().forward(x, out_features or self.active_out)


class SlicedParameter(nn.Module):
    """A tensor the model uses directly (ConvNeXt's layer scale), as a prefix along ``dim``.

    Example:
        >>> scale = SlicedParameter(torch.ones(8, 1, 1), dim=0)
        >>> scale.active = 4
        >>> scale().shape
        torch.Size([4, 1, 1])
    """

    def __init__(self, tensor: torch.Tensor, dim: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.active: int | None = None
        if isinstance(tensor, nn.Parameter):
            self.weight = nn.Parameter(tensor.detach().clone(), requires_grad=tensor.requires_grad)
        else:
            self.register_buffer("weight", tensor.detach().clone())

    def forward(self) -> torch.Tensor:
        weight: torch.Tensor = self.weight
        return weight if self.active is None else weight.narrow(self.dim, 0, self.active)

    @torch.no_grad()
    def to_static(self, channels: int | None) -> torch.Tensor:
        """A copy of the first ``channels`` entries along ``dim`` (all for None)."""
        weight: torch.Tensor = self.weight
        sliced = weight if channels is None else weight.narrow(self.dim, 0, channels)
        if isinstance(weight, nn.Parameter):
            return nn.Parameter(sliced.clone(), requires_grad=weight.requires_grad)
        return sliced.clone()

    def extra_repr(self) -> str:
        return f"shape={tuple(self.weight.shape)}, dim={self.dim}"


class RuledLayer(nn.Module):
    """A layer of the user's own, run at a prefix of its channels as its rule slices it.

    ``layer`` keeps its weights (they are shared, not copied); ``rule`` is the
    :class:`~onefit.convert.ChannelRule` registered for its type. Its input width is
    that of the tensor it receives; ``active_out`` sets its output width (None: all).
    """

    def __init__(self, layer: nn.Module, rule: ChannelRule) -> None:
        super().__init__()
        self.layer = layer
        self.rule = rule
        self.active_out: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rule.forward(self.layer, x, self.active_out)

    def to_static(self, in_channels: int | None, out_channels: int | None) -> nn.Module:
        """The layer on its own with ``in_channels`` inputs and ``out_channels`` outputs
        (None: all), as the rule extracts it."""
        full_in, full_out = self.rule.channels(self.layer)
        return self.rule.extract(self.layer, in_channels or full_in, out_channels or full_out)

    def extra_repr(self) -> str:
        return f"rule={type(self.rule).__name__}"
