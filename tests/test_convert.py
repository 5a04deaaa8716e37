"""onefit.elasticize on torchvision's CNNs and on models with operations it does not know."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

import onefit
from onefit.convert import ConversionOptions, ConvertedSupernet, elasticize
from onefit.metrics import count
from tests.conftest import randomize_for_comparison

torchvision = pytest.importorskip("torchvision")

MODELS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0",
          "convnext_tiny"]  # fmt: skip
SIDE = 32
N_RANDOM = 20
ATOL = 1e-5


def _model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    # Non-trivial BN scales, shifts and statistics, so that every channel matters.
    randomize_for_comparison(model, seed=seed)
    model.train()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = None  # cumulative average: the statistics of these batches
        for _ in range(2):
            model(torch.randn(8, 3, SIDE, SIDE))
    return model.eval()


def _input(seed: int = 1, n: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.fixture(scope="module", params=MODELS)
def converted(request: pytest.FixtureRequest) -> tuple[str, nn.Module, ConvertedSupernet]:
    model = _model(request.param)
    net = elasticize(model, _input(), verbose=False).eval()
    return request.param, model, net


# Residual chains (blocks of one stage after its first, downsampling block) and their
# lengths, and the number of depthwise convolutions with kernels of 5 or more.
EXPECTED = {
    "resnet18": ({"layer1.0": 2, "layer2.1": 1, "layer3.1": 1, "layer4.1": 1}, 0),
    "resnet50": ({"layer1.1": 2, "layer2.1": 3, "layer3.1": 5, "layer4.1": 2}, 0),
    "mobilenet_v2": (
        {"features.3": 1, "features.5": 2, "features.8": 3, "features.12": 2, "features.15": 2},
        0,  # 3x3 depthwise only
    ),
    "mobilenet_v3_large": (
        {
            "features.1": 1,
            "features.3": 1,
            "features.5": 2,
            "features.8": 3,
            "features.12": 1,
            "features.14": 2,
        },
        6,  # blocks 4-6 and 13-15 are 5x5
    ),
    "efficientnet_b0": (
        {
            "features.2.1": 1,
            "features.3.1": 1,
            "features.4.1": 2,
            "features.5.1": 2,
            "features.6.1": 3,
        },
        9,  # stages 3, 5 and 6 are 5x5 (2 + 3 + 4 blocks)
    ),
    "convnext_tiny": (
        {"features.1.0": 3, "features.3.0": 3, "features.5.0": 9, "features.7.0": 3},
        18,
    ),
}


def test_report_lists_every_layer_and_what_became_elastic(converted) -> None:
    name, model, net = converted
    report = net.report
    layers = {row.layer: row for row in report.rows}
    weighted = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert set(weighted) <= set(layers), "every convolution and linear layer has a row"
    chains, kernels = EXPECTED[name]
    depth = {d[2:]: max(net.space[d].choices) for d in net.space.names if d.startswith("d.")}
    assert depth == chains
    assert sum(1 for d in net.space.names if d.startswith("k.")) == kernels
    assert sum(1 for d in net.space.names if d.startswith("w.")) >= 10
    # The classifier keeps its 10 outputs, and says so.
    classifier = weighted[-1]
    assert "model output" in layers[classifier].static_because
    assert "in: w." in layers[classifier].elastic
    # The stem reads the 3 input channels: static input, elastic output.
    stem = layers[weighted[0]]
    assert "model input" in stem.static_because and "out: w." in stem.elastic
    text = str(report)
    assert report.summary() in text and classifier in text
    assert set(report.to_dict()["dimensions"]) == set(net.space.names)


@torch.no_grad()
def test_largest_config_computes_the_original_model(converted) -> None:
    name, model, _ = converted
    x = _input()
    expected = model(x)
    # Without re-sorting, the same float32 operations in the same order.
    unsorted = elasticize(model, x, verbose=False, sort=False).eval()
    assert (unsorted(x) - expected).abs().max() <= ATOL
    # Importance sorting re-orders channels (so float32 sums run in another order): in
    # float64 the function is the same to 1e-9.
    model64 = _model(name).double()
    net64 = elasticize(model64, x.double(), verbose=False).eval()
    assert (net64(x.double()) - model64(x.double())).abs().max() <= 1e-9


@torch.no_grad()
def test_random_configs_extract_to_equal_static_models_with_exact_cost(converted) -> None:
    _, _, net = converted
    x = _input(seed=2)
    configs = [net.space.smallest(), *net.space.sample_many(N_RANDOM, seed=0)]
    for config in configs:
        net.set_active(config)
        static = net.extract(config)
        assert isinstance(static, torch.fx.GraphModule)
        assert (static(x) - net(x)).abs().max() <= ATOL, config
        assert net.cost(config) == count(static, (3, SIDE, SIDE)), config
    # Smaller configs are really smaller.
    assert net.macs(net.space.smallest()) < net.macs(net.space.largest()) / 4


@torch.no_grad()
def test_sub_networks_drop_layers_and_channels(converted) -> None:
    _, model, net = converted
    static = net.extract(net.space.smallest())
    original = dict(model.named_modules())
    kept = dict(static.named_modules())
    convs = [n for n, m in original.items() if isinstance(m, nn.Conv2d)]
    assert sum(n in kept for n in convs) < len(convs), "skipped blocks leave their layers out"
    narrower = [n for n in convs if n in kept and kept[n].out_channels < original[n].out_channels]
    assert narrower, "narrow sub-networks have fewer channels"


class ResNeXtLike(nn.Module):
    """A bottleneck with a grouped 3x3 of 6 channels per group (8 groups of 48)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.reduce = nn.Sequential(nn.Conv2d(32, 48, 1), nn.BatchNorm2d(48), nn.ReLU())
        self.grouped = nn.Sequential(
            nn.Conv2d(48, 48, 3, padding=1, groups=8), nn.BatchNorm2d(48), nn.ReLU()
        )
        self.expand = nn.Sequential(nn.Conv2d(48, 32, 1), nn.BatchNorm2d(32))
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.expand(self.grouped(self.reduce(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@torch.no_grad()
def test_a_grouped_convolution_shrinks_by_whole_groups() -> None:
    torch.manual_seed(0)
    model = randomize_for_comparison(ResNeXtLike()).eval()
    x = _input()
    net = elasticize(model, x, verbose=False).eval()
    # Multiples of lcm(8, 6 channels per group) = 24: whole groups, channels rounded to 8.
    assert net.space["w.reduce.0"].choices == (24, 48)
    rows = {row.layer: row for row in net.report.rows}
    assert rows["grouped.0"].elastic.startswith("channels: w.reduce.0")
    net.set_largest()
    assert (net(x) - model(x)).abs().max() <= ATOL  # sorting moved whole groups
    configs = [net.space.smallest(), net.space.largest(), *net.space.sample_many(6, seed=0)]
    for config in configs:
        net.set_active(config)
        static = net.extract(config)
        assert (static(x) - net(x)).abs().max() <= ATOL
        assert net.cost(config) == count(static, tuple(x.shape[1:]))
        if config["d.add"]:  # the block runs (0: skipped)
            conv = static.get_submodule("grouped.0")
            assert conv.groups == conv.in_channels // 6 == config["w.reduce.0"] // 6


class ShuffleNetLike(nn.Module):
    """A CNN with a channel shuffle (view/transpose) and a cumulative sum: unknown ops."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.bn = nn.BatchNorm2d(32)
        self.expand = nn.Conv2d(32, 64, 1)
        self.mix = nn.Conv2d(64, 64, 3, padding=1, groups=4)
        self.head_conv = nn.Conv2d(64, 48, 1)
        self.body = nn.Sequential(nn.Conv2d(48, 48, 3, padding=1), nn.BatchNorm2d(48), nn.ReLU())
        self.fc = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = self.expand(x)
        n, c, h, w = x.shape
        x = x.view(n, 4, c // 4, h, w).transpose(1, 2).reshape(n, c, h, w)
        x = torch.cumsum(self.mix(x), dim=1)
        x = self.head_conv(x)
        x = x + self.body(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@torch.no_grad()
def test_unsupported_operations_stay_static_and_the_rest_becomes_elastic() -> None:
    torch.manual_seed(0)
    model = randomize_for_comparison(ShuffleNetLike()).eval()
    x = _input()
    net = elasticize(model, x, verbose=False).eval()
    rows = {row.layer: row for row in net.report.rows}
    # The shuffle's reshape and the cumsum are reported as unsupported; the channels
    # next to them (expand's output, mix's input and output) keep their width.
    unsupported = [r for r in net.report.rows if r.static_because.startswith("unsupported")]
    assert {r.op for r in unsupported} == {"Tensor.view", "Tensor.transpose", "Tensor.reshape",
                                           "cumsum"}  # fmt: skip
    assert "out:" not in rows["expand"].elastic
    assert "unsupported op" in rows["expand"].static_because
    # The grouped conv could shrink by whole groups, but the shuffle beside it fixes it.
    assert rows["mix"].elastic == "" and "unsupported op" in rows["mix"].static_because
    # The stem's output and the residual stage after the cumsum are still elastic.
    assert "out: w.stem" in rows["stem"].elastic
    assert any(d.startswith("d.") for d in net.space.names)
    assert net.space.names == ["w.stem", "w.head_conv", "d.add", "r"]
    assert (net(x) - model(x)).abs().max() <= ATOL
    for config in net.space.sample_many(10, seed=1):
        net.set_active(config)
        static = net.extract(config)
        assert (static(x) - net(x)).abs().max() <= ATOL
        assert net.cost(config) == count(static, (3, SIDE, SIDE))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # fx cannot trace a branch on values
            return self.fc(x.flatten(1))
        return self.fc(x.flatten(1)) * 2


class WithUntraceablePart(nn.Module):
    """A CNN with one submodule fx cannot trace into (a branch on values)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.odd = DataDependentConv()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.odd(self.body(self.stem(x))))


class DataDependentConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(32, 32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if x.mean() > -1e9 else x  # a branch on values


@torch.no_grad()
def test_a_module_fx_cannot_trace_stays_whole_and_the_rest_elastic() -> None:
    torch.manual_seed(0)
    model = WithUntraceablePart().eval()
    x = _input()
    net = elasticize(model, x, verbose=False).eval()
    rows = {row.layer: row for row in net.report.rows}
    assert "torch.fx cannot trace this DataDependentConv" in rows["odd"].static_because
    assert "x.mean() > -1e9" in rows["odd"].static_because  # the line it stopped at
    assert net.space.names == ["w.stem.0", "r"]  # the stem shrinks; body.0 feeds odd
    net.set_largest()
    assert (net(x) - model(x)).abs().max() <= ATOL
    config = net.space.smallest()
    net.set_active(config)
    static = net.extract(config)
    assert (static(x) - net(x)).abs().max() <= ATOL
    assert net.cost(config) == count(static, tuple(x.shape[1:]))


def test_bad_input_gives_clear_errors() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2)
    )
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        elasticize(18, _input())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"import path is 'package\.module:function'"):
        elasticize("resnet18", _input())  # a string names the function building a model
    with pytest.raises(TypeError, match="example_input"):
        elasticize(model, [1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="square images"):
        elasticize(model, torch.zeros(1, 3, 16, 12))
    with pytest.raises(
        ValueError, match=r"torch\.fx .* at test_convert\.py:\d+: `if x\.sum\(\) > 0:"
    ):
        elasticize(DataDependent(), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        elasticize(nn.Conv2d(3, 8, 3), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="unknown torchvision classification model"):
        onefit.create_supernet("torchvision", model="resnet-18", num_classes=10, image_size=32)


def test_torchvision_family_loads_weights_and_adapts_input_channels(tmp_path) -> None:
    from onefit.convert.torchvision import build_torchvision_model

    model = _model("mobilenet_v2")
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    net = onefit.create_supernet(
        "torchvision", model="mobilenet_v2", num_classes=10, image_size=SIDE, weights=str(path)
    ).eval()
    x = _input()
    with torch.no_grad():
        assert (net(x) - model(x)).abs().max() <= 1e-4
    gray = build_torchvision_model("resnet18", 10, in_channels=1).eval()
    assert gray.conv1.in_channels == 1 and gray(torch.zeros(1, 1, SIDE, SIDE)).shape == (1, 10)
    with pytest.raises(ValueError, match="does not fit"):
        onefit.create_supernet("torchvision", model="resnet18", num_classes=10, image_size=SIDE,
                               weights=str(path))  # fmt: skip


@pytest.mark.slow
def test_converted_cnn_trains_searches_and_exports_like_any_family(tmp_path) -> None:
    """The whole pipeline on a torchvision ResNet-18 converted from a weights file."""
    import numpy as np
    import onnxruntime

    from onefit.convert.torchvision import build_torchvision_model
    from onefit.search.supernet import search_run

    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pt"
    torch.save(build_torchvision_model("resnet18", 10, in_channels=1).state_dict(), weights)
    run = tmp_path / "run"
    kwargs = {"model": "resnet18", "weights": str(weights), "options": {"width_ratios": [0.5, 1.0]}}
    onefit.train(supernet="torchvision", supernet_kwargs=kwargs, epochs=1, batch_size=128,
                 run_dir=str(run), progress=False, tensorboard=False, bn_batches=2)  # fmt: skip
    weights.unlink()  # the checkpoint holds the weights: rebuilding must not need the file
    net = onefit.load_supernet(run)
    assert net.spec is not None and net.spec["name"] == "torchvision"
    assert net.spec["options"]["width_ratios"] == [0.5, 1.0] and net.space["w.conv1"].choices == (
        32,
        64,
    )
    store = str(run / "search" / "results.db")
    found = search_run(run, {"accuracy": "max", "macs": "min"}, strategy="random", budget=4,
                       seed=0, store=store, progress=False)  # fmt: skip
    assert len(found.history) == 4 and all(e.ok for e in found.history)
    exported = onefit.deploy.export(run, "smallest", format="onnx", latency_repeats=5)
    card = exported.card
    config = net.space.validate(card.config)
    assert card.macs == net.macs(config) and card.params == net.params(config)
    session = onnxruntime.InferenceSession(str(exported.model_path))
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    (logits,) = session.run(None, {"input": x.numpy()})
    pt = onefit.deploy.export(run, "smallest", format="pt", latency_repeats=5)
    model = onefit.deploy.load_exported(pt.model_path)
    with torch.no_grad():
        assert np.abs(logits - model(x).numpy()).max() <= 1e-4


class Tricky(nn.Module):
    """Functional dropout, a chunk, a keyword operand, two residual runs in one module."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.left = nn.Conv2d(32, 32, 1)
        self.right = nn.Conv2d(32, 32, 1)
        self.gate = nn.Conv2d(32, 32, 1)
        self.first = nn.ModuleList([nn.Conv2d(16, 16, 3, padding=1) for _ in range(2)])
        self.down = nn.Conv2d(16, 24, 3, stride=2, padding=1)
        self.second = nn.ModuleList([nn.Conv2d(24, 24, 3, padding=1) for _ in range(2)])
        self.fc = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.add(self.left(x), other=self.right(x))  # couples left and right
        a, b = self.gate(x).chunk(2, dim=1)  # splits channels: kept static
        x = a * torch.sigmoid(b)
        for conv in self.first:
            x = x + torch.relu(conv(x))
        x = self.down(x)
        for conv in self.second:
            x = x + torch.relu(conv(x))
        x = nn.functional.dropout(x, 0.5, self.training)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@torch.no_grad()
def test_functional_dropout_chunks_keyword_operands_and_separate_chains() -> None:
    torch.manual_seed(0)
    model = randomize_for_comparison(Tricky()).train()  # converted from training mode
    net = elasticize(model, _input(), verbose=False)
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    x = _input()
    assert (net(x) - model.eval()(x)).abs().max() <= ATOL  # no dropout baked in
    names = net.space.names
    assert "w.left" in names and "w.right" not in names  # one group: added together
    assert "w.gate" not in names  # the chunked channels keep their width
    rows = {row.layer: row for row in net.report.rows}
    assert rows["chunk"].static_because.startswith("unsupported")
    depth = [n for n in names if n.startswith("d.")]
    assert len(depth) == 2, depth  # the strided conv separates the two runs
    for config in net.space.sample_many(10, seed=2):
        net.set_active(config)
        static = net.extract(config)
        assert (static(x) - net(x)).abs().max() <= ATOL
        assert net.cost(config) == count(static, (3, SIDE, SIDE))


@torch.no_grad()
def test_global_width_mode_ties_every_group_to_one_ratio() -> None:
    model = _model("mobilenet_v2")
    x = _input()
    net = elasticize(model, x, verbose=False, width_mode="global").eval()
    assert [n for n in net.space.names if n.startswith("w")] == ["w"]
    assert net.space["w"].choices == (0.25, 0.5, 0.75, 1.0)
    assert (net(x) - model(x)).abs().max() <= 1e-4  # sorted channels: float32 reordering
    per_group = elasticize(model, x, verbose=False).eval()
    for ratio in (0.25, 0.5):
        config = net.space.largest().replace(w=ratio)
        static = net.extract(config)
        net.set_active(config)
        assert (static(x) - net(x)).abs().max() <= ATOL
        assert net.cost(config) == count(static, (3, SIDE, SIDE))
        # The same network as every group of the per-group space at that ratio.
        same = {n: min(per_group.space[n].choices, key=lambda c, n=n: (
            abs(c / max(per_group.space[n].choices) - ratio), c))
            for n in per_group.space.names if n.startswith("w.")}  # fmt: skip
        assert net.macs(config) == per_group.macs(per_group.space.largest().replace(**same))
    with pytest.raises(ValueError, match="width_mode"):
        elasticize(model, x, verbose=False, width_mode="stage")


def test_conversion_options_are_checked_and_round_trip_through_json() -> None:
    options = ConversionOptions(width_ratios=[0.5, 1], resolutions=[32, 24], sort=False)
    assert options.width_ratios == (0.5, 1.0) and options.resolutions == (32, 24)
    data = json.loads(json.dumps(options.to_dict()))
    assert ConversionOptions.from_dict(data) == options
    assert ConversionOptions.build(options, depth=False) == replace(options, depth=False)
    bad = {
        "width_ratios": ([0.5, 1.5], r"numbers in \(0, 1\].*got \[0\.5, 1\.5\]"),
        "round_to": (0, "positive integer, got 0"),
        "depth": ("yes", "True or False, got 'yes'"),
        "resolutions": ([32.5], r"positive integers up to 8192, got \[32\.5\]"),
        "width_mode": ("stage", r"one of \['group', 'global'\], got 'stage'"),
    }
    for name, (value, message) in bad.items():
        with pytest.raises(ValueError, match=message):
            ConversionOptions(**{name: value})
    with pytest.raises(TypeError, match=r"unknown conversion option.*'widht_mode'.*width_mode"):
        ConversionOptions.build(widht_mode="global")
    with pytest.raises(TypeError, match="unknown conversion option"):
        elasticize(nn.Linear(2, 2), _input(), widht_mode="global")


@torch.no_grad()
def test_options_object_dict_and_keywords_convert_alike() -> None:
    model = randomize_for_comparison(Tricky()).eval()
    x = _input()
    settings = {"width_ratios": [0.5, 1.0], "round_to": 4, "depth": False, "resolutions": [32, 24]}
    by_keywords = elasticize(model, x, verbose=False, **settings)
    by_object = elasticize(model, x, ConversionOptions(**settings), verbose=False)
    by_dict = elasticize(model, x, settings, verbose=False)
    overridden = elasticize(model, x, ConversionOptions(**settings), verbose=False, depth=True)
    assert isinstance(by_keywords, ConvertedSupernet)
    assert by_keywords.options == by_object.options == by_dict.options
    assert by_keywords.space == by_object.space == by_dict.space
    assert not any(n.startswith("d.") for n in by_keywords.space.names)
    assert by_keywords.space["r"].choices == (24, 32) and by_keywords.spec is None
    assert any(n.startswith("d.") for n in overridden.space.names)
    with pytest.raises(TypeError, match="options must be a ConversionOptions"):
        ConvertedSupernet(model, x, settings)  # type: ignore[arg-type]


def test_torchvision_family_records_its_options_in_the_spec_as_json() -> None:
    common = {"model": "resnet18", "num_classes": 10, "image_size": SIDE}
    flat = onefit.create_supernet("torchvision", **common, width_ratios=[0.5, 1.0])
    given = onefit.create_supernet("torchvision", **common,
                                   options=ConversionOptions(width_ratios=(0.5, 1.0)))  # fmt: skip
    for net in (flat, given):
        spec = json.loads(json.dumps(net.spec))  # JSON-able, whatever the caller passed
        assert spec["options"] == {**ConversionOptions().to_dict(), "width_ratios": [0.5, 1.0],
                                   "resolutions": [SIDE]}  # fmt: skip
        assert net.space["w.conv1"].choices == (32, 64)
    assert given.spec is not None and given.spec["kwargs"]["options"]["width_ratios"] == [0.5, 1.0]
    rebuilt = onefit.supernets.rebuild_supernet(given.spec)
    assert rebuilt.space == given.space and rebuilt.spec == given.spec
