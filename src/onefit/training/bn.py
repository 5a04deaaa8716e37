"""Batch-norm recalibration: running statistics for one sub-network.

A supernet's shared running statistics mix every sub-network seen in training, so they
fit none of them well. Before a sub-network is evaluated or exported, its statistics
are re-estimated on a few training batches (Once-for-All, Sec. 3.3; Yu et al.,
"Slimmable Networks"). onefit does this on the extracted static model, which leaves the
supernet untouched and gives the numbers the deployed model will have.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from onefit.errors import UserError


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch to ``size`` x ``size`` (no-op when it already is, or for token ids)."""
    if not images.is_floating_point() or images.dim() != 4:
        return images
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | Iterable[torch.Tensor],
    *,
    num_batches: int = 20,
    resolution: int | None = None,
) -> nn.Module:
    """Re-estimate every batch norm's running mean/variance on ``num_batches`` batches.

    Statistics are exact averages over the batches (momentum ``None``), not an
    exponential average. ``batches`` yields images or ``(images, labels)``; images are
    resized to ``resolution`` when given. Returns ``model`` in eval mode.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
        >>> data = [torch.full((4, 1, 3, 3), 5.0)]
        >>> recalibrate_bn(net, data, num_batches=1)[1].running_mean.shape
        torch.Size([2])
    """
    if num_batches < 1:
        raise UserError(f"num_batches must be >= 1, got {num_batches}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    model.train()
    seen = 0
    try:
        for batch in batches:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            images = images.to(device)
            if resolution is not None:
                images = resize(images, resolution)
            model(images)
            seen += 1
            if seen >= num_batches:
                break
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()
    if seen == 0:
        raise UserError("recalibrate_bn got no batches")
    return model
