from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from onefit.elastic import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticLinear,
    ElasticSqueezeExcite,
    make_divisible,
)
from onefit.errors import UserError
from onefit.static import layer_with


def test_make_divisible_matches_mobilenet_rounding() -> None:
    assert [make_divisible(v) for v in (16 * 1.2, 24 * 1.2, 112 * 1.2, 960 * 1.2, 1280 * 1.2)] == [
        24,
        32,
        136,
        1152,
        1536,
    ]
    assert make_divisible(24 * 3) == 72 and make_divisible(40 * 4) == 160
    assert make_divisible(10) == 16  # 8 would drop below 90 % of 10


def test_conv_width_slice_equals_a_plain_conv_on_the_weight_prefix() -> None:
    torch.manual_seed(0)
    conv = ElasticConv2d(8, 16, 3, stride=2, bias=True)
    x = torch.randn(2, 5, 9, 9)
    ref = F.conv2d(x, conv.weight[:12, :5], conv.bias[:12], stride=2, padding=1)
    assert torch.equal(conv(x, out_channels=12), ref)
    static = conv.to_static(5, 12)
    assert isinstance(static, nn.Conv2d) and static.weight.shape == (12, 5, 3, 3)
    torch.testing.assert_close(static(x), ref, rtol=0, atol=1e-6)


def test_identity_kernel_transform_is_a_centre_crop() -> None:
    torch.manual_seed(0)
    conv = ElasticConv2d(4, 4, (3, 5, 7), depthwise=True)
    assert set(conv.kernel_transforms) == {"7to5", "5to3"}
    assert torch.equal(conv.kernel(5), conv.weight[:, :, 1:6, 1:6])
    assert torch.equal(conv.kernel(3), conv.weight[:, :, 2:5, 2:5])


def test_kernel_transform_chain_uses_the_learned_matrices() -> None:
    torch.manual_seed(0)
    conv = ElasticConv2d(3, 3, (3, 5, 7), depthwise=True)
    with torch.no_grad():
        for matrix in conv.kernel_transforms.values():
            matrix.copy_(torch.randn_like(matrix))
    w = conv.weight
    k5 = (w[:, :, 1:6, 1:6].reshape(-1, 25) @ conv.kernel_transforms["7to5"].T).view(3, 1, 5, 5)
    k3 = (k5[:, :, 1:4, 1:4].reshape(-1, 9) @ conv.kernel_transforms["5to3"].T).view(3, 1, 3, 3)
    torch.testing.assert_close(conv.kernel(5), k5)
    torch.testing.assert_close(conv.kernel(3), k3)
    # Gradients reach the matrices when a small kernel runs.
    conv(torch.randn(1, 3, 6, 6), kernel_size=3).sum().backward()
    assert conv.kernel_transforms["5to3"].grad is not None
    assert conv.kernel_transforms["7to5"].grad is not None


def test_depthwise_conv_follows_input_width_and_rejects_bad_kernels() -> None:
    conv = ElasticConv2d(32, 32, (3, 5), depthwise=True)
    assert conv(torch.randn(1, 20, 7, 7), kernel_size=3).shape == (1, 20, 7, 7)
    with pytest.raises(ValueError, match=r"kernel size 7 is not one of \[3, 5\]"):
        conv(torch.randn(1, 20, 7, 7), kernel_size=7)
    with pytest.raises(ValueError, match="odd"):
        ElasticConv2d(4, 4, (2, 4))
    with pytest.raises(ValueError, match="holds 32 input channels, got 33"):
        conv(torch.randn(1, 33, 7, 7))


