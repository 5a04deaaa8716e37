"""Elastic vision transformer (ViT encoder with elastic depth, heads, MLP width, embedding).

The elastic dimensions follow HAT (Wang et al., "HAT: Hardware-Aware Transformers",
ACL 2020) and InstaTune (Sridhar et al., 2023), on the ViT architecture of Dosovitskiy
et al., "An Image is Worth 16x16 Words", ICLR 2021 (pre-norm blocks, class token,
learned positions).

Search space (dimension names):
    ``w``     embedding width, shared by every layer (a prefix of the embedding)
    ``d``     number of encoder layers (the first ``d`` are kept)
    ``h.i``   attention heads of layer ``i`` (a prefix of heads, each ``head_dim`` wide)
    ``m.i``   MLP hidden width of layer ``i`` (a prefix of hidden units)
    ``r``     input resolution (a multiple of the patch size; positions are a prefix)

Sub-networks share weights as prefixes: of the embedding channels, of the heads (the
same heads of queries, keys and values) and of the MLP hidden units.
:meth:`ElasticViT.sort_channels` orders heads and hidden units by importance first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from onefit.elastic import ElasticLinear
from onefit.elastic.channels import head_order, permute_, sort_mlp_
from onefit.elastic.norm import prefix_layer_norm, static_layer_norm
from onefit.errors import UserError
from onefit.metrics.counting import Cost, conv_cost, encoder_layer_cost, linear_cost
from onefit.space import ArchConfig, SearchSpace
from onefit.static import ClassToken, EncoderBlock, PatchEmbed
from onefit.supernets.arguments import (
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_DEPTH,
    MAX_HEADS,
    MAX_IMAGE_SIZE,
    MAX_RATIO,
    MAX_WIDTH,
    check_memory,
    check_number,
)
from onefit.supernets.base import (
    Supernet,
    check_choices,
    check_positive_int,
    default_resolutions,
)
from onefit.supernets.inputs import ImageInput
from onefit.supernets.registry import register_supernet


class ElasticEncoderLayer(nn.Module):
    """A pre-norm encoder block whose heads, MLP width and input width are elastic."""

    def __init__(
        self, width: int, heads: int, head_dim: int, hidden: int, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.max_heads, self.head_dim = heads, head_dim
        self.norm1 = nn.LayerNorm(width, eps=eps)
        # Rows ordered (q|k|v, head, head_dim): a head prefix is the same for q, k and v.
        self.qkv = ElasticLinear(width, 3 * heads * head_dim)
        self.proj = ElasticLinear(heads * head_dim, width)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.fc1 = ElasticLinear(width, hidden)
        self.fc2 = ElasticLinear(hidden, width)
        self.active_heads = heads
        self.active_hidden = hidden

    def _qkv_rows(self, heads: int) -> torch.Tensor:
        inner = self.max_heads * self.head_dim
        span = torch.arange(heads * self.head_dim, device=self.qkv.weight.device)
        return torch.cat([span, span + inner, span + 2 * inner])

    def _qkv_weight(self, width: int, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._qkv_rows(heads)
        return self.qkv.weight[rows, :width], self.qkv.bias[rows]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        heads, inner = self.active_heads, self.active_heads * self.head_dim
        weight, bias = self._qkv_weight(width, heads)
        qkv = F.linear(prefix_layer_norm(self.norm1, x), weight, bias)
        q, k, v = qkv.reshape(batch, tokens, 3, heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attention = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attention.transpose(1, 2).reshape(batch, tokens, inner), width)
        hidden = self.fc1(prefix_layer_norm(self.norm2, x), self.active_hidden)
        return x + self.fc2(F.gelu(hidden), width)

    @torch.no_grad()
    def to_static(self, width: int, heads: int, hidden: int) -> EncoderBlock:
        weight, bias = self._qkv_weight(width, heads)
        qkv = nn.Linear(width, weight.shape[0])
        qkv.weight.copy_(weight)
        qkv.bias.copy_(bias)
        return EncoderBlock(
            static_layer_norm(self.norm1, width),
            qkv,
            self.proj.to_static(heads * self.head_dim, width),
            static_layer_norm(self.norm2, width),
            self.fc1.to_static(width, hidden),
            self.fc2.to_static(hidden, width),
            heads,
            self.head_dim,
        )

    def cost(self, width: int, heads: int, hidden: int, tokens: int) -> Cost:
        return encoder_layer_cost(width, heads, self.head_dim, hidden, tokens)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Order heads and MLP hidden units by the L1 norm of the weights reading them."""
        sort_mlp_(self.fc1, self.fc2)
        columns = head_order(self.proj.weight, self.max_heads, self.head_dim)
        inner = self.max_heads * self.head_dim
        rows = torch.cat([columns, columns + inner, columns + 2 * inner])  # q | k | v
        permute_([(self.qkv.weight, 0), (self.qkv.bias, 0)], rows)
        permute_([(self.proj.weight, 1)], columns)


