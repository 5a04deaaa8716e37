"""Supernet and conversion arguments: the examples of issue 14, each a clear UserError
naming the argument before anything is allocated."""

from __future__ import annotations

import math
import re

import pytest

import onefit
from onefit.convert.options import ConversionOptions
from onefit.errors import UserError, UserTypeError
from onefit.search.constraints import parse_constraint
from onefit.supernets import arguments

TINY = {
    "mobilenetv3": {"image_size": 8, "depths": (1,), "kernel_sizes": (3,), "expand_ratios": (1,)},
    "resnet": {"image_size": 8, "base_width": 8, "base_depths": (1, 1, 1, 1),
               "depth_extras": (0,)},
    "vit": {"image_size": 8, "embed_dims": (8,), "depths": (1,), "num_heads": (1,),
            "head_dim": 4},
    "bert": {"vocab_size": 10, "image_size": 8, "embed_dims": (8,), "depths": (1,),
             "num_heads": (1,), "mlp_dims": (8,), "head_dim": 4},
}  # fmt: skip


@pytest.mark.parametrize("value", [math.inf, math.nan, 0, -1, -math.inf, 1e300])
def test_width_mult_not_positive_or_not_finite(value: float) -> None:
    # width_mult=inf used to raise OverflowError in elastic/channels.py.
    with pytest.raises(UserError, match=r"width_mult must be a finite number in \(0, 64\]"):
        onefit.create_supernet("mobilenetv3", width_mult=value, **TINY["mobilenetv3"])


@pytest.mark.parametrize("family", list(TINY))
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("num_classes", 10**12, "num_classes must be a positive integer up to 10000000"),
        ("num_classes", "10", "num_classes must be a positive integer, got '10' (str)"),
        ("num_classes", 2.5, "num_classes must be a positive integer, got 2.5"),
        ("in_channels", 10**9, "in_channels must be a positive integer up to 4096"),
        ("image_size", 10**7, "image_size must be a positive integer up to"),
        ("depths", [], "depths must be a non-empty list of integers"),
        ("depths", [1.5], "depths must be a non-empty list of integers"),
    ],
)
def test_issue_examples_for_every_family(
    family: str, name: str, value: object, message: str
) -> None:
    if name == "depths" and family == "resnet":
        name, message = "depth_extras", message.replace("depths", "depth_extras")
    if name == "in_channels" and family == "bert":
        pytest.skip("BERT reads token ids: in_channels must be 1")
    with pytest.raises(UserError, match=re.escape(message)):
        onefit.create_supernet(family, **{**TINY[family], name: value})


def test_wrong_types_are_user_type_errors() -> None:
    with pytest.raises(UserTypeError, match="image_size"):
        onefit.create_supernet("vit", **{**TINY["vit"], "image_size": "8"})
    with pytest.raises(UserTypeError, match="expand_ratios"):
        onefit.create_supernet("mobilenetv3", **{**TINY["mobilenetv3"], "expand_ratios": "1"})
    with pytest.raises(UserTypeError, match=r"'widht_mult'.*its arguments are: .*width_mult"):
        onefit.create_supernet("mobilenetv3", widht_mult=1.0)


@pytest.mark.parametrize("value", [math.nan, -0.1, 1.0, math.inf])
@pytest.mark.parametrize("family", ["mobilenetv3", "resnet"])
def test_dropout_outside_zero_one(family: str, value: float) -> None:
    with pytest.raises(UserError, match=r"dropout must be a finite number in \[0, 1\)"):
        onefit.create_supernet(family, **TINY[family], dropout=value)


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf])
@pytest.mark.parametrize("family", ["vit", "bert"])
def test_norm_eps_positive_and_finite(family: str, value: float) -> None:
    # norm_eps=-1 used to be accepted and only give non-finite outputs later.
    with pytest.raises(UserError, match=r"norm_eps must be a finite number in \(0, 1\]"):
        onefit.create_supernet(family, **TINY[family], norm_eps=value)


def test_zero_or_empty_is_not_the_default() -> None:
    # patch_size=0 and embed_dims=[] used to fall back to the defaults silently.
    with pytest.raises(UserError, match="patch_size"):
        onefit.create_supernet("vit", **TINY["vit"], patch_size=0)
    with pytest.raises(UserError, match="embed_dims"):
        onefit.create_supernet("vit", **{**TINY["vit"], "embed_dims": []})


