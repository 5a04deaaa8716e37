"""Runtimes that latency is measured on, as a registry.

Example:
    >>> from onefit.metrics.runtimes import get_runtime, list_runtimes
    >>> "eager" in list_runtimes() and "onnxruntime" in list_runtimes()
    True
    >>> get_runtime("eager").devices()[0]
    'cpu'
"""

from __future__ import annotations

from typing import Any

from onefit.errors import UnknownNameError
from onefit.metrics.runtimes.base import Runtime, RuntimeUnavailableError
from onefit.metrics.runtimes.compiled import CompiledRuntime
from onefit.metrics.runtimes.eager import EagerRuntime
from onefit.metrics.runtimes.onnx_runtime import OnnxRuntime, export_onnx
from onefit.registry import Registry


class UnknownRuntimeError(UnknownNameError, RuntimeUnavailableError):
    """A runtime name nobody registered: the registry's unknown-name error, and also a
    :class:`RuntimeUnavailableError` (what code measuring latency already catches)."""


RUNTIMES: Registry[Runtime] = Registry("runtime")
register_runtime = RUNTIMES.register
register_runtime("eager")(EagerRuntime)
register_runtime("onnxruntime")(OnnxRuntime)
register_runtime("compile")(CompiledRuntime)


def create_runtime(name: str, **kwargs: Any) -> Runtime:
    """Build the runtime registered as ``name``, installed or not (see :func:`get_runtime`)."""
    return RUNTIMES.create(name, **kwargs)


def list_runtimes() -> list[str]:
    """Names of the registered runtimes (installed or not)."""
    return RUNTIMES.names()


def get_runtime(name: str) -> Runtime:
    """The runtime registered as ``name``; an unknown name raises
    :class:`UnknownRuntimeError` listing the registered and the installed ones."""
    if name not in RUNTIMES:
        available = [n for n in RUNTIMES.names() if RUNTIMES.create(n).available()]
        raise UnknownRuntimeError(
            f"unknown runtime {name!r}; known: {', '.join(RUNTIMES.names())}; "
            f"installed here: {', '.join(available) or '(none)'}"
        )
    return RUNTIMES.create(name)


__all__ = [
    "RUNTIMES",
    "CompiledRuntime",
    "EagerRuntime",
    "OnnxRuntime",
    "Runtime",
    "RuntimeUnavailableError",
    "UnknownRuntimeError",
    "create_runtime",
    "export_onnx",
    "get_runtime",
    "list_runtimes",
    "register_runtime",
]
