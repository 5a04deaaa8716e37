"""``torch.compile`` (Inductor): the model compiled for the device, then run like eager."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from onefit.metrics.runtimes.eager import EagerRuntime


class CompiledRuntime(EagerRuntime):
    name = "compile"
    install_hint = "pip install torch (and a C++ compiler for the CPU backend)"

    def available(self) -> bool:
        return hasattr(torch, "compile")

    def wrap(self, model: nn.Module) -> Callable[[torch.Tensor], object]:
        return torch.compile(model, dynamic=False)
