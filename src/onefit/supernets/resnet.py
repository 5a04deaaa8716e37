"""Once-for-All ResNet supernet (bottleneck blocks with elastic depth, expand ratio and width).

Paper: Cai et al., "Once-for-All", ICLR 2020 (https://arxiv.org/abs/1908.09791); the
ResNet-50 space of its released code ("OFAResNets"), itself built on He et al., "Deep
Residual Learning for Image Recognition", CVPR 2016.

Layout: a fixed deep stem (3x3 conv, a residual 3x3 conv, 3x3 conv; then 3x3 max-pool
for large inputs), four stages of bottleneck blocks (output widths 256/512/1024/2048
times the stage's width multiplier; OFA's base depths 2/2/4/2 plus up to two extra
blocks), global pooling and a linear classifier. A stage's first block has a
projection shortcut (average pool, then 1x1 conv + BN, as in OFA's "avgpool_conv").

Search space (dimension names):
    ``d.s``   number of blocks in stage ``s`` (0..3), default base depth + {0, 1, 2}
    ``e.i``   expand ratio of block ``i``: hidden width = ``make_divisible(out * e, 8)``,
              default {0.2, 0.25, 0.35}
    ``w.s``   width multiplier of stage ``s``, default {0.65, 0.8, 1.0}
    ``r``     input resolution

With ``elastic_stem=True`` the stem is elastic too, as in OFA-ResNet50 (needed to
express every one of its sub-networks, e.g. after :func:`onefit.import_once_for_all`):
    ``w.stem_mid``  width multiplier of the stem's first two convs (their width is
                    ``make_divisible(make_divisible(base_width * m) // 2)``)
    ``w.stem``      width multiplier of the stem's output (``make_divisible(base_width * m)``)
    ``d.stem``      1 runs the stem's residual 3x3 conv, 0 skips it

Blocks are numbered across stages (stage ``s`` owns blocks ``offset(s) ..
offset(s) + max_depth(s) - 1``); choices of blocks beyond a stage's depth are ignored.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from onefit.elastic import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticLinear,
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
from onefit.supernets.once_for_all import load_weights_argument
from onefit.supernets.registry import register_supernet

BASE_DEPTHS = (2, 2, 4, 2)
# Stage output width = BOTTLENECK_EXPANSION * base_width * 2**stage, i.e. 256..2048.
BOTTLENECK_EXPANSION = 4
IMAGENET_STAGE_STRIDES = (1, 2, 2, 2)
# Inputs smaller than this get a CIFAR-style stem: stride 1 and no max-pool.
SMALL_INPUT = 64


def _estimate_params(
    in_channels: int,
    num_classes: int,
    base_width: int,
    base_depths: Sequence[int],
    depth_extra: int,
    expand_ratio: float,
    width_mult: float,
) -> int:
    """About how many weights the supernet holds, from its arguments (before building)."""
    stem_mid = make_divisible(base_width / 2)
    total = 9 * (in_channels * stem_mid + stem_mid * stem_mid + stem_mid * base_width)
    in_width = base_width
    for s, depth in enumerate(base_depths):
        out_width = make_divisible(BOTTLENECK_EXPANSION * base_width * 2**s * width_mult)
        hidden = make_divisible(round(out_width * expand_ratio))
        for b in range(depth + depth_extra):
            block_in = in_width if b == 0 else out_width
            total += hidden * (block_in + 9 * hidden + out_width)
            total += block_in * out_width if b == 0 else 0  # the shortcut
        in_width = out_width
    return total + (in_width + 1) * num_classes


class ElasticBottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 bottleneck with elastic hidden and output widths."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        expand_ratios: Sequence[float],
        stride: int,
        projection: bool,
    ) -> None:
        super().__init__()
        self.stride = stride
        hidden = self.hidden_channels(out_channels, max(expand_ratios))
        self.conv1 = ElasticConv2d(in_channels, hidden, 1)
        self.bn1 = ElasticBatchNorm2d(hidden)
        self.conv2 = ElasticConv2d(hidden, hidden, 3, stride=stride)
        self.bn2 = ElasticBatchNorm2d(hidden)
        self.conv3 = ElasticConv2d(hidden, out_channels, 1)
        self.bn3 = ElasticBatchNorm2d(out_channels)
        self.projection = projection
        if projection:
            self.shortcut_conv = ElasticConv2d(in_channels, out_channels, 1)
            self.shortcut_bn = ElasticBatchNorm2d(out_channels)
        self.active_expand_ratio = max(expand_ratios)
        self.active_out_channels = out_channels

    @staticmethod
    def hidden_channels(out_channels: int, expand_ratio: float) -> int:
        return make_divisible(round(out_channels * expand_ratio))

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x
        return F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.active_out_channels
        hidden = self.hidden_channels(out, self.active_expand_ratio)
        h = F.relu(self.bn1(self.conv1(x, out_channels=hidden)), inplace=True)
        h = F.relu(self.bn2(self.conv2(h, out_channels=hidden)), inplace=True)
        h = self.bn3(self.conv3(h, out_channels=out))
        if self.projection:
            x = self.shortcut_bn(self.shortcut_conv(self._pool(x), out_channels=out))
        return F.relu(h + x, inplace=True)

    def to_static(self, in_channels: int, out_channels: int, expand_ratio: float) -> Residual:
        hidden = self.hidden_channels(out_channels, expand_ratio)
        body = nn.Sequential(
            self.conv1.to_static(in_channels, hidden),
            self.bn1.to_static(hidden),
            nn.ReLU(inplace=True),
            self.conv2.to_static(hidden, hidden),
            self.bn2.to_static(hidden),
            nn.ReLU(inplace=True),
            self.conv3.to_static(hidden, out_channels),
            self.bn3.to_static(out_channels),
        )
        shortcut = None
        if self.projection:
            pool = (
                [nn.AvgPool2d(self.stride, self.stride, ceil_mode=True)] if self.stride > 1 else []
            )
            shortcut = nn.Sequential(
                *pool,
                self.shortcut_conv.to_static(in_channels, out_channels),
                self.shortcut_bn.to_static(out_channels),
            )
        return Residual(body, shortcut, nn.ReLU(inplace=True))

    def cost(
        self, in_channels: int, out_channels: int, expand_ratio: float, in_size: int
    ) -> tuple[Cost, int]:
        """MACs/params of the sub-block, and the spatial size it outputs."""
        hidden = self.hidden_channels(out_channels, expand_ratio)
        out_size = conv_output_size(in_size, self.stride)
        total = conv_cost(in_channels, hidden, 1, in_size, batch_norm=True)
        total += conv_cost(hidden, hidden, 3, out_size, batch_norm=True)
        total += conv_cost(hidden, out_channels, 1, out_size, batch_norm=True)
        if self.projection:
            total += conv_cost(in_channels, out_channels, 1, out_size, batch_norm=True)
        return total, out_size

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Sort both hidden widths by importance, last one first (it feeds the first's key)."""
        order = importance_order(self.conv3.weight, channel_dim=1)
        permute_(
            [(self.conv2.weight, 0), *batch_norm_tensors(self.bn2), (self.conv3.weight, 1)], order
        )
        order = importance_order(self.conv2.weight, channel_dim=1)
        permute_(
            [(self.conv1.weight, 0), *batch_norm_tensors(self.bn1), (self.conv2.weight, 1)], order
        )