def test_batch_norm_updates_only_its_active_prefix() -> None:
    bn = ElasticBatchNorm2d(8, momentum=None)
    x = torch.randn(16, 5, 4, 4) * 3 + 1
    bn.train()(x)
    torch.testing.assert_close(bn.running_mean[:5], x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(bn.running_var[:5], x.var(dim=(0, 2, 3), unbiased=True))
    assert torch.equal(bn.running_mean[5:], torch.zeros(3))
    assert torch.equal(bn.running_var[5:], torch.ones(3))
    static = bn.to_static(5).eval()
    torch.testing.assert_close(static(x), bn.eval()(x))
    with pytest.raises(ValueError, match="holds 8 channels, got 9"):
        bn(torch.randn(1, 9, 2, 2))


def test_linear_slices_its_inputs() -> None:
    fc = ElasticLinear(64, 10)
    x = torch.randn(3, 40)
    torch.testing.assert_close(fc(x), F.linear(x, fc.weight[:, :40], fc.bias))
    torch.testing.assert_close(fc.to_static(40)(x), fc(x))
    with pytest.raises(ValueError, match="holds 64 inputs, got 65"):
        fc(torch.randn(1, 65))


def test_squeeze_excite_width_rule_and_static_copy() -> None:
    torch.manual_seed(0)
    se = ElasticSqueezeExcite(144)
    assert se.hidden_channels(144) == 40 and se.hidden_channels(72) == 24
    x = torch.randn(2, 72, 5, 5)
    static = se.to_static(72)
    assert static.reduce.weight.shape == (24, 72, 1, 1)
    torch.testing.assert_close(static(x), se(x), rtol=0, atol=1e-6)
    before = se(torch.randn(1, 144, 3, 3).clone())
    del before
    y = torch.randn(2, 144, 3, 3)
    ref = se(y)
    se.sort_hidden()
    torch.testing.assert_close(se(y), ref, rtol=0, atol=1e-6)  # full width: same function


def test_frozen_cache_follows_in_place_updates_and_moves() -> None:
    torch.manual_seed(0)
    conv = ElasticConv2d(6, 6, (3, 5), depthwise=True, bias=True)
    bn = ElasticBatchNorm2d(6).eval()
    conv.set_frozen(True)
    bn.set_frozen(True)
    x = torch.randn(1, 4, 7, 7)

    def reference() -> torch.Tensor:
        with torch.enable_grad():
            w, b = conv._slice(4, 4, 3)
        return F.conv2d(x, w.detach(), b.detach(), 1, 1, 1, 4)

    with torch.no_grad():
        first = conv(x, kernel_size=3)
        torch.testing.assert_close(first, reference())
        # An optimizer-style in-place step on each source tensor must invalidate the cache.
        for tensor in (conv.weight, conv.bias, conv.kernel_transforms["5to3"]):
            tensor.add_(0.1)
            torch.testing.assert_close(conv(x, kernel_size=3), reference())
        conv.load_state_dict({k: v * 2 for k, v in conv.state_dict().items()})
        torch.testing.assert_close(conv(x, kernel_size=3), reference())
        # Moving to another dtype gives new storage.
        conv.double()
        assert conv(x.double(), kernel_size=3).dtype == torch.float64

        y = torch.randn(2, 4, 3, 3)
        before = bn(y)
        bn.running_mean.add_(1.0)  # in place, as BN recalibration does
        after = bn(y)
        torch.testing.assert_close(after, before - 1.0 / torch.sqrt(torch.tensor(1.0 + bn.eps)))
        bn.double()
        assert bn(y.double()).dtype == torch.float64


def test_frozen_cache_is_not_used_under_autograd() -> None:
    conv = ElasticConv2d(4, 4, (3, 5))
    conv.set_frozen(True)
    with torch.no_grad():
        conv(torch.randn(1, 4, 5, 5), kernel_size=3)
    out = conv(torch.randn(1, 4, 5, 5), kernel_size=3)
    out.sum().backward()
    assert conv.weight.grad is not None and conv.kernel_transforms["5to3"].grad is not None


@pytest.mark.parametrize("fused", [True, False])
def test_outside_frozen_every_update_is_seen(fused: bool) -> None:
    """Fused optimizers do not bump tensor versions, so only frozen mode may cache."""
    torch.manual_seed(0)
    conv = ElasticConv2d(8, 8, (3, 5), depthwise=True)
    optimizer = torch.optim.SGD(conv.parameters(), lr=0.5, fused=fused)
    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        before = conv(x, kernel_size=3)
    conv(x, kernel_size=3).square().sum().backward()
    optimizer.step()
    with torch.no_grad():
        after = conv(x, kernel_size=3)
    fresh = conv(x, kernel_size=3).detach()  # with autograd: computed from scratch
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)