def default_patch_size(image_size: int) -> int:
    """16 (ViT-B/16) for large images, else about a quarter of the side (a 4x4 grid of
    patches: single-pixel tokens barely train on 8x8 digits); always a divisor."""
    target = 16 if image_size >= 128 else image_size / 4
    divisors = [p for p in range(1, image_size + 1) if image_size % p == 0]
    return min(divisors, key=lambda p: (abs(p - target), p))


class ElasticViT(Supernet):
    """A ViT encoder supernet (see the module docstring).

    Args:
        num_classes, in_channels, image_size, resolutions: as for every family.
        patch_size: side of the square patches (default 16 at >= 128 pixels, else the
            divisor of ``image_size`` nearest a quarter of it).
        embed_dims, depths, num_heads, mlp_ratios: the choices; MLP hidden width is
            ``ratio * max(embed_dims)``.
        head_dim: width of one attention head (default 64 at >= 128 pixels, else 16).
        norm_eps: epsilon of the layer norms (torchvision's ViT uses 1e-6).

    Example:
        >>> net = ElasticViT(num_classes=10, image_size=32)
        >>> cfg = net.set_active(net.space.smallest())
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
        >>> from onefit.metrics import count
        >>> net.cost(cfg) == count(net.extract(cfg), (3, 32, 32))
        True
    """

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        image_size: int = 224,
        resolutions: Sequence[int] | None = None,
        patch_size: int | None = None,
        embed_dims: Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        num_heads: Sequence[int] | None = None,
        mlp_ratios: Sequence[float] = (2.0, 3.0, 4.0),
        head_dim: int | None = None,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes, MAX_CLASSES)
        check_positive_int("in_channels", in_channels, MAX_CHANNELS)
        check_positive_int("image_size", image_size, MAX_IMAGE_SIZE)
        large = image_size >= 128
        # None takes the default; 0 or an empty list is an error, not the default.
        patch_size = default_patch_size(image_size) if patch_size is None else patch_size
        head_dim = (64 if large else 16) if head_dim is None else head_dim
        check_positive_int("patch_size", patch_size, MAX_IMAGE_SIZE)
        check_positive_int("head_dim", head_dim, MAX_WIDTH)
        embed_default = (192, 288, 384) if large else (32, 48, 64)
        embed = check_choices("embed_dims", embed_default if embed_dims is None else embed_dims,
                              integer=True, minimum=1, maximum=MAX_WIDTH)  # fmt: skip
        depth_default = (8, 10, 12) if large else (2, 3, 4)
        depth_choices = check_choices("depths", depth_default if depths is None else depths,
                                      integer=True, minimum=1, maximum=MAX_DEPTH)  # fmt: skip
        heads_default = (3, 4, 6) if large else (2, 3, 4)
        heads = check_choices("num_heads", heads_default if num_heads is None else num_heads,
                              integer=True, minimum=1, maximum=MAX_HEADS)  # fmt: skip
        ratios = check_choices("mlp_ratios", mlp_ratios, minimum=0, strict=True, maximum=MAX_RATIO)
        norm_eps = check_number("norm_eps", norm_eps, maximum=1, low_open=True)
        resolutions = default_resolutions(image_size, resolutions)
        bad = [r for r in resolutions if r % patch_size]
        if bad:
            raise UserError(f"resolutions {bad} are not multiples of patch_size {patch_size}")
        hidden_choices = [round(ratio * max(embed)) for ratio in ratios]
        if min(hidden_choices) < 1 or len(set(hidden_choices)) < len(hidden_choices):
            raise UserError(
                f"mlp_ratios {list(ratios)} give MLP widths {hidden_choices} at embedding width "
                f"{max(embed)}; they must be distinct and at least 1"
            )
        tokens = (max(resolutions) // patch_size) ** 2 + 1
        width, layer_hidden = max(embed), max(hidden_choices)
        per_layer = width * (4 * max(heads) * head_dim + 2 * layer_hidden + 4)
        check_memory(
            "vit",
            in_channels * width * patch_size**2 + tokens * width + max(depth_choices) * per_layer
            + (width + 1) * num_classes,
            ["num_classes", "in_channels", "image_size", "resolutions", "patch_size",
             "embed_dims", "depths", "num_heads", "head_dim", "mlp_ratios"],
        )  # fmt: skip
        self.num_classes, self.in_channels = num_classes, in_channels
        self.patch_size, self.head_dim = patch_size, head_dim
        self.max_width = max(embed)
        hidden = [round(ratio * self.max_width) for ratio in ratios]
        max_tokens = (max(resolutions) // patch_size) ** 2 + 1

        # Patches by a conv with stride = kernel and no padding; its output channels are
        # the embedding, sliced to the active width.
        self.patch = nn.Conv2d(in_channels, self.max_width, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.max_width))
        self.pos_embed = nn.Parameter(torch.zeros(1, max_tokens, self.max_width))
        # The same layers as a typed list: cheap to slice, and clear to type checkers.
        self.layer_list = [
            ElasticEncoderLayer(self.max_width, max(heads), head_dim, max(hidden), norm_eps)
            for _ in range(max(depth_choices))
        ]
        self.layers = nn.ModuleList(self.layer_list)
        self.norm = nn.LayerNorm(self.max_width, eps=norm_eps)
        self.head = ElasticLinear(self.max_width, num_classes)
        n = len(self.layers)
        self.space = SearchSpace(
            {
                "w": embed,
                "d": depth_choices,
                **{f"h.{i}": heads for i in range(n)},
                **{f"m.{i}": tuple(hidden) for i in range(n)},
                "r": resolutions,
            }
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self._width, self._depth = self.max_width, n
        self.input_spec = ImageInput(self.in_channels, self.resolutions)
        self.set_active(self.space.largest())

    @property
    def patch_bias(self) -> torch.Tensor:
        assert self.patch.bias is not None  # built with a bias
        return self.patch.bias

    def _activate(self, config: ArchConfig) -> None:
        self._width, self._depth = int(config["w"]), int(config["d"])
        for i, layer in enumerate(self.layer_list):
            layer.active_heads = int(config[f"h.{i}"])
            layer.active_hidden = int(config[f"m.{i}"])

    def _embed_weights(self, tokens: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_token[:, :, :width], self.pos_embed[:, :tokens, :width]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        width = self._width
        patches = F.conv2d(x, self.patch.weight[:width], self.patch_bias[:width],
                           stride=self.patch_size)  # fmt: skip
        patches = patches.flatten(2).transpose(1, 2)
        cls, pos = self._embed_weights(patches.shape[1] + 1, width)
        x = torch.cat([cls.expand(patches.shape[0], -1, -1), patches], dim=1) + pos
        for layer in self.layer_list[: self._depth]:
            x = layer(x)
        return self.head(prefix_layer_norm(self.norm, x)[:, 0])

    def _tokens(self, config: Mapping[str, Any]) -> int:
        return (int(config["r"]) // self.patch_size) ** 2 + 1

    @torch.no_grad()
    def _build_static(self, config: ArchConfig) -> nn.Module:
        width, tokens = int(config["w"]), self._tokens(config)
        cls, pos = self._embed_weights(tokens, width)
        layers = [
            layer.to_static(width, int(config[f"h.{i}"]), int(config[f"m.{i}"]))
            for i, layer in enumerate(self.layer_list[: int(config["d"])])
        ]
        return nn.Sequential(
            PatchEmbed(self._static_patch(width), cls, pos),
            *layers,
            static_layer_norm(self.norm, width),
            ClassToken(),
            self.head.to_static(width),
        )

    def _static_patch(self, width: int) -> nn.Conv2d:
        conv = nn.Conv2d(self.in_channels, width, self.patch_size, stride=self.patch_size)
        with torch.no_grad():
            conv.weight.copy_(self.patch.weight[:width])
            assert conv.bias is not None
            conv.bias.copy_(self.patch_bias[:width])
        return conv

    def cost(self, config: Mapping[str, Any]) -> Cost:
        config = self.space.validate(config)
        width, tokens = int(config["w"]), self._tokens(config)
        side = int(config["r"]) // self.patch_size
        total = conv_cost(self.in_channels, width, self.patch_size, side, bias=True)
        total += Cost(macs=0, params=width + tokens * width)  # class token, positions
        for i, layer in enumerate(self.layer_list[: int(config["d"])]):
            total += layer.cost(width, int(config[f"h.{i}"]), int(config[f"m.{i}"]), tokens)
        total += Cost(macs=0, params=2 * width)  # final LayerNorm
        return total + linear_cost(width, self.num_classes)


@register_supernet("vit")
def vit(**kwargs: Any) -> ElasticViT:
    """Elastic ViT encoder (HAT / InstaTune dimensions: depth, heads, MLP width, embedding)."""
    return ElasticViT(**kwargs)
