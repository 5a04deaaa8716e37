"""Metrics of a sub-network on a validation split, as its task defines them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from onefit.supernets.base import Supernet
from onefit.tasks import Classification, MetricState, Task
from onefit.training.bn import recalibrate_bn, resize


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    resolution: int | None = None,
    task: Task | None = None,
) -> dict[str, float]:
    """``task``'s metrics of ``model`` over ``(inputs, targets)`` batches.

    The default task is classification: top-1 accuracy (0..1), top-5 accuracy and the
    mean cross-entropy.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> batches = [(torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]))]
        >>> sorted(evaluate_model(model, batches))
        ['accuracy', 'loss', 'top5']
    """
    task = task or Classification()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    model.eval()
    state = MetricState()
    for inputs, targets in batches:
        inputs, targets = inputs.to(device), targets.to(device)
        if resolution is not None:
            inputs = resize(inputs, resolution)
        task.update(state, model(inputs), targets)
    return task.finish(state)


def evaluate_config(
    supernet: Supernet,
    config: Mapping[str, Any],
    val_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    calibration_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
    *,
    bn_batches: int = 20,
    task: Task | None = None,
) -> dict[str, float]:
    """Extract ``config``, recalibrate its batch norm on training batches, then evaluate it.

    With ``calibration_batches=None`` the supernet's shared statistics are used as they
    are (useful only to show what recalibration buys).
    """
    validated = supernet.space.validate(config)
    resolution = int(validated["r"]) if "r" in validated else None
    model = supernet.extract(validated)
    if calibration_batches is not None:
        recalibrate_bn(model, calibration_batches, num_batches=bn_batches, resolution=resolution)
    return evaluate_model(model, val_batches, resolution=resolution, task=task)
