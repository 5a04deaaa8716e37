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

# 25 models, 16 families; each converts well (see BENCHMARKS.md for the 47-model survey).
WELL = [
    "resnet18", "resnetv2_50", "resnext50_32x4d", "regnetx_002", "mobilenetv2_100",
    "mobilenetv3_small_100", "efficientnet_b0", "mnasnet_100", "fbnetc_100", "lcnet_100",
    "tinynet_a", "ghostnet_100", "densenet121", "cspresnet50", "dla34", "repvgg_a0",
    "mobileone_s0", "convnext_atto", "poolformer_s12", "hardcorenas_a", "levit_128s",
    "vit_tiny_patch16_224", "edgenext_xx_small", "regnetz_b16",
    # tf_ variants pad "same" in Python (data-dependent): those convolutions stay whole.
    "tf_efficientnet_b0",
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


@torch.no_grad()
def test_modules_torch_fx_cannot_trace_stay_whole_and_the_rest_elastic() -> None:
    # MobileViT's blocks branch on the input size in Python: each becomes one opaque
    # call with static channels, named in the report; the convolutions between stay
    # elastic and everything computes what the model does.
    model, net, x = converted("mobilevit_xxs")
    net.set_largest()
    assert _relative(net(x), model(x)) <= TOLERANCE
    rows = {row.layer: row for row in net.report.rows}
    for block in ("stages.2.1", "stages.3.1", "stages.4.1"):
        why = rows[block].static_because
        assert "torch.fx cannot trace this MobileVitBlock" in why and "control flow" in why
        assert rows[block].elastic == ""
    assert len(net.space.names) > 5 and net.macs(net.space.smallest()) < net.macs(
        net.space.largest()
    )
    for config in net.space.sample_many(3, seed=0):
        net.set_active(config)
        static = net.extract(config)
        assert _relative(static(x), net(x)) <= TOLERANCE
        assert net.cost(config) == count(static, tuple(x.shape[1:]))


def test_the_timm_family_trains_searches_and_exports_from_the_command_line(tmp_path) -> None:
    """Built by name, from a weights file, on 1-channel digits: train, reload, search, export."""
    from click.testing import CliRunner

    from onefit.cli import cli
    from onefit.convert.timm_family import build_timm_model

    torch.manual_seed(0)
    weights = tmp_path / "lcnet.pt"
    torch.save(build_timm_model("lcnet_050", 10, in_channels=1).state_dict(), weights)
    run = tmp_path / "run"
    kwargs = f'{{"model": "lcnet_050", "weights": "{weights}"}}'
    steps = [
        ["train", "--epochs", "1", "--run-dir", str(run), "--set", "supernet=timm",
         "--set", f"supernet_kwargs={kwargs}", "--set", "bn_batches=2"],
        ["search", str(run), "--objective", "accuracy:max", "--objective", "macs:min",
         "--strategy", "random", "--budget", "3"],
        ["export", str(run), "--pick", "smallest", "--format", "onnx"],
    ]  # fmt: skip
    for args in steps:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        if args[0] == "train":
            weights.unlink()  # the checkpoint holds the weights: reloading needs no file
    net = onefit.load_supernet(run)
    assert net.spec is not None and net.spec["name"] == "timm" and net.in_channels == 1
    card = onefit.deploy.ModelCard.load(run / "exports" / "smallest-onnx" / "model_card.json")
    assert card.macs == net.macs(net.space.validate(card.config)) < net.macs(net.space.largest())


def test_an_unknown_timm_model_is_a_clear_error_with_close_names() -> None:
    with pytest.raises(UserError, match=r"unknown timm model 'resnet181'.*did you mean resnet18"):
        onefit.create_supernet("timm", model="resnet181", num_classes=10)
