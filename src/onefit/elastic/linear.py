"""Linear layer over a prefix of its input and output features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from onefit.errors import UserError
from onefit.static import layer_with


class ElasticLinear(nn.Linear):
    """``nn.Linear`` that reads however many leading input features it receives.

    The output width can shrink too (``out_features`` argument), though a classifier
    normally keeps all of its classes.

    Example:
        >>> fc = ElasticLinear(64, 10)
        >>> fc(torch.randn(3, 40)).shape
        torch.Size([3, 10])
    """

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear) -> ElasticLinear:
        """An elastic copy of ``linear`` with the same weights."""
        elastic = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        elastic.load_state_dict(linear.state_dict())
        return elastic

    def forward(self, x: torch.Tensor, out_features: int | None = None) -> torch.Tensor:
        weight, bias = self.active_weight(x.shape[-1], out_features or self.out_features)
        return F.linear(x, weight, bias)

    def active_weight(
        self, in_features: int, out_features: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if in_features > self.in_features:
            raise UserError(f"ElasticLinear holds {self.in_features} inputs, got {in_features}")
        bias = None if self.bias is None else self.bias[:out_features]
        return self.weight[:out_features, :in_features], bias

    @torch.no_grad()
    def to_static(self, in_features: int, out_features: int | None = None) -> nn.Linear:
        """A plain ``nn.Linear`` with a copy of the active weights."""
        weight, bias = self.active_weight(in_features, out_features or self.out_features)
        return layer_with(
            nn.Linear,
            weight.shape[1],
            weight.shape[0],
            bias=bias is not None,
            tensors={"weight": weight, "bias": bias},
        )
