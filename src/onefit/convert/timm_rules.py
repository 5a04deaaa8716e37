"""Channel rules for timm's layers, registered when a model to convert comes from timm.

timm fuses a norm and its activation into one module, ``BatchNormAct2d``: a
``BatchNorm2d`` subclass whose ``forward`` calls ``F.batch_norm`` itself, then an
element-wise activation and drop. Traced through, it becomes a functional ``batch_norm``
that the converter does not know, and every channel group that touches it stays static
(all of MobileNetV2's). timm's own tracer keeps it as one call
(``register_notrace_module``); so does onefit, with a coupled rule: its per-channel
tensors shrink with the channels around it, and the activation needs nothing.

Nothing here imports timm unless the model holds a timm layer (timm is optional).

Example:
    >>> import torch
    >>> timm = __import__("pytest").importorskip("timm")
    >>> from timm.layers import BatchNormAct2d
    >>> from onefit.convert import find_channel_rule
    >>> register_timm_rules()
    >>> rule = find_channel_rule(BatchNormAct2d(8))
    >>> rule.extract(BatchNormAct2d(8), 4, 4).num_features
    4
"""

from __future__ import annotations

import contextlib
import sys

from torch import nn

from onefit.convert.custom_rules import (
    ChannelRule,
    TensorDims,
    register_channel_rule,
)
from onefit.errors import DuplicateNameError

# A BatchNorm's per-channel tensors (weight, bias and the running statistics).
_PER_CHANNEL = ("weight", "bias", "running_mean", "running_var")


class NormActRule(ChannelRule):
    """A batch norm fused with an element-wise activation: one group in and out."""

    coupled = True

    def tensors(self, layer: nn.Module) -> dict[str, TensorDims]:
        return {name: (0, 0) for name in _PER_CHANNEL if getattr(layer, name, None) is not None}

    def extract(self, layer: nn.Module, in_channels: int, out_channels: int) -> nn.Module:
        static = super().extract(layer, in_channels, out_channels)
        # BatchNorm2d keeps its size apart from its tensors
        setattr(static, "num_features", out_channels)  # noqa: B010 (a Module attribute)
        return static


def holds_timm_layers(model: nn.Module) -> bool:
    """Whether any module of ``model`` is defined by timm."""
    return any(type(m).__module__.startswith("timm.") for m in model.modules())


def register_timm_rules() -> None:
    """Register the rules above for timm's layers (once; timm must be importable)."""
    from timm.layers import BatchNormAct2d

    # Registered before (by this function, or by the user): that rule stays.
    with contextlib.suppress(DuplicateNameError):
        register_channel_rule(BatchNormAct2d, NormActRule())


def register_for(model: nn.Module) -> None:
    """Register timm's rules when ``model`` holds timm layers (timm is then imported)."""
    if "timm" in sys.modules and holds_timm_layers(model):
        register_timm_rules()
