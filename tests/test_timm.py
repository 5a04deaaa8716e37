"""timm models through onefit.elasticize: exact, elastic, and costed like any family.

Built with ``pretrained=False`` (nothing downloads) and converted with default options.
The rule of "converted well" (issue 15): the largest config computes what the model
does, random sub-networks extract to static models that compute what the supernet does
and cost what the generic counter counts, and the smallest keeps at most half the MACs.
The share of timm's models that meet it is measured in ``benchmarks/timm_conversion.py``.
"""

from __future__ import annotations

import functools

import pytest
import torch

import onefit
from onefit.errors import UserError
from onefit.metrics.counting import count

timm = pytest.importorskip("timm")

# 22 models, 15 families; each converts well (see BENCHMARKS.md for the 47-model survey).
WELL = [
    "resnet18", "resnetv2_50", "resnext50_32x4d", "regnetx_002", "mobilenetv2_100",
    "mobilenetv3_small_100", "efficientnet_b0", "mnasnet_100", "fbnetc_100", "lcnet_100",
    "tinynet_a", "ghostnet_100", "densenet121", "cspresnet50", "dla34", "repvgg_a0",
    "mobileone_s0", "convnext_atto", "poolformer_s12", "hardcorenas_a", "levit_128s",
    "vit_tiny_patch16_224",
]  # fmt: skip
SIDE = 64
TOLERANCE = 1e-5


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@functools.cache
def converted(name: str) -> tuple[torch.nn.Module, onefit.Supernet, torch.Tensor]:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    side = model.pretrained_cfg["input_size"][-1] if "vit" in name or "levit" in name else SIDE
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    return model, onefit.elasticize(model, x, verbose=False).eval(), x


@pytest.mark.parametrize("name", WELL)
@torch.no_grad()
def test_timm_model_converts_well(name: str) -> None:
    model, net, x = converted(name)
    net.set_largest()
    assert _relative(net(x), model(x)) <= TOLERANCE
    space = net.space
    largest = net.macs(space.largest())
    assert net.macs(space.smallest()) <= largest / 2, "the smallest keeps over half the MACs"
    for config in [space.smallest(), *space.sample_many(10, seed=0)]:
        net.set_active(config)
        static = net.extract(config)
        assert _relative(static(x), net(x)) <= TOLERANCE, config
        assert net.cost(config) == count(static, tuple(x.shape[1:])), config


@torch.no_grad()
def test_a_fused_norm_and_activation_shrinks_with_its_channels() -> None:
    # timm's BatchNormAct2d is one call with a coupled rule, not a functional batch_norm
    # that would keep every channel group around it static.
    from timm.layers import BatchNormAct2d

    _, net, _ = converted("mobilenetv2_100")
    static = net.extract(net.space.smallest())
    narrowed = [m for m in static.modules() if isinstance(m, BatchNormAct2d)]
    assert narrowed and any(m.num_features < 32 for m in narrowed)
    assert all(m.num_features == m.weight.shape[0] == m.running_mean.shape[0] for m in narrowed)


def test_a_model_torch_fx_cannot_trace_is_a_clear_error_naming_it() -> None:
    # tf_ variants pad "same" with data-dependent Python control flow.
    model = timm.create_model("tf_efficientnet_b0", pretrained=False, num_classes=10).eval()
    with pytest.raises(UserError, match=r"cannot trace EfficientNet with torch\.fx"):
        onefit.elasticize(model, torch.randn(1, 3, SIDE, SIDE), verbose=False)
