"""Supernets converted from timm's models, by name: the ``timm`` family.

Like the ``torchvision`` family, it builds the model locally (``pretrained=False``:
nothing downloads), optionally loads a state dict the user trained or fetched, and
converts it with :func:`onefit.elasticize` (timm's fused norm + activation layers have
channel rules, see :mod:`onefit.convert.timm_rules`). As a registered family it trains,
searches, exports and reloads from checkpoints from the command line:

    onefit train --dataset path/to/images --set supernet=timm \\
        --set supernet_kwargs='{"model": "efficientnet_b0", "weights": "effnet.pt"}'

timm adapts the stem to ``in_channels`` itself (``in_chans``), as it does for its own
pretrained weights.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from torch import nn

from onefit.convert.options import ConversionOptions
from onefit.convert.torchvision import check_family_arguments, convert_named_model
from onefit.errors import MissingDependencyError, UserError
from onefit.supernets import Supernet, register_supernet


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise MissingDependencyError(
            "the 'timm' supernet family needs timm: pip install 'onefit[timm]'"
        ) from None
    return timm


def build_timm_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """timm's model ``name`` with random weights (``pretrained=False``).

    Example:
        >>> build_timm_model("resnet18", 10, in_channels=1).conv1.in_channels
        1
    """
    timm = _timm()
    if not isinstance(name, str) or not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown timm model {name!r} (timm.list_models() lists them){hint}")
    model: nn.Module = timm.create_model(
        name, pretrained=False, num_classes=num_classes, in_chans=in_channels
    )
    return model


@register_supernet("timm")
def timm_supernet(
    *,
    model: str = "resnet18",
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int = 224,
    weights: str | None = None,
    options: ConversionOptions | Mapping[str, Any] | None = None,
    **conversion: Any,
) -> Supernet:
    """A :class:`~onefit.convert.ConvertedSupernet` over timm's ``model``.

    ``weights`` is a state-dict file of that model (same classes and input channels),
    e.g. ``torch.save(timm.create_model(name, pretrained=True).state_dict(), path)`` on
    a machine with internet; without it the model starts from random weights.
    ``options`` (or its fields as keyword arguments) say what becomes elastic, as for
    :func:`onefit.elasticize`.

    Example:
        >>> net = timm_supernet(model="mobilenetv3_small_100", num_classes=10, image_size=32)
        >>> net.num_classes, net.macs(net.space.smallest()) < net.macs(net.space.largest())
        (10, True)
    """
    check_family_arguments("timm", num_classes, in_channels)
    return convert_named_model(
        lambda: build_timm_model(model, num_classes, in_channels),
        in_channels=in_channels,
        image_size=image_size,
        weights=weights,
        options=ConversionOptions.build(options, **conversion),
    )
