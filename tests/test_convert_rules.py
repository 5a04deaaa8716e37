"""Channel rules for custom layers: unknown layers stay static, registered ones become elastic."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import onefit
from onefit.convert import (
    ChannelRule,
    TensorDims,
    channel_rule,
    elasticize,
    list_channel_rules,
    register_channel_rule,
    unregister_channel_rule,
)
from onefit.errors import DuplicateNameError, UnknownNameError
from onefit.metrics import count
from tests.conftest import randomize_for_comparison

SIDE = 16
ATOL = 1e-5


class Scale(nn.Module):
    """A learned per-channel scale with its own weight: its outputs are its input channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)


class PointwiseConv(nn.Module):
    """A 1x1 convolution written with ``F.conv2d``: new output channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1) * 0.2)
        self.bias = nn.Parameter(torch.randn(out_channels) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


class ScaleRule(ChannelRule):
    coupled = True

    def tensors(self, layer: nn.Module) -> dict[str, TensorDims]:
        return {"weight": (0, 0)}


class PointwiseRule(ChannelRule):
    def tensors(self, layer: nn.Module) -> dict[str, TensorDims]:
        return {"weight": (1, 0), "bias": (None, 0)}


class CustomCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.bn = nn.BatchNorm2d(32)
        self.scale = Scale(32)
        self.mix = PointwiseConv(32, 48)
        self.bn2 = nn.BatchNorm2d(48)
        self.block = nn.Sequential(nn.Conv2d(48, 48, 3, padding=1), nn.BatchNorm2d(48), nn.ReLU())
        self.fc = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.scale(self.bn(self.stem(x))))
        x = torch.relu(self.bn2(self.mix(x)))
        x = x + self.block(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _model() -> CustomCNN:
    torch.manual_seed(0)
    return randomize_for_comparison(CustomCNN()).eval()


def _input(seed: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.fixture
def rules() -> Iterator[None]:
    """Both rules registered for one test, and gone after it whatever happens."""
    with channel_rule(Scale, ScaleRule()), channel_rule(PointwiseConv, PointwiseRule()):
        yield


@torch.no_grad()
def test_unknown_layers_keep_their_channels_and_the_report_says_why() -> None:
    model = _model()
    net = elasticize(model, _input(), verbose=False).eval()
    assert not [n for n in net.space.names if n.startswith("w")]  # no width is elastic
    assert "d.add" in net.space.names  # the residual block still skips
    rows = {row.layer: row for row in net.report.rows}
    # Traced into, each layer's own weights meet operations the converter does not follow.
    assert rows["conv2d"].static_because.startswith("unsupported: conv2d")
    assert "PointwiseConv" in rows["conv2d"].static_because
    assert "register_channel_rule" in rows["conv2d"].static_because
    assert "Scale" in rows["view"].static_because
    assert "unsupported op" in rows["stem"].static_because
    assert (net(_input()) - model(_input())).abs().max() <= ATOL


@torch.no_grad()
def test_registered_layers_become_elastic(rules: None) -> None:
    model = _model()
    x = _input()
    net = elasticize(model, x, verbose=False, sort=False).eval()
    assert net.space.names == ["w.stem", "w.mix", "d.add", "r"]
    rows = {row.layer: row for row in net.report.rows}
    assert (rows["scale"].op, rows["scale"].elastic) == ("Scale", "channels: w.stem")
    assert (rows["mix"].op, rows["mix"].elastic) == ("PointwiseConv", "in: w.stem, out: w.mix")
    assert rows["scale"].static_because == rows["mix"].static_because == ""
    # The largest sub-network is the original model: the same operations on the same tensors.
    assert torch.equal(net(x), model(x))
    configs = [net.space.smallest(), *net.space.sample_many(12, seed=0)]
    for config in configs:
        net.set_active(config)
        static = net.extract(config)
        assert (static(x) - net(x)).abs().max() <= ATOL, config
        assert net.cost(config) == count(static, (3, SIDE, SIDE)), config
    smallest = net.extract(net.space.smallest())
    assert isinstance(smallest.get_submodule("mix"), PointwiseConv)  # the user's own layer
    assert smallest.get_submodule("mix").weight.shape == (16, 8, 1, 1)
    assert smallest.get_submodule("scale").weight.shape == (8,)
    assert net.macs(net.space.smallest()) < net.macs(net.space.largest()) / 4


@torch.no_grad()
def test_sorting_permutes_the_custom_tensors_with_their_channels(rules: None) -> None:
    model = _model().double()
    x = _input(dtype=torch.float64)
    net = elasticize(model, x, verbose=False).eval()  # sort=True re-orders every group
    assert (net(x) - model(x)).abs().max() <= 1e-9
    unsorted = elasticize(model, x, verbose=False, sort=False)
    assert not torch.equal(net.body.get_submodule("scale.layer").weight,
                           unsorted.body.get_submodule("scale.layer").weight)  # fmt: skip


def test_sub_networks_train_the_shared_prefix_of_custom_weights(rules: None) -> None:
    net = elasticize(_model(), _input(), verbose=False, sort=False).train()
    config = net.space.largest().replace(**{"w.stem": 16, "w.mix": 24})
    net.set_active(config)
    net(_input()).square().sum().backward()
    scale = net.body.get_submodule("scale.layer").weight.grad
    mix = net.body.get_submodule("mix.layer").weight.grad
    assert scale is not None and mix is not None
    assert scale[:16].abs().sum() > 0 and scale[16:].abs().sum() == 0
    assert mix[:24, :16].abs().sum() > 0 and mix[24:].abs().sum() == 0
    assert mix[:, 16:].abs().sum() == 0


def test_register_and_unregister() -> None:
    name = f"{__name__}.Scale"
    assert name not in list_channel_rules()
    rule = register_channel_rule(Scale, ScaleRule())
    try:
        assert name in list_channel_rules()
        rows = {row.layer: row for row in elasticize(_model(), _input(), verbose=False).report.rows}
        assert rows["scale"].op == "Scale"  # one call now, no longer traced into
        with pytest.raises(DuplicateNameError, match="already registered"):
            register_channel_rule(Scale, ScaleRule())
    finally:
        assert unregister_channel_rule(Scale) is rule
    assert name not in list_channel_rules()
    with pytest.raises(
        UnknownNameError, match=r"no channel rule registered for .*Scale; registered"
    ):
        unregister_channel_rule(Scale)


def test_rule_mistakes_give_clear_errors() -> None:
    with pytest.raises(TypeError, match="ChannelRule instance, got the class ScaleRule"):
        register_channel_rule(Scale, ScaleRule)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"nn\.Module subclass"):
        register_channel_rule(int, ScaleRule())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="converted by onefit itself"):
        register_channel_rule(nn.Conv2d, PointwiseRule())

    class Misnamed(ChannelRule):
        def tensors(self, layer: nn.Module) -> dict[str, TensorDims]:
            return {"kernel": (1, 0)}

    with pytest.raises(ValueError, match="'kernel', which is not a parameter or buffer"):
        Misnamed().channels(PointwiseConv(4, 8))

    class Swapped(ChannelRule):  # says the weight is (in, out): 48 -> 32, but it maps 32 -> 48
        def tensors(self, layer: nn.Module) -> dict[str, TensorDims]:
            return {"weight": (0, 1)}

    before = list_channel_rules()  # (timm's, when a timm model was converted earlier)
    with (
        channel_rule(Scale, ScaleRule()),
        channel_rule(PointwiseConv, Swapped()),
        pytest.raises(ValueError, match=r"says mix \(PointwiseConv\) maps 48 to 32 channels"),
    ):
        elasticize(_model(), _input(), verbose=False)
    assert list_channel_rules() == before


def test_rule_defaults_slice_extract_and_count() -> None:
    layer = PointwiseConv(32, 48)
    rule = PointwiseRule()
    assert rule.channels(layer) == (32, 48)
    small = rule.extract(layer, 8, 16)
    assert small.weight.shape == (16, 8, 1, 1) and small.bias.shape == (16,)
    assert isinstance(small.weight, nn.Parameter) and layer.weight.shape == (48, 32, 1, 1)
    x = torch.randn(1, 8, 5, 5)
    assert torch.allclose(rule.forward(layer, x, 16), small(x))
    assert rule.cost(layer, 8, 16, (8, 5, 5)) == onefit.count(small, (8, 5, 5))
    assert rule.cost(layer, 8, 16, (8, 5, 5)).macs == 8 * 16 * 25
