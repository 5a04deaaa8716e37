"""Make a supernet from an existing model (BootstrapNAS, InstaTune).

Example:
    >>> import torch, onefit
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
    ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    >>> net = onefit.elasticize(model.eval(), torch.randn(2, 3, 16, 16), verbose=False).eval()
    >>> net.space.names
    ['w.0', 'r']
    >>> torch.allclose(net(torch.ones(1, 3, 16, 16)), model(torch.ones(1, 3, 16, 16)))
    True
"""

from __future__ import annotations

# Importing these registers the families "torchvision", "timm" and "model".
from onefit.convert import imported, timm_family, torchvision  # noqa: F401
from onefit.convert.bert import bert_from_transformers
from onefit.convert.custom_rules import (
    ChannelRule,
    TensorDims,
    channel_rule,
    find_channel_rule,
    list_channel_rules,
    register_channel_rule,
    unregister_channel_rule,
)
from onefit.convert.factory import elasticize
from onefit.convert.options import ConversionOptions
from onefit.convert.report import ConversionReport, ReportRow
from onefit.convert.supernet import ConvertedSupernet, width_choices
from onefit.convert.transformers import vit_from_torchvision

__all__ = [
    "ChannelRule",
    "ConversionOptions",
    "ConversionReport",
    "ConvertedSupernet",
    "ReportRow",
    "TensorDims",
    "bert_from_transformers",
    "channel_rule",
    "elasticize",
    "find_channel_rule",
    "list_channel_rules",
    "register_channel_rule",
    "unregister_channel_rule",
    "vit_from_torchvision",
    "width_choices",
]
