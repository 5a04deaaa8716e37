from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import onefit
from onefit.space import flatten_lists
from onefit.supernets.mobilenetv3 import MobileNetV3Supernet, strides_for_image_size

REFERENCE = Path(__file__).parent / "data" / "ofa_mbv3_w10_subnets.jsonl"


def _reference_rows() -> list[dict]:
    return [json.loads(line) for line in REFERENCE.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def imagenet_supernet() -> MobileNetV3Supernet:
    return MobileNetV3Supernet(num_classes=1000, in_channels=3, width_mult=1.0)


def _config(row: dict) -> dict:
    return flatten_lists({key: row[key] for key in ("ks", "e", "d", "r")})


def test_reference_table_is_the_full_copy() -> None:
    rows = _reference_rows()
    assert len(rows) == 200
    assert len({json.dumps(_config(r), sort_keys=True) for r in rows}) == 200


def test_analytic_counts_match_all_200_ofa_reference_subnets(
    imagenet_supernet: MobileNetV3Supernet,
) -> None:
    for row in _reference_rows():
        cost = imagenet_supernet.cost(_config(row))
        assert (cost.macs, cost.params) == (row["macs"], row["params"]), row


@pytest.mark.slow
def test_extracted_models_measure_the_same_200_reference_counts(
    imagenet_supernet: MobileNetV3Supernet,
) -> None:
    for row in _reference_rows():
        config = _config(row)
        measured = onefit.count(imagenet_supernet.extract(config), (3, 224, 224))
        assert (measured.macs, measured.params) == (row["macs"], row["params"]), row


def test_space_layout(imagenet_supernet: MobileNetV3Supernet) -> None:
    space = imagenet_supernet.space
    assert len(space.names) == 20 + 20 + 5 + 1
    assert space["ks.19"].choices == (3, 5, 7)
    assert space["e.0"].choices == (3, 4, 6)
    assert space["d.4"].choices == (2, 3, 4)
    # The raw size counts the choices of skipped blocks too: 9^20 kernel/expand pairs,
    # 3^5 depths and 7 resolutions.
    assert space.size == 9**20 * 3**5 * 7


def test_width_multiplier_12_widths() -> None:
    net = MobileNetV3Supernet(width_mult=1.2, image_size=32, num_classes=10)
    widths = [stage[0].out_channels for stage in net.stages]
    assert widths == [32, 48, 96, 136, 192]
    assert net.stem[0].out_channels == 24
    assert net.head[0].out_channels == 1152 and net.head[4].out_channels == 1536


@pytest.mark.parametrize(("image_size", "final_size"), [(224, 7), (32, 4), (28, 7), (8, 4)])
def test_strides_for_image_size(image_size: int, final_size: int) -> None:
    stem, stages = strides_for_image_size(image_size)
    size = image_size
    for stride in (stem, *stages):
        size = (size - 1) // stride + 1
    assert size == final_size
    net = MobileNetV3Supernet(image_size=image_size, num_classes=3)
    features = torch.nn.Sequential(*list(net.extract().children())[:-1][:-1])
    out = features(torch.zeros(1, 3, image_size, image_size))
    assert out.shape[-1] == final_size


def test_explicit_strides_override_and_are_checked() -> None:
    net = MobileNetV3Supernet(
        image_size=32, stem_stride=2, stage_strides=(1, 1, 2, 1, 2), num_classes=3
    )
    assert net.stem_stride == 2 and net.stage_strides == (1, 1, 2, 1, 2)
    with pytest.raises(ValueError, match="stage_strides five values of 1 or 2"):
        MobileNetV3Supernet(stage_strides=(2, 2))
    with pytest.raises(ValueError, match="stage_strides five values of 1 or 2"):
        MobileNetV3Supernet(stem_stride=3)


def test_depth_skips_the_last_blocks_of_a_stage(imagenet_supernet: MobileNetV3Supernet) -> None:
    base = dict(imagenet_supernet.space.smallest())
    deeper = {**base, "d.2": 4}
    # Two more blocks of stage 3 (80 channels, 14x14 at r=128 ... 8x8 here) cost MACs.
    assert imagenet_supernet.macs(deeper) > imagenet_supernet.macs(base)
    # Choices of skipped blocks do not matter.
    assert imagenet_supernet.cost({**base, "ks.11": 7, "e.11": 6}) == imagenet_supernet.cost(base)