def test_batch_norm_without_running_stats_in_eval() -> None:
    bn = ElasticBatchNorm2d(8, track_running_stats=False).eval()
    bn.set_frozen(True)
    with torch.no_grad():
        out = bn(torch.randn(4, 5, 3, 3))
    assert out.shape == (4, 5, 3, 3)


def test_batch_norm_sees_replaced_parameters_outside_frozen() -> None:
    bn = ElasticBatchNorm2d(4).eval()
    x = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        bn(x)
        bn.weight = nn.Parameter(torch.full((4,), 2.0))
        torch.testing.assert_close(bn(x), 2 * x / torch.sqrt(torch.tensor(1 + bn.eps)))


def test_from_conv_copies_plain_convolutions_and_rejects_what_it_cannot_keep() -> None:
    from onefit.elastic import ElasticConv2d

    conv = nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=True)
    x = torch.randn(1, 4, 9, 9)
    assert torch.equal(ElasticConv2d.from_conv(conv)(x), conv(x))
    stem = nn.Conv2d(4, 8, 4, stride=4)  # ConvNeXt's patchify stem: even kernel, no padding
    y = torch.randn(1, 4, 8, 8)
    assert torch.equal(ElasticConv2d.from_conv(stem)(y), stem(y))
    bad_convs = [
        nn.Conv2d(4, 8, 3, stride=(1, 2)),
        nn.Conv2d(4, 8, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(4, 8, (3, 1)),
    ]
    for bad in bad_convs:
        with pytest.raises(ValueError, match="convert"):
            ElasticConv2d.from_conv(bad)
    with pytest.raises(ValueError, match="elastic kernel"):
        ElasticConv2d.from_conv(nn.Conv2d(8, 8, 5, groups=8), [3, 5])  # padding 0, not "same"


@torch.no_grad()
def test_a_grouped_conv_drops_whole_groups_and_keeps_their_weights() -> None:
    conv = nn.Conv2d(12, 12, 3, padding=1, groups=4, bias=True)  # 3 channels per group
    elastic = ElasticConv2d.from_conv(conv)
    assert elastic.group_width == 3 and elastic.depthwise
    x = torch.randn(2, 12, 5, 5)
    assert torch.allclose(elastic(x), conv(x), atol=1e-6)
    # 6 channels: the first two groups, computed with their own weights.
    half = nn.Conv2d(6, 6, 3, padding=1, groups=2, bias=True)
    half.weight.copy_(conv.weight[:6])
    half.bias.copy_(conv.bias[:6])
    assert torch.allclose(elastic(x[:, :6]), half(x[:, :6]), atol=1e-6)
    static = elastic.to_static(6)
    assert static.groups == 2 and torch.allclose(static(x[:, :6]), half(x[:, :6]), atol=1e-6)
    with pytest.raises(UserError, match="3 channels per group got 5 channels"):
        elastic(x[:, :5])
    with pytest.raises(UserError, match="in_channels != out_channels"):
        ElasticConv2d.from_conv(nn.Conv2d(8, 16, 3, groups=4))


def test_layer_with_refuses_a_tensor_of_another_shape() -> None:
    with pytest.raises(ValueError, match=r"a tensor of \[2, 3\] for \[4, 3\]"):
        layer_with(nn.Linear, 3, 4, bias=False, tensors={"weight": torch.zeros(2, 3)})
