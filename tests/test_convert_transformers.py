"""Elastic transformer encoders from torchvision's VisionTransformer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import onefit
from onefit.metrics import count
from onefit.supernets.vit import ElasticViT
from tests.conftest import pretrain, sandwich_fine_tune

torchvision = pytest.importorskip("torchvision")


def _vit(image_size: int = 16, in_channels: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.VisionTransformer(
        image_size=image_size, patch_size=4, num_layers=4, num_heads=4, hidden_dim=64,
        mlp_dim=128, num_classes=10,
    )  # fmt: skip
    if in_channels != 3:
        model.conv_proj = nn.Conv2d(in_channels, 64, 4, stride=4)
    with torch.no_grad():  # torchvision zero-initialises the head: make every weight count
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


@torch.no_grad()
def test_vit_converts_exactly_and_sub_networks_extract() -> None:
    model = _vit()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    net = onefit.elasticize(model, x, verbose=False).eval()
    assert isinstance(net, ElasticViT) and net.spec is not None and net.spec["name"] == "vit"
    assert net.space["d"].choices == (2, 3, 4) and net.space["h.0"].choices == (2, 3, 4)
    assert max(net.space["w"].choices) == 64 and max(net.space["m.0"].choices) == 128
    assert net.resolutions == (16,)  # smaller inputs would misuse the learned positions
    assert onefit.elasticize(model, x, depth=False, verbose=False).space["d"].choices == (4,)
    # Head and MLP sorting re-orders sums: exact in float64, within 1e-5 in float32.
    assert (net(x) - model(x)).abs().max() <= 1e-5
    model64, net64 = model.double(), onefit.elasticize(model, x.double(), verbose=False)
    assert (net64.eval()(x.double()) - model64(x.double())).abs().max() <= 1e-9
    model.float()
    rows = {row.layer: row for row in net.report.rows}
    assert "heads: h.3" in rows["encoder.layers.encoder_layer_3.self_attention"].elastic
    assert rows["heads.head"].static_because == "out: model output"
    for config in [net.space.smallest(), *net.space.sample_many(20, seed=0)]:
        net.set_active(config)
        static = net.extract(config)
        assert (static(x) - net(x)).abs().max() <= 1e-5
        assert net.cost(config) == count(static, (3, 16, 16))


def test_sandwich_fine_tuning_raises_the_smallest_vit(tmp_path) -> None:
    """InstaTune's recipe: convert a trained ViT, fine-tune the supernet with the sandwich rule."""
    data = onefit.load_dataset("digits", val_fraction=0.2, seed=0)
    x_train, y_train = data.train_tensors()
    generator = torch.Generator().manual_seed(0)

    def epoch() -> list[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(y_train), generator=generator).split(64)
        return [(x_train[idx], y_train[idx]) for idx in order]

    model = pretrain(_vit(image_size=8, in_channels=1), epoch, epochs=2, lr=2e-3)
    net = onefit.elasticize(model, x_train[:2], verbose=False)
    before, after = sandwich_fine_tune(net, data, tmp_path, lr=1e-3, weight_decay=0.05,
                                       epochs=2)  # fmt: skip
    assert after["smallest"] >= before["smallest"] + 0.10, (before, after)
    assert after["largest"] >= before["largest"] - 0.05, (before, after)


def test_init_weights_must_fit(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="does not fit"):
        onefit.train(supernet="vit", init_weights=str(path), epochs=1, run_dir=str(tmp_path),
                     progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="does not exist"):
        onefit.train(supernet="vit", init_weights=str(tmp_path / "missing.pt"), epochs=1,
                     run_dir=str(tmp_path), progress=False)  # fmt: skip
