"""Supernet families, a registry of them, and the factory.

Each family is one file that registers itself in :mod:`onefit.supernets.registry`;
importing this package imports every built-in family. Families made by converting a
model (``torchvision``) register from :mod:`onefit.convert`.

Example:
    >>> import onefit
    >>> "mobilenetv3" in onefit.list_supernets()
    True
    >>> net = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=32)
    >>> net.set_active(net.space.smallest())["r"]
    32
"""

from onefit.supernets import bert, mobilenetv3, once_for_all, resnet, vit
from onefit.supernets.base import Supernet
from onefit.supernets.once_for_all import import_once_for_all
from onefit.supernets.registry import (
    INIT_ONLY_KWARGS,
    SUPERNETS,
    create_supernet,
    list_supernets,
    rebuild_supernet,
    register_supernet,
)

__all__ = [
    "INIT_ONLY_KWARGS",
    "SUPERNETS",
    "Supernet",
    "bert",
    "create_supernet",
    "import_once_for_all",
    "list_supernets",
    "mobilenetv3",
    "once_for_all",
    "rebuild_supernet",
    "register_supernet",
    "resnet",
    "vit",
]
