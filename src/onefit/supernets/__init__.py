"""Supernet families, a registry of them, and the factory.

Example:
    >>> import onefit
    >>> "mobilenetv3" in onefit.list_supernets()
    True
    >>> net = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=32)
    >>> net.set_active(net.space.smallest())["r"]
    32
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onefit.registry import Registry
from onefit.supernets.base import Supernet

SUPERNETS: Registry[Supernet] = Registry("supernet")
register_supernet = SUPERNETS.register


def create_supernet(name: str, **kwargs: Any) -> Supernet:
    """Build the supernet family registered as ``name`` (see :func:`list_supernets`)."""
    net = SUPERNETS.create(name, **kwargs)
    # Remembered so that tables and checkpoints can rebuild the same family later.
    net.spec = {"name": name, "kwargs": dict(kwargs)}
    return net


# Keyword arguments that only initialise the weights (the torchvision family's weights
# file): checkpoints and exports hold the weights, so rebuilding leaves them out.
INIT_ONLY_KWARGS = ("weights",)


def rebuild_supernet(spec: Mapping[str, Any]) -> Supernet:
    """The supernet ``spec`` (a ``Supernet.spec``) describes, before loading its weights."""
    kwargs = {k: v for k, v in dict(spec["kwargs"]).items() if k not in INIT_ONLY_KWARGS}
    return create_supernet(str(spec["name"]), **kwargs)


def list_supernets() -> list[str]:
    """Names of the registered supernet families."""
    return SUPERNETS.names()


# Importing the family modules registers them.
from onefit.supernets import bert, mobilenetv3, resnet, torchvision, vit  # noqa: E402

__all__ = [
    "SUPERNETS",
    "Supernet",
    "bert",
    "create_supernet",
    "list_supernets",
    "mobilenetv3",
    "rebuild_supernet",
    "register_supernet",
    "resnet",
    "torchvision",
    "vit",
]
