"""The registry of supernet families: a leaf module that every family file imports.

As in timm's ``_registry.py``, a family registers itself here at import time with
:func:`register_supernet`; the package ``__init__`` only imports the family files and
re-exports. Nothing here imports a family, so a family file never imports the package
that imports it.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Any

from onefit.errors import UserTypeError
from onefit.registry import Registry
from onefit.supernets.base import Supernet

SUPERNETS: Registry[Supernet] = Registry("supernet")
register_supernet = SUPERNETS.register

# Keyword arguments that only initialise the weights (the torchvision family's weights
# file): checkpoints and exports hold the weights, so rebuilding leaves them out.
INIT_ONLY_KWARGS = ("weights",)


def create_supernet(name: str, **kwargs: Any) -> Supernet:
    """Build the supernet family registered as ``name`` (see :func:`list_supernets`).

    Example:
        >>> import onefit
        >>> net = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=32)
        >>> net.spec["name"], net.num_classes
        ('mobilenetv3', 10)
    """
    if not isinstance(name, str):
        raise UserTypeError(f"a supernet family name is a string, got {name!r}")
    factory = SUPERNETS.get(name)
    _check_argument_names(name, factory, kwargs)
    net = factory(**kwargs)
    # Remembered so that tables and checkpoints can rebuild the same family later.
    net.spec = {"name": name, "kwargs": dict(kwargs)}
    return net


def _check_argument_names(name: str, factory: Any, kwargs: Mapping[str, Any]) -> None:
    """A UserTypeError naming an argument the family does not take (not a TypeError
    from the call), with the arguments it does take."""
    try:
        signature = _accepted_signature(factory)
    except (TypeError, ValueError, NameError):  # no signature, or unresolvable hints
        return
    try:
        signature.bind(**kwargs)
    except TypeError as error:
        accepted = [
            p.name
            for p in signature.parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        raise UserTypeError(
            f"supernet {name!r}: {error}; its arguments are: {', '.join(accepted)}"
        ) from None


def _accepted_signature(factory: Any) -> inspect.Signature:
    """The keyword arguments ``factory`` accepts. ``def family(*, weights=None, **kwargs)
    -> Family`` passes ``kwargs`` on to the class's constructor: its own keywords and
    the constructor's, together (a class that itself takes ``**kwargs`` says nothing)."""
    signature = inspect.signature(factory)
    own = list(signature.parameters.values())
    if not any(p.kind is p.VAR_KEYWORD for p in own):
        return signature
    target = typing.get_type_hints(factory).get("return")
    if not isinstance(target, type):
        return signature
    forwarded = list(inspect.signature(target).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in forwarded):
        return signature
    kind = inspect.Parameter
    named = (kind.KEYWORD_ONLY, kind.POSITIONAL_OR_KEYWORD)
    merged = {p.name: p.replace(kind=kind.KEYWORD_ONLY) for p in forwarded if p.kind in named}
    merged.update({p.name: p.replace(kind=kind.KEYWORD_ONLY) for p in own if p.kind in named})
    return inspect.Signature(list(merged.values()))


def rebuild_supernet(spec: Mapping[str, Any]) -> Supernet:
    """The supernet ``spec`` (a ``Supernet.spec``) describes, before loading its weights."""
    kwargs = {k: v for k, v in dict(spec["kwargs"]).items() if k not in INIT_ONLY_KWARGS}
    return create_supernet(str(spec["name"]), **kwargs)


def list_supernets() -> list[str]:
    """Names of the registered supernet families."""
    return SUPERNETS.names()
