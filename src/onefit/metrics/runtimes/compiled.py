"""``torch.compile`` (Inductor): the model compiled for the device, then run eagerly."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from onefit.metrics.runtimes.base import Runtime, torch_devices


class CompiledRuntime(Runtime):
    name = "compile"
    install_hint = "pip install torch (and a C++ compiler for the CPU backend)"

    def available(self) -> bool:
        return hasattr(torch, "compile")

    def devices(self) -> list[str]:
        return torch_devices()

    def prepare(
        self, model: nn.Module, example: torch.Tensor, device: str, threads: int
    ) -> Callable[[], object]:
        model = model.to(device).eval()
        compiled = torch.compile(model, dynamic=False)
        x = example.to(device)

        def run() -> object:
            with torch.inference_mode():
                return compiled(x)

        return run
