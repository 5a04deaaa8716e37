"""Importing released Once-for-All supernets: checked against OFA's own network code.

PyPI's ``ofa`` package (MIT HAN Lab) holds ``OFAMobileNetV3``. Its supernets are built
here with random weights (every parameter, batch-norm statistic and kernel-transform
matrix random), saved as OFA's model zoo saves them, imported, and every sub-network
must compute what OFA's code computes, in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

import onefit
from onefit.errors import UnknownNameError, UserError
from onefit.supernets.once_for_all import import_once_for_all, ofa_state_dict

ofa_networks = pytest.importorskip("ofa.imagenet_classification.elastic_nn.networks")
ofa_utils = pytest.importorskip("ofa.utils.pytorch_utils")

NAMES = {1.0: "ofa_mbv3_d234_e346_k357_w1.0", 1.2: "ofa_mbv3_d234_e346_k357_w1.2"}


@torch.no_grad()
def _randomize(net: torch.nn.Module, seed: int) -> None:
    """Random values for every float tensor, at scales that keep activations finite."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in net.state_dict().items():
        if not tensor.dtype.is_floating_point:
            continue
        if name.endswith("_matrix"):  # kernel transform: far from the identity it starts at
            eye = torch.eye(tensor.shape[0])
            tensor.copy_(eye + 0.3 * torch.randn(tensor.shape, generator=generator))
        elif name.endswith("running_var"):
            tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
        elif tensor.dim() > 1:  # He-scaled weights
            std = math.sqrt(2 / tensor[0].numel())
            tensor.copy_(std * torch.randn(tensor.shape, generator=generator))
        else:  # biases, BN affine and means
            tensor.copy_(
                0.1 * torch.randn(tensor.shape, generator=generator)
                + 1.0 * name.endswith("bn.weight")
            )


