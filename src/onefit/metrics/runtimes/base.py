"""What a runtime offers: turn a static model into a callable that runs one batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import nn

from onefit.errors import UserError


class RuntimeUnavailableError(UserError, RuntimeError):
    """The runtime, its device or its provider cannot be used here (says what to install)."""


class Runtime(ABC):
    """One way of running an extracted model: PyTorch eager, ONNX Runtime, ...

    Subclasses set ``name``, ``install_hint`` (what ``pip install`` makes them
    available) and implement :meth:`available`, :meth:`devices` and :meth:`prepare`.
    """

    name: str = ""
    install_hint: str = ""

    @abstractmethod
    def available(self) -> bool:
        """Whether the runtime's libraries import on this machine."""

    @abstractmethod
    def devices(self) -> list[str]:
        """Devices this runtime can run on here, e.g. ``["cpu", "cuda"]``."""

    @abstractmethod
    def prepare(
        self, model: nn.Module, example: torch.Tensor, device: str, threads: int
    ) -> Callable[[], object]:
        """A callable running ``model`` on ``example`` once; warm-up is the caller's job."""

    def check(self, device: str) -> None:
        """Raise :class:`RuntimeUnavailableError` unless this runtime can run on ``device``."""
        if not self.available():
            raise RuntimeUnavailableError(
                f"runtime {self.name!r} is not installed; install it with: {self.install_hint}"
            )
        kind = device.split(":")[0]
        if kind not in self.devices():
            raise RuntimeUnavailableError(
                f"runtime {self.name!r} cannot run on {device!r} here; "
                f"available devices: {self.devices()}"
            )


def torch_devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
