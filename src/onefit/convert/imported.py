"""Supernets converted from your own model, named by its import path (family ``model``).

A run has to rebuild its supernet in a later process (search, export, report) without
unpickling code. For a model onefit does not know, the recipe is the function that
builds it: an import path ``package.module:function`` (the convention of uvicorn and
torchrun) plus its keyword arguments and the input shape. The family ``model`` imports
that function, builds the model, optionally loads a state dict, and converts it with
:func:`onefit.elasticize`; the checkpoint then supplies the trained weights.

    onefit train --model mypackage.models:small_cnn --input-shape 1,28,28 --dataset mnist/

Example:
    >>> import onefit
    >>> net = onefit.create_supernet("model", factory="torch.nn:Identity", input_shape=[3, 8, 8])
    Traceback (most recent call last):
    ...
    onefit.errors.UserError: the model built by torch.nn:Identity has no parameters to make elastic
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from onefit.convert.factory import elasticize
from onefit.convert.options import ConversionOptions
from onefit.convert.torchvision import load_weights
from onefit.errors import UserError
from onefit.supernets.base import Supernet, check_positive_int
from onefit.supernets.registry import register_supernet


def import_factory(path: str) -> Any:
    """The object ``package.module:attribute`` names (``attribute`` may be dotted).

    Example:
        >>> import_factory("torch.nn:Linear").__name__
        'Linear'
    """
    if not isinstance(path, str) or path.count(":") != 1:
        raise UserError(f"a model's import path is 'package.module:function', got {path!r}")
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise UserError(f"a model's import path is 'package.module:function', got {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(
            f"cannot import {module_name!r} for the model {path!r} ({error}); run from the "
            "folder that holds it or add that folder to PYTHONPATH"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UserError(f"module {module_name!r} has no attribute {attribute!r} ({path!r})")
        target = getattr(target, part)
    if not callable(target):
        raise UserError(f"{path!r} is not callable: it must build an nn.Module")
    return target


def build_model(path: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Call the function ``path`` names with ``kwargs``; it must return an ``nn.Module``."""
    factory = import_factory(path)
    try:
        model = factory(**dict(kwargs or {}))
    except TypeError as error:
        raise UserError(f"building the model {path!r} failed: {error}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{path!r} returned {type(model).__name__}, not a torch nn.Module")
    return model


def _input_shape(
    input_shape: Sequence[int] | None, in_channels: int | None, image_size: int | None
) -> tuple[int, ...]:
    if input_shape is None:
        if in_channels is None or image_size is None:
            raise UserError("the model family needs input_shape (e.g. [3, 32, 32])")
        return (in_channels, image_size, image_size)
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise UserError(
            f"input_shape is one image's (channels, side, side), got {list(input_shape)}"
        )
    for value in shape:
        check_positive_int("input_shape entries", value)
    return shape


def example_cnn(num_classes: int = 1000, in_channels: int = 3, width: int = 32) -> nn.Module:
    """The model the family builds when no ``factory`` is named: a small residual CNN
    (a stand-in that shows the family's contract; name your own model's function)."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
            self.norm = nn.BatchNorm2d(width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.relu(self.norm(self.conv(x)))

    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
        nn.ReLU(), Block(), Block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(width, num_classes),
    )  # fmt: skip


@register_supernet("model")
def imported_supernet(
    *,
    factory: str | None = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    image_size: int | None = None,
    weights: str | None = None,
    options: ConversionOptions | Mapping[str, Any] | None = None,
    **conversion: Any,
) -> Supernet:
    """A supernet over the model that ``factory(**factory_kwargs)`` builds.

    Without ``factory`` it builds :func:`example_cnn`. ``input_shape`` is one input
    image ``(channels, side, side)`` (default: from ``in_channels`` and ``image_size``,
    which the trainer fills in from the data);
    ``num_classes``, when given, must equal the model's number of outputs. ``weights``
    is a state-dict file of the model; ``options`` and further keyword arguments are
    :class:`~onefit.convert.ConversionOptions` fields.
    """
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                        ("image_size", image_size)):  # fmt: skip
        if value is not None:
            check_positive_int(name, value)
    if factory is None:
        factory = f"{__name__}:example_cnn"
        in_channels, image_size = in_channels or 3, image_size or 224
        factory_kwargs = {"num_classes": num_classes or 1000, "in_channels": in_channels}
    shape = _input_shape(input_shape, in_channels, image_size)
    if in_channels is not None and input_shape is not None and in_channels != shape[0]:
        raise UserError(
            f"the data has {in_channels} input channel(s) but input_shape is {list(shape)}"
        )
    model = build_model(factory, factory_kwargs)
    if next(model.parameters(), None) is None:
        raise UserError(f"the model built by {factory} has no parameters to make elastic")
    if weights is not None:
        load_weights(model, weights)
    example = torch.zeros(2, *shape)
    if num_classes is not None:
        with torch.no_grad():
            outputs = model.eval()(example)
        if outputs.dim() != 2 or outputs.shape[1] != num_classes:
            raise UserError(
                f"the model {factory} gives outputs of shape {tuple(outputs.shape)} for "
                f"{tuple(example.shape)} inputs; the data needs (N, {num_classes})"
            )
    opts = ConversionOptions.build(options, **conversion)
    return elasticize(model.eval(), example, opts, verbose=False)