def _ofa_mobilenetv3(width: float, num_classes: int = 10) -> torch.nn.Module:
    net = ofa_networks.OFAMobileNetV3(
        n_classes=num_classes,
        dropout_rate=0,
        width_mult=width,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    _randomize(net, seed=int(width * 10))
    return net.eval()


def _old_spelling(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The key names of OFA's older files, which its own loader still rewrites."""
    old = {}
    for key, value in state.items():
        key = key.replace(".bn.bn.", ".bn.").replace(".conv.conv.weight", ".conv.weight")
        key = key.replace(".linear.linear.", ".linear.")
        if key.startswith("blocks."):
            key = key.replace(".conv.", ".mobile_inverted_conv.", 1)
        old[key] = value
    return old


def _set_ofa(ofa: torch.nn.Module, config: dict) -> None:
    ofa.set_active_subnet(
        ks=[config[f"ks.{i}"] for i in range(20)],
        e=[config[f"e.{i}"] for i in range(20)],
        d=[config[f"d.{s}"] for s in range(5)],
    )


@pytest.fixture(scope="module", params=[1.0, 1.2], ids=["w1.0", "w1.2"])
def imported(request, tmp_path_factory):
    """OFA's supernet and onefit's import of its file (old key spelling), both float64."""
    width = request.param
    ofa = _ofa_mobilenetv3(width)
    path = tmp_path_factory.mktemp("ofa") / NAMES[width]
    torch.save({"state_dict": _old_spelling(ofa.state_dict())}, path)
    net = import_once_for_all(path, NAMES[width])
    return width, ofa.double(), net.double().eval()


def _configs(net, count: int) -> list[dict]:
    return [net.space.smallest(), net.space.largest()] + [
        net.space.sample(seed) for seed in range(count)
    ]


def _worst_difference(ofa, net, set_ofa: Callable, batch: int) -> float:
    """Largest |OFA - onefit| over the smallest, largest and 30 random configs, relative
    to the logits' scale (random weights give logits of 1 to 1e3)."""
    worst = 0.0
    for config in _configs(net, 30):
        config = net.set_active(config)
        set_ofa(ofa, config)
        x = torch.randn(batch, 3, config["r"], config["r"], dtype=torch.float64)
        with torch.no_grad():
            expected, got = ofa(x), net(x)
        scale = expected.abs().max().item()
        assert scale > 1e-3  # a real signal, not zeros compared to zeros
        worst = max(worst, (expected - got).abs().max().item() / scale)
    return worst


def _check_costs(ofa, net, set_ofa: Callable, count: int, rel: float) -> list:
    """Params and MACs of ``count`` random configs (and the extremes) equal those of OFA's
    own sub-networks, counted by onefit exactly and, for the first three, by OFA's
    float32 counter up to ``rel``. Returns the configs checked."""
    configs = [net.space.validate(c) for c in _configs(net, count)]
    for index, config in enumerate(configs):
        set_ofa(ofa, config)
        subnet = ofa.get_active_subnet(preserve_weight=True).float()
        shape = (3, config["r"], config["r"])
        cost = net.cost(config)
        assert cost.params == sum(p.numel() for p in subnet.parameters())
        assert cost.macs == onefit.count(subnet, shape).macs
        if index < 3:
            ofa_macs = ofa_utils.count_net_flops(subnet, (1, *shape))
            assert cost.macs == pytest.approx(ofa_macs, rel=rel)
    return configs


def test_every_sub_network_computes_what_ofa_computes(imported):
    width, ofa, net = imported
    assert net.width_mult == width and net.num_classes == 10
    worst = _worst_difference(ofa, net, _set_ofa, batch=2)
    assert worst <= 1e-9, f"largest difference from OFA's outputs: {worst:.3g} of the logits"


def test_macs_and_params_equal_ofas_sub_networks(imported):
    _, ofa, net = imported
    _check_costs(ofa, net, _set_ofa, count=8, rel=1e-7)  # float32 rounding at 8e8


def test_ofas_own_loader_reads_the_old_spelling_used_here():
    """The fixture's old key names are ones OFA's code accepts (so they are real)."""
    ofa = _ofa_mobilenetv3(1.0)
    fresh = ofa_networks.OFAMobileNetV3(
        n_classes=10, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    fresh.load_state_dict(_old_spelling(ofa.state_dict()))
    for key, value in ofa.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_ofa_state_dict_is_the_inverse_of_the_import():
    ofa = _ofa_mobilenetv3(1.0)
    net = import_once_for_all(ofa.state_dict())
    exported = ofa_state_dict(net)
    assert exported.keys() == ofa.state_dict().keys()
    assert all(torch.equal(exported[k], v) for k, v in ofa.state_dict().items())


def test_the_mobilenetv3_family_takes_ofa_weights_and_rebuilds_without_them(tmp_path):
    ofa = _ofa_mobilenetv3(1.0)
    path = tmp_path / "ofa.pt"
    torch.save({"state_dict": ofa.state_dict()}, path)
    net = onefit.create_supernet("mobilenetv3", num_classes=10, dropout=0, weights=str(path))
    assert torch.equal(net.stem[0].weight, ofa.first_conv.conv.weight)
    rebuilt = onefit.supernets.rebuild_supernet(net.spec)
    assert not torch.equal(rebuilt.stem[0].weight, net.stem[0].weight)  # weights come later


def _image_folder(root, classes: int, per_class: int):
    """A tiny ImageFolder tree of random 32x32 RGB images (train/ and test/)."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = torch.randint(0, 256, (32, 32, 3), generator=generator, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    return root


def test_an_imported_supernet_trains_searches_and_exports_as_a_run(tmp_path):
    """epochs=0: the run holds the imported weights unchanged, ready to search."""
    from onefit.search.supernet import search_run

    ofa = _ofa_mobilenetv3(1.0)
    path = tmp_path / "ofa.pt"
    torch.save({"state_dict": ofa.state_dict()}, path)
    data = _image_folder(tmp_path / "images", classes=10, per_class=2)
    kwargs = {"weights": str(path), "num_classes": 10, "dropout": 0.0, "image_size": 32}
    run = tmp_path / "run"
    result = onefit.train(
        dataset=str(data), batch_size=10, supernet="mobilenetv3", supernet_kwargs=kwargs, epochs=0,
        run_dir=str(run), progress=False,
    )  # fmt: skip
    assert result.steps == 0
    net = onefit.load_supernet(run)
    expected = import_once_for_all(ofa.state_dict(), image_size=32)
    for key, value in expected.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
    search_run(run, {"accuracy": "max", "macs": "min"}, strategy="random", budget=3,
               store=str(run / "search" / "results.db"), progress=False)  # fmt: skip
    exported = onefit.deploy.export(run, "most-accurate", format="torchscript", latency_repeats=2)
    assert exported.model_path.is_file()


def test_wrong_name_shape_or_file_is_a_clear_error(tmp_path):
    ofa = _ofa_mobilenetv3(1.0)
    with pytest.raises(UserError, match=r"expects .* is the file of another width"):
        import_once_for_all(ofa.state_dict(), NAMES[1.2])
    with pytest.raises(UnknownNameError, match="unknown Once-for-All supernet 'ofa_resnet18'"):
        import_once_for_all(ofa.state_dict(), "ofa_resnet18")
    with pytest.raises(UserError, match=r"holds no classifier\.linear weight"):
        import_once_for_all({"conv.weight": torch.zeros(1)})
    partial = dict(ofa.state_dict())
    partial.pop("blocks.3.conv.point_linear.bn.bn.running_mean")
    with pytest.raises(
        UserError, match=r"1 missing \(first: \['stages.0.2.project_bn.running_mean"
    ):
        import_once_for_all(partial)
    with pytest.raises(UserError, match="does not exist"):
        import_once_for_all(tmp_path / "nothing.pt")
    with pytest.raises(UserError, match="a file path or a state dict"):
        import_once_for_all(3)  # type: ignore[arg-type]


# -- OFA-ResNet50 --------------------------------------------------------------------------
WIDTHS = [0.65, 0.8, 1.0]
BASE_DEPTHS = [2, 2, 4, 2]


@pytest.fixture(scope="module")
def imported_resnet(tmp_path_factory):
    """OFA's ResNet-50 supernet and onefit's import of its file, both float64."""
    ofa = ofa_networks.OFAResNets(
        n_classes=10,
        dropout_rate=0,
        depth_list=[0, 1, 2],
        expand_ratio_list=[0.2, 0.25, 0.35],
        width_mult_list=WIDTHS,
    )
    _randomize(ofa, seed=50)
    path = tmp_path_factory.mktemp("ofa") / "ofa_resnet50_d0-1-2_e0.2-0.25-0.35_w0.65-0.8-1.0"
    torch.save({"state_dict": ofa.state_dict()}, path)
    net = import_once_for_all(path, "ofa_resnet50")
    return ofa.eval().double(), net.double().eval()


def _set_ofa_resnet(ofa: torch.nn.Module, config: dict) -> None:
    """onefit's config in OFA's terms: depths as extras (the stem's 2 = its conv runs),
    widths as indices into the width list."""
    ofa.set_active_subnet(
        d=[2 * config["d.stem"]] + [config[f"d.{s}"] - BASE_DEPTHS[s] for s in range(4)],
        e=[config[f"e.{i}"] for i in range(18)],
        w=[WIDTHS.index(config["w.stem_mid"]), WIDTHS.index(config["w.stem"])]
        + [WIDTHS.index(config[f"w.{s}"]) for s in range(4)],
    )


def test_every_ofa_resnet_sub_network_computes_what_ofa_computes(imported_resnet):
    ofa, net = imported_resnet
    assert net.spec["name"] == "resnet" and net.elastic_stem
    assert {"w.stem_mid", "w.stem", "d.stem"} <= set(net.space.names)
    worst = _worst_difference(ofa, net, _set_ofa_resnet, batch=1)
    assert worst <= 1e-9, f"largest difference from OFA's outputs: {worst:.3g} of the logits"


def test_ofa_resnet_macs_and_params_equal_ofas_sub_networks(imported_resnet):
    ofa, net = imported_resnet
    # OFA's counter sums in float32 (ulp 512 at 7.5e9): rounding only.
    configs = _check_costs(ofa, net, _set_ofa_resnet, count=12, rel=1e-6)
    assert {c["d.stem"] for c in configs} == {0, 1}  # with and without the stem's residual conv


@torch.no_grad()
def test_the_elastic_stem_extracts_exactly_and_its_units_are_profiled() -> None:
    net = onefit.create_supernet(
        "resnet", num_classes=10, base_width=16, image_size=64, elastic_stem=True
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    configs = [net.space.smallest(), net.space.largest(), *net.space.sample_many(6, seed=1)]
    for config in configs:
        net.set_active(config)
        static = net.extract(config)
        assert (static(x) - net(x)).abs().max() <= 1e-5
        assert net.cost(config) == onefit.count(static, (3, 64, 64))
        mid, out, residual = net.stem_choice(config)
        assert static[0][0].out_channels == mid and static[0][-3].num_features == out
        assert len(static[0]) == (8 if residual else 7)  # 3 (+ residual) + 3 + max-pool
    # A latency table measures each unit of profiling_configs once: every config's are there.
    profiled = {unit for c in net.profiling_configs() for unit in net.units(c)}
    for config in net.space.sample_many(50, seed=2):
        assert set(net.units(config)) <= profiled, config
    with pytest.raises(UserError, match="elastic_stem must be true or false"):
        onefit.create_supernet("resnet", elastic_stem="yes")


def test_a_file_without_batch_counters_loads_and_two_spellings_of_a_key_do_not() -> None:
    ofa = _ofa_mobilenetv3(1.0)
    state = {k: v for k, v in ofa.state_dict().items() if not k.endswith("num_batches_tracked")}
    net = import_once_for_all(state)  # OFA's code never reads the counters
    assert torch.equal(net.stem[1].running_mean, ofa.first_conv.bn.running_mean)
    both = {**ofa.state_dict(), "first_conv.conv.conv.weight": ofa.first_conv.conv.weight}
    with pytest.raises(UserError, match=r"names stem\.0\.weight a second time"):
        import_once_for_all(both)
    with pytest.raises(UserError, match="weights is the path of a file, got OrderedDict"):
        onefit.create_supernet("mobilenetv3", num_classes=10, weights=ofa.state_dict())


@torch.no_grad()
def test_an_elastic_stem_wider_than_its_base_width_is_built_wide() -> None:
    net = onefit.create_supernet(
        "resnet", num_classes=10, base_width=16, image_size=64, elastic_stem=True,
        width_mults=(0.5, 1.0, 1.5),
    ).eval()  # fmt: skip
    assert net.stem_widths == (16, 24)  # make_divisible(16 * 1.5) // 2 -> 16; 16 * 1.5 -> 24
    x = torch.randn(2, 3, 64, 64)
    outputs = []
    for stem in (1.0, 1.5):
        config = net.space.largest().replace(**{"w.stem": stem})
        net.set_active(config)
        static = net.extract(config)
        assert (static(x) - net(x)).abs().max() <= 1e-5
        assert net.cost(config) == onefit.count(static, (3, 64, 64))
        outputs.append(net(x))
    assert not torch.allclose(outputs[0], outputs[1])  # two different networks
