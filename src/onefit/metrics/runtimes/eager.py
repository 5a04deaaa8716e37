"""PyTorch eager mode: the model as it is, under ``torch.inference_mode``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from onefit.metrics.runtimes.base import Runtime, torch_devices


class EagerRuntime(Runtime):
    name = "eager"
    install_hint = "pip install torch"

    def available(self) -> bool:
        return True

    def devices(self) -> list[str]:
        return torch_devices()

    def prepare(
        self, model: nn.Module, example: torch.Tensor, device: str, threads: int
    ) -> Callable[[], object]:
        runnable = self.wrap(model.to(device).eval())
        x = example.to(device)

        def run() -> object:
            with torch.inference_mode():
                return runnable(x)

        return run

    def wrap(self, model: nn.Module) -> Callable[[torch.Tensor], object]:
        """What is called on each input (the model itself in eager mode)."""
        return model
