"""The few plain modules an extracted sub-network needs beyond ``torch.nn``.

An extracted model is an ``nn.Sequential`` of standard layers (``Conv2d``,
``BatchNorm2d``, activations, ``Linear``) plus these few modules. They hold no
elastic state and no reference to a supernet, script with TorchScript, and export to
ONNX as ordinary graphs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ClassToken",
    "EncoderBlock",
    "LayerNorm2d",
    "PatchEmbed",
    "Residual",
    "SqueezeExcite",
]


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


class PatchEmbed(nn.Module):
    """Vision-transformer input: patches by a strided conv, a class token, positions.

    Example:
        >>> embed = PatchEmbed(nn.Conv2d(3, 8, 4, stride=4), torch.zeros(1, 1, 8),
        ...                    torch.zeros(1, 5, 8))
        >>> embed(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, proj: nn.Conv2d, cls_token: torch.Tensor, pos_embed: torch.Tensor) -> None:
        super().__init__()
        self.proj = proj
        self.cls_token = nn.Parameter(cls_token.detach().clone())
        self.pos_embed = nn.Parameter(pos_embed.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block with ``heads`` heads of ``head_dim`` each.

    ``x + proj(attention(norm1(x)))``, then ``x + fc2(gelu(fc1(norm2(x))))``. The
    attention width ``heads * head_dim`` need not equal the embedding width, which is
    why this is not ``nn.TransformerEncoderLayer``.
    """

    def __init__(
        self,
        norm1: nn.LayerNorm,
        qkv: nn.Linear,
        proj: nn.Linear,
        norm2: nn.LayerNorm,
        fc1: nn.Linear,
        fc2: nn.Linear,
        heads: int,
        head_dim: int,
    ) -> None:
        super().__init__()
        self.norm1, self.qkv, self.proj = norm1, qkv, proj
        self.norm2, self.fc1, self.fc2 = norm2, fc1, fc2
        self.heads = heads
        self.head_dim = head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, tokens, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attention = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attention.transpose(1, 2).reshape(batch, tokens, -1))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ClassToken(nn.Module):
    """The class token of a token sequence: ``x[:, 0]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of an ``(N, C, H, W)`` map (as in ConvNeXt).

    Example:
        >>> LayerNorm2d(4)(torch.randn(1, 4, 3, 3)).shape
        torch.Size([1, 4, 3, 3])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