def test_memory_estimate_refuses_what_cannot_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (arguments.memory_limit_bytes() or 1) > 0
    monkeypatch.setattr(arguments, "memory_limit_bytes", lambda: 10**6)
    for family, kwargs in TINY.items():
        with pytest.raises(UserError, match=r"needs about .* more than this machine's 976\.6 KiB"):
            onefit.create_supernet(family, **{**kwargs, "num_classes": 10**6})
    monkeypatch.setattr(arguments, "memory_limit_bytes", lambda: None)  # unknown: no check
    onefit.create_supernet("mobilenetv3", **TINY["mobilenetv3"], num_classes=3)


def test_num_classes_within_bounds_but_beyond_memory() -> None:
    limit = arguments.memory_limit_bytes()
    if limit is None:
        pytest.skip("this machine's memory is unknown")
    # 10**7 classes x 1280 features x 4 bytes = 51 GB: refused unless the machine has it.
    if limit < 10**7 * 1281 * 4:
        with pytest.raises(UserError, match=r"mobilenetv3 supernet .* needs about 47\.7 GiB"):
            onefit.create_supernet("mobilenetv3", **TINY["mobilenetv3"], num_classes=10**7)


def test_estimates_are_close_to_the_built_networks() -> None:
    seen = {}

    def spy(family: str, parameters: int, names: object = ()) -> None:
        seen[family] = parameters

    import onefit.supernets.bert as bert
    import onefit.supernets.mobilenetv3 as mobilenetv3
    import onefit.supernets.resnet as resnet
    import onefit.supernets.vit as vit

    with pytest.MonkeyPatch.context() as patch:
        for module in (bert, mobilenetv3, resnet, vit):
            patch.setattr(module, "check_memory", spy)
        for family, kwargs in TINY.items():
            net = onefit.create_supernet(family, **kwargs, num_classes=50)
            actual = sum(p.numel() for p in net.parameters())
            assert 0.8 * actual <= seen[family] <= 1.25 * actual, (family, seen, actual)


def test_conversion_options_bounds() -> None:
    with pytest.raises(UserError, match="round_to must be at most 1024"):
        ConversionOptions(round_to=10**9)
    with pytest.raises(UserTypeError, match="round_to must be a positive integer"):
        ConversionOptions(round_to="8")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="width_ratios lists a choice twice"):
        ConversionOptions(width_ratios=(0.5, 0.5))
    with pytest.raises(UserError, match=r"numbers in \(0, 1\]"):
        ConversionOptions(width_ratios=(math.nan,))
    with pytest.raises(UserError, match="up to 8192"):
        ConversionOptions(resolutions=(10**6,))
    with pytest.raises(UserError, match="width_mode"):
        ConversionOptions(width_mode=["group"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "metric", "op", "bound"),
    [
        ("latency_ms<=20ms", "latency_ms", "<=", 20.0),
        ("macs<300M", "macs", "<", 300e6),
        ("latency_ms <= 0.5 s", "latency_ms", "<=", 500.0),
        ("250us >= latency_ms", "latency_ms", "<=", 0.25),
        ("peak_memory_bytes < 2GiB", "peak_memory_bytes", "<", 2.0 * 2**30),
        ("params <= 1.5e6", "params", "<=", 1.5e6),
        ("accuracy >= -1", "accuracy", ">=", -1.0),
    ],
)
def test_constraint_strings_parse_to_the_intended_value(
    text: str, metric: str, op: str, bound: float
) -> None:
    c = parse_constraint(text)
    assert (c.metric, c.op) == (metric, op) and math.isclose(c.bound, bound)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cannot parse constraint ''"),
        ("macs <= nan", "must be a finite number"),
        ("macs <= inf", "must be a finite number"),
        ("macs <= 1e999", "not a finite number"),
        ("macs <= -5", "'macs' cannot be negative"),
        ("latency_ms <= -1ms", "cannot be negative"),
        ("macs <= 5ms", "the unit 'ms' is for a metric in milliseconds"),
        ("macs <= 5 parsecs", "unknown unit or suffix 'parsecs'"),
        ("macs <= 5 ;", "cannot parse constraint"),
        ("macs <= ٥", "cannot parse constraint"),
        ("macs == 5", "cannot parse constraint"),
        ("macs <= " + "9" * 300, "too long"),
    ],
)
def test_malformed_constraint_strings(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as error:
        parse_constraint(text)
    assert "macs" in str(error.value) or "latency_ms" in str(error.value) or text == ""
    assert "latency_ms <= 5" in str(error.value) or "negative" in str(error.value)