class ResNetSupernet(Supernet):
    """The Once-for-All ResNet-50 space (see the module docstring).

    Args:
        num_classes: classifier outputs.
        in_channels: input image channels.
        base_width: stem output width; stage ``s`` outputs ``4 * base_width * 2**s``
            channels at width multiplier 1.0 (64 gives ResNet-50's widths).
        image_size: the largest input side; inputs under 64 pixels get a stride-1 stem
            without max-pool. Also picks the default resolutions.
        resolutions: the choices of ``r``.
        base_depths: minimum blocks per stage; ``depth_extras`` are added to them.
        expand_ratios, width_mults: per-block and per-stage choices.
        dropout: dropout before the classifier.

    Example:
        >>> net = ResNetSupernet(num_classes=10, base_width=16, image_size=32)
        >>> cfg = net.sample_active(seed=1)
        >>> net(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """

    # Key layout of Once-for-All's released files for this family (onefit.supernets.once_for_all).
    once_for_all_layout = "resnet"

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        base_width: int = 64,
        image_size: int = 224,
        resolutions: Sequence[int] | None = None,
        base_depths: Sequence[int] = BASE_DEPTHS,
        depth_extras: Sequence[int] = (0, 1, 2),
        expand_ratios: Sequence[float] = (0.2, 0.25, 0.35),
        width_mults: Sequence[float] = (0.65, 0.8, 1.0),
        dropout: float = 0.0,
        elastic_stem: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(elastic_stem, bool):
            raise UserTypeError(f"elastic_stem must be true or false, got {elastic_stem!r}")
        check_positive_int("num_classes", num_classes, MAX_CLASSES)
        check_positive_int("in_channels", in_channels, MAX_CHANNELS)
        check_positive_int("base_width", base_width, MAX_WIDTH)
        base_depths = check_choices("base_depths", base_depths, integer=True, minimum=1,
                                    maximum=MAX_DEPTH, distinct=False)  # fmt: skip
        if len(base_depths) != len(IMAGENET_STAGE_STRIDES):
            raise UserError(
                f"base_depths needs one depth per stage ({len(IMAGENET_STAGE_STRIDES)}), "
                f"got {list(base_depths)}"
            )
        depth_extras = check_choices("depth_extras", depth_extras, integer=True, minimum=0,
                                     maximum=MAX_DEPTH)  # fmt: skip
        expand_ratios = check_choices(
            "expand_ratios", expand_ratios, minimum=0, strict=True, maximum=MAX_RATIO
        )
        width_mults = check_choices(
            "width_mults", width_mults, minimum=0, strict=True, maximum=MAX_RATIO
        )
        resolutions = default_resolutions(image_size, resolutions)
        dropout = check_number("dropout", dropout, maximum=1, high_open=True)
        check_memory(
            "resnet",
            _estimate_params(in_channels, num_classes, base_width, base_depths,
                             max(depth_extras), max(expand_ratios), max(width_mults)),
            ["num_classes", "in_channels", "base_width", "base_depths", "depth_extras",
             "expand_ratios", "width_mults"],
        )  # fmt: skip
        small = image_size < SMALL_INPUT
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.stem_stride = 1 if small else 2
        self.uses_maxpool = not small
        self.stage_strides = IMAGENET_STAGE_STRIDES
        self.width_mults = tuple(sorted(width_mults))
        self.max_depths = [d + max(depth_extras) for d in base_depths]
        self.block_offsets = [sum(self.max_depths[:s]) for s in range(len(base_depths))]
        self.base_stage_widths = [
            BOTTLENECK_EXPANSION * base_width * 2**s for s in range(len(base_depths))
        ]

        self.base_width = base_width
        self.elastic_stem = elastic_stem
        stem_mid, stem_out = make_divisible(base_width / 2), base_width
        if elastic_stem:  # built for the largest multiplier (above 1.0 too)
            stem_mid = self.stem_mid_width(max(self.width_mults))
            stem_out = make_divisible(base_width * max(self.width_mults))
        self.stem_widths = (stem_mid, stem_out)
        # Elastic layers only with elastic_stem: the same keys either way (stem.0.weight...).
        conv = ElasticConv2d if elastic_stem else nn.Conv2d
        norm = ElasticBatchNorm2d if elastic_stem else nn.BatchNorm2d
        self.stem = nn.Sequential(
            _conv3x3(conv, in_channels, stem_mid, self.stem_stride),
            norm(stem_mid),
            nn.ReLU(inplace=True),
            Residual(
                nn.Sequential(
                    _conv3x3(conv, stem_mid, stem_mid, 1), norm(stem_mid), nn.ReLU(inplace=True)
                )
            ),
            _conv3x3(conv, stem_mid, stem_out, 1),
            norm(stem_out),
            nn.ReLU(inplace=True),
            *([nn.MaxPool2d(3, 2, 1)] if self.uses_maxpool else []),
        )
        self._stem_active = (stem_mid, stem_out, 1)  # mid width, output width, residual
        # The elastic stem's conv/BN pairs as typed references (they live in self.stem).
        self._stem_pairs: list[tuple[ElasticConv2d, ElasticBatchNorm2d]] = []
        if elastic_stem:
            names = ("0", "1", "3.body.0", "3.body.1", "4", "5")
            parts = [self.stem.get_submodule(name) for name in names]
            self._stem_pairs = list(zip(parts[::2], parts[1::2]))  # type: ignore[arg-type]
        self.stages = nn.ModuleList()
        # The same blocks as typed lists: cheap to iterate, and clear to type checkers.
        self.blocks_by_stage: list[list[ElasticBottleneck]] = []
        in_width = stem_out
        for s, max_depth in enumerate(self.max_depths):
            out_width = self.stage_width(s, max(self.width_mults))
            blocks = [
                ElasticBottleneck(
                    in_width if b == 0 else out_width,
                    out_width,
                    expand_ratios=expand_ratios,
                    stride=self.stage_strides[s] if b == 0 else 1,
                    projection=b == 0,
                )
                for b in range(max_depth)
            ]
            self.stages.append(nn.ModuleList(blocks))
            self.blocks_by_stage.append(blocks)
            in_width = out_width
        self.dropout = nn.Dropout(dropout)
        self.classifier = ElasticLinear(in_width, num_classes)

        self.space = SearchSpace(
            {
                **{
                    f"d.{s}": [d + extra for extra in depth_extras]
                    for s, d in enumerate(base_depths)
                },
                **{f"e.{i}": expand_ratios for i in range(sum(self.max_depths))},
                **{f"w.{s}": self.width_mults for s in range(len(base_depths))},
                **(
                    {"w.stem_mid": self.width_mults, "w.stem": self.width_mults, "d.stem": (0, 1)}
                    if elastic_stem
                    else {}
                ),
                "r": resolutions,
            }
        )
        self._init_weights()
        self._depths = list(self.max_depths)
        self.input_spec = ImageInput(self.in_channels, self.resolutions)
        self.set_active(self.space.largest())

    def stage_width(self, stage: int, width_mult: float) -> int:
        return make_divisible(self.base_stage_widths[stage] * width_mult)

    def stem_mid_width(self, width_mult: float) -> int:
        """The elastic stem's middle width, by OFA-ResNet's rule."""
        return make_divisible(make_divisible(self.base_width * width_mult) // 2)

    def stem_choice(self, config: Mapping[str, Any]) -> tuple[int, int, int]:
        """(middle width, output width, residual convs run) of the stem under ``config``."""
        if not self.elastic_stem:
            return (*self.stem_widths, 1)
        return (
            self.stem_mid_width(float(config["w.stem_mid"])),
            make_divisible(self.base_width * float(config["w.stem"])),
            int(config["d.stem"]),
        )

    def _stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.elastic_stem:
            return self.stem(x)
        mid, out, residual = self._stem_active
        (conv1, bn1), (conv2, bn2), (conv3, bn3) = self._stem_pairs
        x = F.relu(bn1(conv1(x, out_channels=mid)), inplace=True)
        if residual:
            x = x + F.relu(bn2(conv2(x, out_channels=mid)))
        x = F.relu(bn3(conv3(x, out_channels=out)), inplace=True)
        return F.max_pool2d(x, 3, 2, 1) if self.uses_maxpool else x

    @torch.no_grad()
    def _static_stem(self, config: Mapping[str, Any]) -> nn.Module:
        if not self.elastic_stem:
            return copy.deepcopy(self.stem)
        mid, out, residual = self.stem_choice(config)
        (conv1, bn1), (conv2, bn2), (conv3, bn3) = self._stem_pairs
        relu = nn.ReLU(inplace=True)
        layers = [conv1.to_static(self.in_channels, mid), bn1.to_static(mid), relu]
        if residual:
            body = nn.Sequential(conv2.to_static(mid, mid), bn2.to_static(mid), relu)
            layers.append(Residual(body))
        layers += [conv3.to_static(mid, out), bn3.to_static(out), relu]
        if self.uses_maxpool:
            layers.append(nn.MaxPool2d(3, 2, 1))
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # ElasticConv2d initialises itself
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last BN of each residual branch (Goyal et al., 2017) so a fresh
        # supernet starts near identity and every depth trains stably.
        for stage in self.blocks_by_stage:
            for block in stage:
                nn.init.zeros_(block.bn3.weight)

    def _blocks(self, config: Mapping[str, Any]) -> list[tuple[ElasticBottleneck, int, int, float]]:
        """Active blocks of ``config``: (block, in channels, out channels, expand ratio)."""
        active = []
        in_width = self.stem_choice(config)[1]
        for s, stage in enumerate(self.blocks_by_stage):
            out_width = self.stage_width(s, float(config[f"w.{s}"]))
            for b in range(int(config[f"d.{s}"])):
                e = float(config[f"e.{self.block_offsets[s] + b}"])
                active.append((stage[b], in_width, out_width, e))
                in_width = out_width
        return active

    def _activate(self, config: ArchConfig) -> None:
        self._stem_active = self.stem_choice(config)
        self._depths = [int(config[f"d.{s}"]) for s in range(len(self.stages))]
        for block, _, out_width, expand_ratio in self._blocks(config):
            block.active_out_channels = out_width
            block.active_expand_ratio = expand_ratio

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_forward(x)
        for stage, depth in zip(self.blocks_by_stage, self._depths):
            # A list slice, not stage[:depth] on a ModuleList, which builds a new module.
            for block in stage[:depth]:
                x = block(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(self.dropout(x))

    def _build_static(self, config: ArchConfig) -> nn.Module:
        blocks = self._blocks(config)
        last_width = blocks[-1][2]
        return nn.Sequential(
            self._static_stem(config),
            *(block.to_static(cin, cout, e) for block, cin, cout, e in blocks),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            copy.deepcopy(self.dropout),
            self.classifier.to_static(last_width),
        )

    def units(self, config: Mapping[str, Any]) -> list[str]:
        config = self.space.validate(config)
        size = conv_output_size(int(config["r"]), self.stem_stride)
        if self.uses_maxpool:
            size = conv_output_size(size, 2)
        mid, out, residual = self.stem_choice(config)
        stem = "" if not self.elastic_stem else f"|{mid}>{out}|res{residual}"
        keys = [f"stem|r{config['r']}{stem}"]
        for block, in_width, out_width, expand_ratio in self._blocks(config):
            keys.append(
                f"bottleneck|{in_width}>{out_width}"
                f"|h{block.hidden_channels(out_width, expand_ratio)}"
                f"|s{block.stride}|p{int(block.projection)}|{size}"
            )
            size = conv_output_size(size, block.stride)
        width = self._blocks(config)[-1][2]
        return [
            *keys,
            f"pool|{width}|{size}",
            f"flatten|{width}",
            f"dropout|{width}",
            f"fc|{width}",
        ]

    def profiling_configs(self) -> list[ArchConfig]:
        # A stage's first block depends on its own and the previous stage's width, so
        # every combination of stage widths is needed (with uniform expand ratios).
        configs = []
        stages = range(len(self.blocks_by_stage))
        widths = [self.space[f"w.{s}"].choices for s in stages]
        expands = self.space["e.0"].choices
        for r, e, w in itertools.product(
            self.space["r"].choices, expands, itertools.product(*widths)
        ):
            choice: dict[str, Any] = {n: self.space[n].choices[-1] for n in self.space.names}
            choice.update({n: e for n in self.space.names if n.startswith("e.")})
            choice.update({f"w.{s}": w[s] for s in stages})
            choice["r"] = r
            configs.append(self.space.validate(choice))
        if self.elastic_stem:
            # The stem's choices, and the first block they feed, at every stage-0 width.
            names = ("w.stem_mid", "w.stem", "d.stem")
            stem_choices = list(itertools.product(*(self.space[n].choices for n in names)))
            for base in list(configs):
                if all(base[f"w.{s}"] == widths[s][-1] for s in stages if s > 0):
                    for picked in stem_choices:
                        configs.append(base.replace(**dict(zip(names, picked))))
        return configs

    def cost(self, config: Mapping[str, Any]) -> Cost:
        config = self.space.validate(config)
        stem_mid, stem_out, residual = self.stem_choice(config)
        size = conv_output_size(int(config["r"]), self.stem_stride)
        total = conv_cost(self.in_channels, stem_mid, 3, size, batch_norm=True)
        if residual:
            total += conv_cost(stem_mid, stem_mid, 3, size, batch_norm=True)
        total += conv_cost(stem_mid, stem_out, 3, size, batch_norm=True)
        if self.uses_maxpool:
            size = conv_output_size(size, 2)
        out_width = stem_out
        for block, in_width, out_width, expand_ratio in self._blocks(config):
            block_cost, size = block.cost(in_width, out_width, expand_ratio, size)
            total += block_cost
        return total + linear_cost(out_width, self.num_classes)


def _conv3x3(conv: type[nn.Module], in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """A 3x3 "same" convolution without bias, plain or elastic."""
    if conv is ElasticConv2d:
        return ElasticConv2d(in_channels, out_channels, 3, stride=stride)
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)


@register_supernet("resnet")
def resnet(*, weights: str | None = None, **kwargs: Any) -> ResNetSupernet:
    """Once-for-All ResNet-50 space (``base_width=64``); smaller ``base_width`` for small data.

    ``weights`` is the released Once-for-All ResNet-50 file (give ``elastic_stem=True``
    and OFA's choices, or use :func:`onefit.import_once_for_all`).
    """
    net = ResNetSupernet(**kwargs)
    load_weights_argument(net, weights)
    return net
