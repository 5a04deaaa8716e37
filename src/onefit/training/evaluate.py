"""Accuracy and loss of a sub-network on a validation split."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from onefit.supernets.base import Supernet
from onefit.training.bn import recalibrate_bn, resize


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    resolution: int | None = None,
) -> dict[str, float]:
    """Top-1 accuracy (0..1) and mean cross-entropy of ``model`` over ``batches``."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    model.eval()
    correct = 0
    total = 0
    loss_sum = 0.0
    for images, labels in batches:
        images, labels = images.to(device), labels.to(device)
        if resolution is not None:
            images = resize(images, resolution)
        logits = model(images)
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == labels).sum())
        total += labels.numel()
    if total == 0:
        raise ValueError("evaluate got an empty validation set")
    return {"accuracy": correct / total, "loss": loss_sum / total}


def evaluate_config(
    supernet: Supernet,
    config: Mapping[str, Any],
    val_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    calibration_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
    *,
    bn_batches: int = 20,
) -> dict[str, float]:
    """Extract ``config``, recalibrate its batch norm on training batches, then evaluate it.

    With ``calibration_batches=None`` the supernet's shared statistics are used as they
    are (useful only to show what recalibration buys).
    """
    resolution = int(supernet.space.validate(config)["r"])
    model = supernet.extract(config)
    if calibration_batches is not None:
        recalibrate_bn(model, calibration_batches, num_batches=bn_batches, resolution=resolution)
    return evaluate_model(model, val_batches, resolution=resolution)
