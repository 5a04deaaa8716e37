"""The few plain modules an extracted sub-network needs beyond ``torch.nn``.

An extracted model is an ``nn.Sequential`` of standard layers (``Conv2d``,
``BatchNorm2d``, activations, ``Linear``) plus these two containers. They hold no
elastic state and no reference to a supernet, script with TorchScript, and export to
ONNX as ordinary graphs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Residual(nn.Module):
    """``activation(body(x) + shortcut(x))``: MobileNet and ResNet residual blocks alike.

    Example:
        >>> block = Residual(nn.Conv2d(4, 4, 3, padding=1))
        >>> block(torch.zeros(1, 4, 5, 5)).shape
        torch.Size([1, 4, 5, 5])
    """

    def __init__(
        self,
        body: nn.Module,
        shortcut: nn.Module | None = None,
        activation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.activation = activation if activation is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(x) + self.shortcut(x))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation as in MobileNetV3: ``x * hardsigmoid(expand(relu(reduce(mean(x)))))``.

    Example:
        >>> se = SqueezeExcite(16, 8)
        >>> se(torch.randn(2, 16, 4, 4)).shape
        torch.Size([2, 16, 4, 4])
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = F.hardsigmoid(self.expand(F.relu(self.reduce(scale))))
        return x * scale
