"""Elastic transformer encoders from existing models (HAT, InstaTune, SortedNet).

A torchvision ``VisionTransformer`` maps one-to-one onto onefit's ``vit`` family:
the same pre-norm blocks, class token, learned positions and fused q/k/v projection
(rows ordered q|k|v, then head, then head dimension). Its weights are copied into an
:class:`~onefit.supernets.vit.ElasticViT` whose largest config has exactly the
original's sizes, so the largest sub-network computes what the model computes; the
smaller choices (embedding width, depth, heads and MLP width per layer) are prefixes
of it, as in HAT and InstaTune.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from onefit.convert.report import ConversionReport, ReportRow
from onefit.convert.supernet import width_choices
from onefit.errors import UserError
from onefit.supernets.vit import ElasticViT


def is_torchvision_vit(model: nn.Module) -> bool:
    """True for torchvision's ``VisionTransformer`` (checked by structure, no import)."""
    return type(model).__name__ == "VisionTransformer" and hasattr(model, "conv_proj")


def count_choices(full: int, ratios: Sequence[float]) -> list[int]:
    """Counts (layers, heads) ``ratio * full`` rounded up, plus ``full`` itself."""
    return sorted({max(1, math.ceil(full * ratio)) for ratio in ratios} | {full})


def finish_conversion(net: Any, name: str, kwargs: dict[str, Any], copy_weights: Any,
                      model: nn.Module, sort: bool) -> None:  # fmt: skip
    """Record how to rebuild ``net`` (family ``name``), copy ``model``'s weights into it,
    sort heads and MLP units by importance, and activate the largest config."""
    net.spec = {"name": name, "kwargs": kwargs}
    copy_weights(model, net)
    if sort:
        net.sort_channels()
    net.set_active(net.space.largest())


def vit_from_torchvision(
    model: nn.Module,
    *,
    width_ratios: Sequence[float] = (0.5, 0.75, 1.0),
    depth_ratios: Sequence[float] = (0.5, 0.75, 1.0),
    head_ratios: Sequence[float] = (0.5, 0.75, 1.0),
    mlp_ratios: Sequence[float] = (0.5, 0.75, 1.0),
    round_to: int = 8,
    resolutions: Sequence[int] | None = None,
    sort: bool = True,
) -> ElasticViT:
    """An elastic ViT holding ``model``'s weights; its largest config is ``model``.

    ``*_ratios`` give the smaller choices as fractions of the original embedding
    width, depth, heads per layer and MLP width (the original is always a choice).
    ``resolutions`` defaults to the model's image size only: smaller inputs would use a
    prefix of the learned position table, which pretrained weights do not support.
    """
    vit: Any = model  # torchvision's VisionTransformer, typed loosely to avoid importing it
    if not isinstance(vit.conv_proj, nn.Conv2d):
        raise UserError("only ViTs with a single-convolution patch embedding convert")
    encoder = vit.encoder
    layers = list(encoder.layers)
    first = layers[0]
    width = int(vit.hidden_dim)
    heads = int(first.num_heads)
    mlp = int(first.mlp[0].out_features)
    head = vit.heads
    if len(head) != 1 or not hasattr(head, "head"):
        raise UserError(
            "only ViTs whose head is a single linear layer convert (representation_size=None)"
        )
    if width % heads:
        raise UserError(f"hidden_dim {width} is not a multiple of num_heads {heads}")
    image_size, patch = int(vit.image_size), int(vit.patch_size)
    kwargs: dict[str, Any] = {
        "num_classes": int(head.head.out_features),
        "in_channels": int(vit.conv_proj.in_channels),
        "image_size": image_size,
        "resolutions": list(resolutions or [image_size]),
        "patch_size": patch,
        "embed_dims": width_choices(width, width_ratios, round_to),
        "depths": count_choices(len(layers), depth_ratios),
        "num_heads": count_choices(heads, head_ratios),
        "mlp_ratios": [h / width for h in width_choices(mlp, mlp_ratios, round_to)],
        "head_dim": width // heads,
        "norm_eps": float(encoder.ln.eps),
    }
    reference = next(model.parameters())
    net = ElasticViT(**kwargs).to(device=reference.device, dtype=reference.dtype)
    finish_conversion(net, "vit", kwargs, _copy_weights, model, sort)
    net.report = _report(model, net)  # type: ignore[assignment]
    return net


@torch.no_grad()
def _copy_weights(model: Any, net: ElasticViT) -> None:
    net.patch.weight.copy_(model.conv_proj.weight)
    net.patch_bias.copy_(model.conv_proj.bias)
    net.cls_token.copy_(model.class_token)
    positions = model.encoder.pos_embedding
    if positions.shape != net.pos_embed.shape:
        raise UserError(
            f"position table {tuple(positions.shape)} does not fit {tuple(net.pos_embed.shape)}"
        )
    net.pos_embed.copy_(positions)
    for block, layer in zip(model.encoder.layers, net.layer_list):
        attention = block.self_attention
        if not attention._qkv_same_embed_dim or attention.in_proj_bias is None:
            raise UserError("only attention with a fused, biased q/k/v projection converts")
        layer.norm1.load_state_dict(block.ln_1.state_dict())
        layer.qkv.weight.copy_(attention.in_proj_weight)
        layer.qkv.bias.copy_(attention.in_proj_bias)
        layer.proj.load_state_dict(attention.out_proj.state_dict())
        layer.norm2.load_state_dict(block.ln_2.state_dict())
        layer.fc1.load_state_dict(block.mlp[0].state_dict())
        layer.fc2.load_state_dict(block.mlp[3].state_dict())
    net.norm.load_state_dict(model.encoder.ln.state_dict())
    net.head.load_state_dict(model.heads.head.state_dict())


def _report(model: nn.Module, net: ElasticViT) -> ConversionReport:
    rows = [
        ReportRow("conv_proj", "Conv2d", "out: w", "in: model input"),
        ReportRow("class_token", "parameter", "channels: w", ""),
        ReportRow("encoder.pos_embedding", "parameter", "channels: w; tokens: r", ""),
    ]
    for i in range(len(net.layer_list)):
        prefix = f"encoder.layers.encoder_layer_{i}"
        depth = f"depth: d (layer {i + 1} of {len(net.layer_list)})"
        rows += [
            ReportRow(f"{prefix}.ln_1", "LayerNorm", f"channels: w, {depth}", ""),
            ReportRow(
                f"{prefix}.self_attention",
                "MultiheadAttention",
                f"in/out: w, heads: h.{i}, {depth}",
                "",
            ),
            ReportRow(f"{prefix}.ln_2", "LayerNorm", f"channels: w, {depth}", ""),
            ReportRow(f"{prefix}.mlp.0", "Linear", f"in: w, out: m.{i}, {depth}", ""),
            ReportRow(f"{prefix}.mlp.3", "Linear", f"in: m.{i}, out: w, {depth}", ""),
        ]
    rows += [
        ReportRow("encoder.ln", "LayerNorm", "channels: w", ""),
        ReportRow("heads.head", "Linear", "in: w", "out: model output"),
    ]
    return ConversionReport.of(type(model).__name__, rows, net.space)
