"""Conformance suite: every registered supernet family must pass every test here.

Families are built through the common constructor contract ``create_supernet(name,
num_classes=..., image_size=...)`` and fed through their ``input_spec`` (image batches or
token ids), so a newly registered family is checked without touching this file. Tests
about image inputs (channels, resolutions) run over the families that read images, and
their token-id counterparts over the families that read tokens.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import onefit
from onefit import static as static_modules
from onefit.supernets import Supernet
from tests.conftest import calibrate_batchnorm, randomize_for_comparison


def _input_kind(family: str) -> str:
    with torch.device("meta"):  # only the input spec is needed: no memory for weights
        return onefit.create_supernet(family, num_classes=2).input_spec.kind


FAMILIES = onefit.list_supernets()
IMAGE_FAMILIES = [family for family in FAMILIES if _input_kind(family) == "image"]
TOKEN_FAMILIES = [family for family in FAMILIES if _input_kind(family) == "tokens"]
N_RANDOM = 50
ATOL = 1e-5


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _build(family: str, seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    net = onefit.create_supernet(family, num_classes=10, image_size=32)
    randomize_for_comparison(net, seed=seed)
    return calibrate_batchnorm(net, _batch(net, net.space.largest(), n=8, seed=seed + 1))


@pytest.fixture(params=IMAGE_FAMILIES)
def image_family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=TOKEN_FAMILIES)
def token_family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("length", [1, 8, 128])
def test_family_works_at_every_sequence_length(token_family: str, length: int) -> None:
    net = onefit.create_supernet(token_family, num_classes=7, image_size=length, vocab_size=50)
    config = net.eval().space.smallest()
    net.set_active(config)
    with torch.no_grad():
        assert net(net.example_input(3, config)).shape == (3, 7)
    assert net.input_shape(config) == (length,)
    assert net.macs(config) == onefit.count(net.extract(config), (length,), dtype=torch.long).macs


@pytest.fixture(scope="module")
def supernet(family: str) -> Supernet:
    return _build(family)


def _configs(net: Supernet) -> list:
    return [net.space.smallest(), net.space.largest(), *net.space.sample_many(N_RANDOM, seed=0)]


def _batch(net: Supernet, config, n: int = 2, seed: int = 0) -> torch.Tensor:
    return net.input_spec.example(n, config, seed=seed)


def _in_float64(net: Supernet, x: torch.Tensor) -> torch.Tensor:
    """``x`` as the float64 copy of ``net`` reads it (token ids stay integers)."""
    return x.double() if x.is_floating_point() else x


def test_space_has_resolution_and_largest_is_default(family: str) -> None:
    fresh = onefit.create_supernet(family, num_classes=10, image_size=32)
    assert "r" in fresh.space and fresh.resolutions == (32,)
    assert fresh.active_config == fresh.space.largest()


@torch.no_grad()
def test_extracted_models_equal_the_supernet_and_its_analytic_cost(supernet: Supernet) -> None:
    worst = 0.0
    for config in _configs(supernet):
        supernet.set_active(config)
        calibrate_batchnorm(supernet, _batch(supernet, config, n=8, seed=1))
        static = supernet.extract()
        x = _batch(supernet, config)
        expected = supernet(x)
        got = static(x)
        assert got.shape == expected.shape == (2, 10)
        # Outputs of order one that depend on the input: an absolute tolerance means something.
        assert expected.abs().max() > 0.1
        assert (expected[0] - expected[1]).abs().max() > 1e-3
        worst = max(worst, (got - expected).abs().max().item())
        measured = onefit.count(static, supernet.input_shape(config), dtype=supernet.input_dtype)
        assert measured == supernet.cost(config), config
        assert supernet.macs(config) == measured.macs and supernet.params(config) == measured.params
        assert supernet.active_config == config  # extract leaves the supernet as it was
    assert worst <= ATOL


@torch.no_grad()
def test_extraction_copies_every_tensor_exactly_in_float64(family: str) -> None:
    # Layers are built uninitialised, on the supernet's device and dtype: every tensor
    # must then hold the supernet's values (no uninitialised memory, no float32 detour).
    net = _build(family).double().eval()
    config = net.space.sample(seed=5)
    net.set_active(config)
    static = net.extract(config)
    tensors = [*static.parameters(), *static.buffers()]
    assert all(t.dtype == torch.float64 for t in tensors if t.is_floating_point())
    assert all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())
    x = _batch(net, config)
    if x.is_floating_point():
        x = x.double()
    expected = net(x)
    assert (static(x) - expected).abs().max() <= 1e-12 * max(1.0, expected.abs().max().item())


@torch.no_grad()
def test_configs_give_different_networks(supernet: Supernet) -> None:
    small, large = supernet.space.smallest(), supernet.space.largest()
    assert supernet.macs(small) < supernet.macs(large)
    assert supernet.params(small) < supernet.params(large)
    x = _batch(supernet, large)
    supernet.set_active(small)
    out_small = supernet(x)
    supernet.set_active(large)
    assert not torch.allclose(out_small, supernet(x))


def test_extracted_model_is_plain_torch(supernet: Supernet) -> None:
    static = supernet.extract(supernet.space.sample(seed=3))
    allowed = tuple(getattr(static_modules, name) for name in static_modules.__all__)
    for module in static.modules():
        cls = type(module)
        # torch.fx: converted models extract to a GraphModule of the same plain layers.
        # timm's own layers (BatchNormAct2d) stay in converted timm models, narrowed.
        plain = cls.__module__.startswith(("torch.nn", "torch.fx", "timm."))
        assert plain or isinstance(module, allowed), cls
    # It shares no storage with the supernet: changing it leaves the supernet alone.
    before = [p.clone() for p in supernet.parameters()]
    with torch.no_grad():
        for p in static.parameters():
            p.add_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, supernet.parameters()))


@torch.no_grad()
def test_extracted_model_pickles_and_scripts(supernet: Supernet, tmp_path: Path) -> None:
    config = supernet.space.sample(seed=4)
    static = supernet.extract(config)
    x = _batch(supernet, config)
    expected = static(x)
    assert torch.equal(pickle.loads(pickle.dumps(static))(x), expected)
    scripted = torch.jit.script(static)
    torch.testing.assert_close(scripted(x), expected, rtol=0, atol=ATOL)
    # A scripted sub-network runs in a process that never imports onefit.
    path = tmp_path / "model.pt"
    scripted.save(str(path))
    torch.save(x, tmp_path / "x.pt")
    torch.save(expected, tmp_path / "y.pt")
    code = (
        "import sys, torch\n"
        f"m = torch.jit.load({str(path)!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)\n"
        f"y = torch.load({str(tmp_path / 'y.pt')!r}, weights_only=True)\n"
        "assert (m(x) - y).abs().max() <= 1e-5\n"
        "assert 'onefit' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


@torch.no_grad()
def test_sorting_channels_keeps_the_largest_network_function(family: str) -> None:
    # In float64, so that the re-ordered sums inside each conv differ from the originals
    # by ~1e-15 and any real change of function stands out.
    net = _build(family, seed=1).double()
    for p in net.parameters():  # scramble the importance order, so the sort has work to do
        p.mul_(torch.rand_like(p) + 0.5)
    large, small = net.space.largest(), net.space.smallest()
    net.set_active(large)
    calibrate_batchnorm(net, _in_float64(net, _batch(net, large, n=8, seed=2)))
    x = _in_float64(net, _batch(net, large))
    before = net(x)
    net.set_active(small)
    small_before = net(x)
    net.sort_channels()
    net.set_active(large)
    torch.testing.assert_close(net(x), before, rtol=0, atol=1e-10)
    net.set_active(small)
    assert not torch.allclose(net(x), small_before)  # the prefixes small networks keep changed


def test_training_mode_backward_reaches_shared_weights(family: str) -> None:
    net = onefit.create_supernet(family, num_classes=10, image_size=32).train()
    config = net.sample_active(seed=5)
    loss = net(_batch(net, config, n=4)).logsumexp(dim=1).mean()
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 1, 32, 32), r"expected 3 input channel\(s\), got 1"),
        ((2, 3, 30, 30), r"input resolution 30x30 is not in the search space; r is one of \[32\]"),
        ((2, 3, 32, 16), r"input resolution 32x16"),
        ((3, 32, 32), r"expected a 4-D batch"),
    ],
)
def test_bad_image_input_gives_a_clear_error(image_family: str, shape: tuple, message: str) -> None:
    net = onefit.create_supernet(image_family, num_classes=10, image_size=32)
    with pytest.raises(ValueError, match=message):
        net(torch.zeros(shape))


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (torch.zeros(2, 32), r"expected integer token ids of shape \(N, 32\), got torch.float32"),
        (torch.zeros(2, 16, dtype=torch.long), r"of shape \(N, 32\), got torch.int64 \(2, 16\)"),
        (torch.zeros(32, dtype=torch.long), r"of shape \(N, 32\)"),
        (torch.full((2, 32), 10_000), r"token ids must lie in 0\.\.999 \(vocab_size=1000\)"),
        (torch.full((2, 32), -1), r"token ids must lie in 0\.\.999"),
    ],
)
def test_bad_token_input_gives_a_clear_error(
    token_family: str, batch: torch.Tensor, message: str
) -> None:
    net = onefit.create_supernet(token_family, num_classes=10, image_size=32, vocab_size=1000)
    with pytest.raises(ValueError, match=message):
        net(batch)


def test_every_input_is_checked_by_the_spec(supernet: Supernet) -> None:
    with pytest.raises(TypeError, match=r"expected a torch\.Tensor"):
        supernet([[0.0]])
    good = _batch(supernet, supernet.space.largest())
    supernet.input_spec.check(good)  # an example batch is always a valid one
    assert good.dtype == supernet.input_dtype
    assert tuple(good.shape[1:]) == supernet.input_shape(supernet.space.largest())


def test_bad_config_gives_a_clear_error(supernet: Supernet) -> None:
    config = dict(supernet.space.largest())
    name = supernet.space.names[0]
    config[name] = 999
    allowed = list(supernet.space[name].choices)
    with pytest.raises(ValueError, match=rf"'{name}': 999 is not allowed; allowed values: "):
        supernet.set_active(config)
    with pytest.raises(ValueError, match=r"allowed values"):
        supernet.extract(config)
    with pytest.raises(ValueError, match=r"allowed values"):
        supernet.macs(config)
    with pytest.raises(ValueError, match=r"missing dimension"):
        supernet.set_active({"r": 32})
    assert allowed  # the message above listed them
    assert supernet.active_config != config


@pytest.mark.parametrize(("in_channels", "image_size"), [(1, 8), (1, 28), (3, 32), (3, 224)])
def test_family_works_at_every_image_size(
    image_family: str, in_channels: int, image_size: int
) -> None:
    net = onefit.create_supernet(
        image_family, num_classes=7, in_channels=in_channels, image_size=image_size
    )
    net.eval().set_smallest()
    r = max(net.resolutions)
    assert r == image_size
    config = net.space.smallest().replace(r=r)
    net.set_active(config)
    with torch.no_grad():
        assert net(torch.zeros(1, in_channels, r, r)).shape == (1, 7)
    assert net.macs(config) == onefit.count(net.extract(config), (in_channels, r, r)).macs


@pytest.mark.parametrize(
    "kwargs",
    [{"num_classes": 0}, {"in_channels": -1}, {"num_classes": 2.5}],
)
def test_bad_constructor_arguments(family: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="must be a positive integer"):
        onefit.create_supernet(family, **kwargs)


def test_resolution_as_a_dimension() -> None:
    net = onefit.create_supernet("mobilenetv3", num_classes=10)
    assert net.resolutions == (128, 144, 160, 176, 192, 208, 224)
    small_r = net.space.largest().replace(r=128)
    assert net.input_shape(small_r) == (3, 128, 128)
    assert net.macs(small_r) < net.macs(net.space.largest())


@pytest.mark.parametrize(
    ("family", "kwargs", "message"),
    [
        ("mobilenetv3", {"kernel_sizes": []}, "kernel_sizes must be a non-empty list of integers"),
        ("mobilenetv3", {"kernel_sizes": 3}, "kernel_sizes must be a non-empty list"),
        (
            "mobilenetv3",
            {"expand_ratios": [0]},
            "expand_ratios must be a non-empty list of numbers > 0",
        ),
        ("mobilenetv3", {"depths": [0, 2]}, "depths must be a non-empty list of integers >= 1"),
        ("mobilenetv3", {"resolutions": [0]}, "resolutions must be"),
        ("mobilenetv3", {"stem_stride": True}, "stem_stride must be 1 or 2"),
        ("mobilenetv3", {"width_mult": "1"}, "width_mult must be a number, got '1'"),
        ("mobilenetv3", {"image_size": "28"}, "image_size must be a positive integer"),
        ("resnet", {"base_depths": [1, 1, 1, 1, 1]}, r"one depth per stage \(4\)"),
        ("resnet", {"image_size": 0}, "image_size must be a positive integer"),
        ("resnet", {"width_mults": 1.0}, "width_mults must be a non-empty list"),
        ("resnet", {"width_mults": (1.0, 1)}, "lists a choice twice"),
    ],
)
def test_family_specific_bad_arguments(family: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        onefit.create_supernet(family, **kwargs)
