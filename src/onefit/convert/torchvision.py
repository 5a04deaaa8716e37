"""Supernets converted from torchvision's CNNs, by name (see :func:`onefit.elasticize`).

The family ``torchvision`` builds a torchvision classification model locally (no
weights are downloaded), optionally loads a state dict the user trained, and converts
it. Being a registered family, it trains, searches, exports and reloads from
checkpoints like the built-in ones:

    onefit train --supernet torchvision \\
        --supernet-kwargs '{"model": "resnet18", "weights": "resnet18_mnist.pt"}'

Conversion options go in as keyword arguments (``"width_mode": "global"``) or as one
``"options"`` dict; the supernet's ``spec`` records them as JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from onefit.convert.factory import elasticize
from onefit.convert.options import ConversionOptions
from onefit.errors import MissingDependencyError, UserError
from onefit.files import read_state_dict
from onefit.supernets import Supernet, register_supernet
from onefit.supernets.arguments import MAX_CHANNELS, MAX_CLASSES, check_memory
from onefit.supernets.base import check_positive_int, default_resolutions


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError:
        raise MissingDependencyError(
            "the 'torchvision' supernet family needs torchvision: pip install torchvision "
            "(with its matching torch, e.g. torch==2.14.1 torchvision==0.29.1)"
        ) from None
    return torchvision


def build_torchvision_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """torchvision's classification model ``name`` with random weights.

    With ``in_channels`` other than 3 the stem convolution is replaced by one reading
    that many channels.

    Example:
        >>> build_torchvision_model("resnet18", 10, in_channels=1).conv1.in_channels
        1
    """
    models = _torchvision().models
    known = models.list_models(module=models)
    if name not in known:
        raise UserError(
            f"unknown torchvision classification model {name!r}; known: {', '.join(known)}"
        )
    model: nn.Module = models.get_model(name, weights=None, num_classes=num_classes)
    if in_channels != 3:
        stem_name, stem = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
        replacement = nn.Conv2d(
            in_channels,
            stem.out_channels,
            stem.kernel_size,  # type: ignore[arg-type]
            stride=stem.stride,  # type: ignore[arg-type]
            padding=stem.padding,  # type: ignore[arg-type]
            bias=stem.bias is not None,
        )
        parent_name, _, attr = stem_name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, replacement)
    return model


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state dict saved with ``torch.save(model.state_dict(), path)`` (strictly)."""
    state = read_state_dict(path, "weights")
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise UserError(f"{path} does not fit the model: {error}") from None


@register_supernet("torchvision")
def torchvision_supernet(
    *,
    model: str = "resnet18",
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int = 224,
    weights: str | None = None,
    options: ConversionOptions | Mapping[str, Any] | None = None,
    **conversion: Any,
) -> Supernet:
    """A :class:`~onefit.convert.ConvertedSupernet` over torchvision's ``model``.

    ``weights`` is a state-dict file of that model (same classes and input channels);
    without it the model starts from random weights. ``options`` (or its fields as
    keyword arguments, e.g. ``width_mode="global"``) says what becomes elastic, as for
    :func:`onefit.elasticize`; ``resolutions`` defaults, as in every family, to
    Once-for-All's 128..224 for ``image_size`` 224 and to ``image_size`` otherwise.

    Example:
        >>> net = torchvision_supernet(model="mobilenet_v2", num_classes=10, image_size=32)
        >>> net.num_classes, "r" in net.space
        (10, True)
    """
    check_family_arguments("torchvision", num_classes, in_channels)
    return convert_named_model(
        lambda: build_torchvision_model(model, num_classes, in_channels),
        in_channels=in_channels,
        image_size=image_size,
        weights=weights,
        options=ConversionOptions.build(options, **conversion),
    )


def check_family_arguments(family: str, num_classes: int, in_channels: int) -> None:
    """Clear errors for the arguments every by-name family takes, before building."""
    check_positive_int("num_classes", num_classes, MAX_CLASSES)
    check_positive_int("in_channels", in_channels, MAX_CHANNELS)
    # The widest classifier input of these zoos is 4096 (VGG); the first conv at most
    # 7x7x64: an estimate of the weights that grow with these arguments.
    check_memory(family, num_classes * 4097 + in_channels * 64 * 49, ["num_classes", "in_channels"])


def convert_named_model(
    build: Callable[[], nn.Module],
    *,
    in_channels: int,
    image_size: int,
    weights: str | None,
    options: ConversionOptions,
) -> Supernet:
    """Build a zoo's model, load the user's ``weights`` file into it, and convert it at
    the family's resolutions (default: 128..224 for ``image_size`` 224)."""
    sides = default_resolutions(image_size, options.resolutions)
    options = dataclasses.replace(options, resolutions=sides)
    network = build()
    if weights is not None:
        load_weights(network, weights)
    example = torch.zeros(2, in_channels, max(sides), max(sides))
    return elasticize(network, example, options, verbose=False)
