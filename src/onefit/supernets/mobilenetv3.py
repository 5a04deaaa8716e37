"""Once-for-All MobileNetV3 supernet.

Paper: Cai, Gan, Wang, Zhang, Han, "Once-for-All: Train One Network and Specialize it
for Efficient Deployment", ICLR 2020, https://arxiv.org/abs/1908.09791. Blocks follow
Howard et al., "Searching for MobileNetV3", ICCV 2019.

Layout (width multiplier 1.0): a fixed 3x3 stem conv (16 channels, hard-swish) and a
fixed first block (depthwise 3x3 + pointwise, 16 channels), then five elastic stages
of up to four inverted-residual blocks with widths 24/40/80/112/160, squeeze-excite in
stages 2, 4 and 5, ReLU in the first two stages and hard-swish after; then a 1x1
expansion to 960, global pooling, a 1x1 "feature mix" to 1280 and the classifier.

Search space (dimension names):
    ``ks.i``  kernel size of block ``i`` (0..19 by default), default {3, 5, 7}
    ``e.i``   expand ratio of block ``i``, default {3, 4, 6}
    ``d.s``   number of active blocks in stage ``s`` (0..4), default {2, 3, 4}
    ``r``     input resolution

With ``D = max(depths)`` blocks per stage, block ``i`` is block ``i % D`` of stage
``i // D``; the choices of blocks beyond a stage's depth are ignored. At width 1.0 with
1000 classes the analytic MAC and parameter counts reproduce the figures DyNAS-T
publishes for this space exactly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from onefit.elastic import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticSqueezeExcite,
    batch_norm_tensors,
    importance_order,
    make_divisible,
    permute_,
)
from onefit.errors import UserError, UserTypeError
from onefit.metrics.counting import Cost, conv_cost, conv_output_size, linear_cost
from onefit.space import ArchConfig, SearchSpace
from onefit.static import Residual
from onefit.supernets.arguments import (
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_DEPTH,
    MAX_KERNEL,
    MAX_RATIO,
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
from onefit.supernets.once_for_all import load_weights_argument
from onefit.supernets.registry import register_supernet

STEM_WIDTH = 16
STAGE_WIDTHS = (24, 40, 80, 112, 160)
FINAL_EXPAND_WIDTH = 960
FEATURE_MIX_WIDTH = 1280
STAGE_ACTIVATIONS = ("relu", "relu", "hswish", "hswish", "hswish")
STAGE_USES_SE = (False, True, False, True, True)
# ImageNet strides: stem 2, then stages 2, 2, 2, 1, 2 (32x down in all).
IMAGENET_STEM_STRIDE = 2
IMAGENET_STAGE_STRIDES = (2, 2, 2, 1, 2)

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "hswish": nn.Hardswish}


def strides_for_image_size(image_size: int) -> tuple[int, tuple[int, ...]]:
    """Stem and stage strides that downsample ``image_size`` to a map of about 4-7 pixels.

    224 keeps the ImageNet strides (32x down to 7x7); smaller inputs drop stride-2
    layers from the front, so 32x32 (CIFAR) ends at 4x4, 28x28 (MNIST) at 7x7 and 8x8
    (digits) at 4x4.
    """
    if image_size < 1:
        raise UserError(f"image_size must be positive, got {image_size}")
    reductions = min(5, max(0, int(math.log2(image_size / 4))))
    # Positions that can stride, earliest first: stem, then stages 1, 2, 3 and 5.
    strided = [True] * 5
    for position in range(5 - reductions):
        strided[position] = False
    stem = 2 if strided[0] else 1
    s1, s2, s3, s5 = (2 if s else 1 for s in strided[1:])
    return stem, (s1, s2, s3, 1, s5)


def _estimate_params(
    in_channels: int,
    num_classes: int,
    width_mult: float,
    kernel_sizes: Sequence[int],
    expand_ratios: Sequence[float],
    max_depth: int,
) -> int:
    """About how many weights the supernet holds, from its arguments (before building)."""
    width = [make_divisible(c * width_mult) for c in (STEM_WIDTH, *STAGE_WIDTHS)]
    final_expand = make_divisible(FINAL_EXPAND_WIDTH * width_mult)
    feature_mix = make_divisible(FEATURE_MIX_WIDTH * width_mult)
    k, e = max(kernel_sizes), max(expand_ratios)
    total = in_channels * width[0] * 9 + width[0] * (width[0] + 9)
    in_width = width[0]
    for out_width in width[1:]:
        for b in range(max_depth):
            block_in = in_width if b == 0 else out_width
            hidden = make_divisible(round(block_in * e))
            # expand, depthwise, squeeze-excite (at most), project
            total += hidden * (block_in + k * k + hidden // 2 + out_width)
        in_width = out_width
    total += in_width * final_expand + final_expand * feature_mix
    return total + (feature_mix + 1) * num_classes


class ElasticMBConv(nn.Module):
    """Inverted-residual block with elastic kernel size and expand ratio.

    The hidden width for expand ratio ``e`` is ``make_divisible(round(in_channels * e), 8)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_sizes: Sequence[int],
        expand_ratios: Sequence[float],
        stride: int,
        activation: str,
        use_se: bool,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.activation = activation
        self.residual = stride == 1 and in_channels == out_channels
        hidden = self.hidden_channels(max(expand_ratios))
        self.expand_conv = ElasticConv2d(in_channels, hidden, 1)
        self.expand_bn = ElasticBatchNorm2d(hidden)
        self.dw_conv = ElasticConv2d(hidden, hidden, kernel_sizes, stride=stride, depthwise=True)
        self.dw_bn = ElasticBatchNorm2d(hidden)
        self.se = ElasticSqueezeExcite(hidden) if use_se else None
        self.project_conv = ElasticConv2d(hidden, out_channels, 1)
        self.project_bn = ElasticBatchNorm2d(out_channels)
        self.act = _ACTIVATIONS[activation](inplace=True)
        self.set_choice(max(kernel_sizes), max(expand_ratios))

    def set_choice(self, kernel_size: int, expand_ratio: float) -> None:
        """Make ``forward`` run this kernel size and expand ratio."""
        self.active_kernel_size = kernel_size
        self.active_expand_ratio = expand_ratio
        self.active_hidden = self.hidden_channels(expand_ratio)

    def hidden_channels(self, expand_ratio: float) -> int:
        return make_divisible(round(self.in_channels * expand_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.expand_bn(self.expand_conv(x, out_channels=self.active_hidden)))
        h = self.act(self.dw_bn(self.dw_conv(h, kernel_size=self.active_kernel_size)))
        if self.se is not None:
            h = self.se(h)
        h = self.project_bn(self.project_conv(h))
        return x + h if self.residual else h

    def to_static(self, kernel_size: int, expand_ratio: float) -> nn.Module:
        hidden = self.hidden_channels(expand_ratio)
        layers = [
            self.expand_conv.to_static(self.in_channels, hidden),
            self.expand_bn.to_static(hidden),
            _ACTIVATIONS[self.activation](inplace=True),
            self.dw_conv.to_static(hidden, kernel_size=kernel_size),
            self.dw_bn.to_static(hidden),
            _ACTIVATIONS[self.activation](inplace=True),
        ]
        if self.se is not None:
            layers.append(self.se.to_static(hidden))
        layers += [
            self.project_conv.to_static(hidden, self.out_channels),
            self.project_bn.to_static(self.out_channels),
        ]
        body = nn.Sequential(*layers)
        return Residual(body) if self.residual else body

    def cost(self, kernel_size: int, expand_ratio: float, in_size: int) -> tuple[Cost, int]:
        """MACs/params of the sub-block, and the spatial size it outputs."""
        hidden = self.hidden_channels(expand_ratio)
        out_size = conv_output_size(in_size, self.stride)
        total = conv_cost(self.in_channels, hidden, 1, in_size, batch_norm=True)
        total += conv_cost(hidden, hidden, kernel_size, out_size, groups=hidden, batch_norm=True)
        if self.se is not None:
            squeezed = self.se.hidden_channels(hidden)
            total += conv_cost(hidden, squeezed, 1, 1, bias=True)
            total += conv_cost(squeezed, hidden, 1, 1, bias=True)
        total += conv_cost(hidden, self.out_channels, 1, out_size, batch_norm=True)
        return total, out_size

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Sort hidden channels by the L1 norm of their projection weights."""
        order = importance_order(self.project_conv.weight, channel_dim=1)
        permute_(
            [
                (self.expand_conv.weight, 0),
                *batch_norm_tensors(self.expand_bn),
                (self.dw_conv.weight, 0),
                *batch_norm_tensors(self.dw_bn),
                (self.project_conv.weight, 1),
            ],
            order,
        )
        if self.se is not None:
            self.se.permute_channels(order)
            self.se.sort_hidden()


class MobileNetV3Supernet(Supernet):
    """The Once-for-All MobileNetV3 space (see the module docstring).

    Args:
        num_classes: classifier outputs.
        in_channels: input image channels (3 for RGB, 1 for MNIST-like data).
        width_mult: multiplies every width (Once-for-All ships 1.0 and 1.2).
        image_size: the largest input side; picks default strides and resolutions.
        resolutions: the choices of ``r`` (default: 128..224 for 224 inputs, else
            ``(image_size,)``).
        kernel_sizes, expand_ratios, depths: per-block and per-stage choices.
        stem_stride, stage_strides: override the strides chosen from ``image_size``.
        dropout: dropout before the classifier (0.1 in Once-for-All).

    Example:
        >>> net = MobileNetV3Supernet(num_classes=10, in_channels=1, image_size=28)
        >>> cfg = net.set_active(net.space.smallest())
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> from onefit.metrics import count
        >>> net.macs(cfg) == count(net.extract(cfg), (1, 28, 28)).macs
        True
    """

    # Key layout of Once-for-All's released files for this family (onefit.supernets.once_for_all).
    once_for_all_layout = "mobilenetv3"

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        image_size: int = 224,
        resolutions: Sequence[int] | None = None,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        expand_ratios: Sequence[float] = (3, 4, 6),
        depths: Sequence[int] = (2, 3, 4),
        stem_stride: int | None = None,
        stage_strides: Sequence[int] | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes, MAX_CLASSES)
        check_positive_int("in_channels", in_channels, MAX_CHANNELS)
        width_mult = check_number("width_mult", width_mult, maximum=MAX_RATIO, low_open=True)
        kernel_sizes = check_choices(
            "kernel_sizes", kernel_sizes, integer=True, minimum=1, maximum=MAX_KERNEL
        )
        if any(k % 2 == 0 for k in kernel_sizes):
            raise UserError(f"kernel_sizes must be odd, got {list(kernel_sizes)}")
        expand_ratios = check_choices(
            "expand_ratios", expand_ratios, minimum=0, strict=True, maximum=MAX_RATIO
        )
        depths = check_choices("depths", depths, integer=True, minimum=1, maximum=MAX_DEPTH)
        resolutions = default_resolutions(image_size, resolutions)
        dropout = check_number("dropout", dropout, maximum=1, high_open=True)
        auto_stem, auto_strides = strides_for_image_size(image_size)
        stem_stride = auto_stem if stem_stride is None else stem_stride
        if stage_strides is not None and not isinstance(stage_strides, (list, tuple)):
            raise UserTypeError(
                f"stage_strides must be a list of five values of 1 or 2, got {stage_strides!r}"
            )
        strides = tuple(auto_strides if stage_strides is None else stage_strides)
        if len(strides) != len(STAGE_WIDTHS) or any(
            isinstance(s, bool) or not isinstance(s, int) or s not in (1, 2)
            for s in (stem_stride, *strides)
        ):
            raise UserError(
                f"stem_stride must be 1 or 2 and stage_strides five values of 1 or 2, "
                f"got {stem_stride!r} and {list(strides)!r}"
            )
        check_memory(
            "mobilenetv3",
            _estimate_params(
                in_channels, num_classes, width_mult, kernel_sizes, expand_ratios, max(depths)
            ),
            ["num_classes", "in_channels", "width_mult", "expand_ratios", "depths"],
        )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.width_mult = width_mult
        self.stem_stride = stem_stride
        self.stage_strides = strides
        self.max_depth = max(depths)

        width = [make_divisible(c * width_mult) for c in (STEM_WIDTH, *STAGE_WIDTHS)]
        final_expand = make_divisible(FINAL_EXPAND_WIDTH * width_mult)
        feature_mix = make_divisible(FEATURE_MIX_WIDTH * width_mult)

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width[0], 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(width[0]),
            nn.Hardswish(inplace=True),
        )
        # Expand ratio 1: no expansion conv, only depthwise + pointwise (as in OFA).
        self.first_block = Residual(
            nn.Sequential(
                nn.Conv2d(width[0], width[0], 3, 1, 1, groups=width[0], bias=False),
                nn.BatchNorm2d(width[0]),
                nn.ReLU(inplace=True),
                nn.Conv2d(width[0], width[0], 1, bias=False),
                nn.BatchNorm2d(width[0]),
            )
        )
        self.stages = nn.ModuleList()
        # The same blocks as typed lists: cheap to iterate, and clear to type checkers.
        self.blocks_by_stage: list[list[ElasticMBConv]] = []
        in_width = width[0]
        for s, out_width in enumerate(width[1:]):
            blocks = [
                ElasticMBConv(
                    in_width if b == 0 else out_width,
                    out_width,
                    kernel_sizes=kernel_sizes,
                    expand_ratios=expand_ratios,
                    stride=strides[s] if b == 0 else 1,
                    activation=STAGE_ACTIVATIONS[s],
                    use_se=STAGE_USES_SE[s],
                )
                for b in range(self.max_depth)
            ]
            self.stages.append(nn.ModuleList(blocks))
            self.blocks_by_stage.append(blocks)
            in_width = out_width
        self.head = nn.Sequential(
            nn.Conv2d(in_width, final_expand, 1, bias=False),
            nn.BatchNorm2d(final_expand),
            nn.Hardswish(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(final_expand, feature_mix, 1, bias=False),
            nn.Hardswish(inplace=True),
            nn.Flatten(1),
            nn.Dropout(dropout),
            nn.Linear(feature_mix, num_classes),
        )
        self._widths = width
        self._final_expand = final_expand
        self._feature_mix = feature_mix

        n_blocks = len(STAGE_WIDTHS) * self.max_depth
        self.space = SearchSpace(
            {
                **{f"ks.{i}": kernel_sizes for i in range(n_blocks)},
                **{f"e.{i}": expand_ratios for i in range(n_blocks)},
                **{f"d.{s}": depths for s in range(len(STAGE_WIDTHS))},
                "r": resolutions,
            }
        )
        self._init_weights()
        self._depths = [self.max_depth] * len(STAGE_WIDTHS)
        self.input_spec = ImageInput(self.in_channels, self.resolutions)
        self.set_active(self.space.largest())

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def _blocks(self, config: Mapping[str, Any]) -> list[tuple[ElasticMBConv, int, float]]:
        """The active blocks of ``config`` with their kernel size and expand ratio."""
        active = []
        for s, stage in enumerate(self.blocks_by_stage):
            for b in range(int(config[f"d.{s}"])):
                i = s * self.max_depth + b
                active.append((stage[b], int(config[f"ks.{i}"]), float(config[f"e.{i}"])))
        return active

    def _activate(self, config: ArchConfig) -> None:
        self._depths = [int(config[f"d.{s}"]) for s in range(len(self.stages))]
        for block, kernel_size, expand_ratio in self._blocks(config):
            block.set_choice(kernel_size, expand_ratio)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for stage, depth in zip(self.blocks_by_stage, self._depths):
            # A list slice, not stage[:depth] on a ModuleList, which builds a new module.
            for block in stage[:depth]:
                x = block(x)
        return self.head(x)

    def _build_static(self, config: ArchConfig) -> nn.Module:
        blocks = [block.to_static(k, e) for block, k, e in self._blocks(config)]
        return nn.Sequential(
            copy.deepcopy(self.stem),
            copy.deepcopy(self.first_block),
            *blocks,
            copy.deepcopy(self.head),
        )

    def units(self, config: Mapping[str, Any]) -> list[str]:
        config = self.space.validate(config)
        size = conv_output_size(int(config["r"]), self.stem_stride)
        keys = [f"stem|r{config['r']}", f"first_block|{size}"]
        stage_of = {id(b): s for s, stage in enumerate(self.blocks_by_stage) for b in stage}
        for block, kernel_size, expand_ratio in self._blocks(config):
            keys.append(
                f"mbconv|stage{stage_of[id(block)]}|{block.in_channels}>{block.out_channels}"
                f"|k{kernel_size}|h{block.hidden_channels(expand_ratio)}|s{block.stride}|{size}"
            )
            size = conv_output_size(size, block.stride)
        return [*keys, f"head|{size}"]

    def cost(self, config: Mapping[str, Any]) -> Cost:
        config = self.space.validate(config)
        stem_width = self._widths[0]
        size = conv_output_size(int(config["r"]), self.stem_stride)
        total = conv_cost(self.in_channels, stem_width, 3, size, batch_norm=True)
        total += conv_cost(stem_width, stem_width, 3, size, groups=stem_width, batch_norm=True)
        total += conv_cost(stem_width, stem_width, 1, size, batch_norm=True)
        for block, kernel_size, expand_ratio in self._blocks(config):
            block_cost, size = block.cost(kernel_size, expand_ratio, size)
            total += block_cost
        total += conv_cost(self._widths[-1], self._final_expand, 1, size, batch_norm=True)
        total += conv_cost(self._final_expand, self._feature_mix, 1, 1)
        return total + linear_cost(self._feature_mix, self.num_classes)


@register_supernet("mobilenetv3")
def mobilenetv3(*, weights: str | None = None, **kwargs: Any) -> MobileNetV3Supernet:
    """Once-for-All MobileNetV3 (``width_mult`` 1.0 or 1.2 as published).

    ``weights`` is a released Once-for-All file of this space (e.g.
    ``ofa_mbv3_d234_e346_k357_w1.0``; see :mod:`onefit.supernets.once_for_all`), loaded
    into the supernet built from the other arguments, which must match the file.
    """
    net = MobileNetV3Supernet(**kwargs)
    load_weights_argument(net, weights)
    return net
