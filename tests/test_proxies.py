"""Zero-cost proxies: finite, deterministic, and what they claim to compute."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import onefit
from onefit.metrics.proxies import compute_proxies, list_proxies, naswot, synflow


@pytest.fixture(scope="module")
def net() -> onefit.Supernet:
    torch.manual_seed(0)
    return onefit.create_supernet("mobilenetv3", num_classes=10, image_size=16)


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, 16, 16, generator=gen), torch.randint(0, 10, (16,), generator=gen)


def test_proxies_are_finite_and_deterministic(net):
    x, y = batch()
    for config in [net.space.smallest(), net.space.largest(), *net.space.sample_many(3, seed=0)]:
        model = net.extract(config)
        first = compute_proxies(model, x, y)
        assert set(first) == set(list_proxies())
        assert all(math.isfinite(v) for v in first.values()), first
        assert compute_proxies(model, x, y) == first
        assert not model.training  # the proxies work on copies


def test_params_and_macs_proxies_are_log_counts(net):
    config = net.space.smallest()
    scores = compute_proxies(net.extract(config), *batch(), names=["params", "macs"])
    assert scores["params"] == pytest.approx(math.log10(net.params(config)))
    assert scores["macs"] == pytest.approx(math.log10(net.macs(config)))


def test_synflow_of_a_linear_network_is_known():
    # For y = W2 |.| W1 x with all-ones input and positive weights (no nonlinearity
    # between), sum over weights of w * dR/dw equals 2 * R (each layer contributes R).
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(0.5)
        model[1].weight.fill_(-2.0)  # synflow takes absolute values
    output_sum = 2 * 3 * (4 * 0.5) * 2.0  # R = sum over 2 outputs of 3 * (4 * 0.5) * 2
    score = synflow(model, torch.zeros(1, 4), torch.zeros(1, dtype=torch.long))
    assert score == pytest.approx(math.log10(2 * output_sum))


def test_naswot_separates_distinct_inputs_from_identical_ones():
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))
    torch.manual_seed(0)
    distinct = naswot(model, torch.randn(6, 8), torch.zeros(6, dtype=torch.long))
    same = naswot(model, torch.randn(1, 8).repeat(6, 1), torch.zeros(6, dtype=torch.long))
    assert math.isfinite(distinct)
    assert same == -math.inf  # identical codes: the kernel is singular


def test_unknown_proxy_lists_the_known_ones(net):
    with pytest.raises(ValueError, match="unknown zero-cost proxy 'snip'; known: grad_norm"):
        compute_proxies(net.extract(net.space.smallest()), *batch(), names=["snip"])
