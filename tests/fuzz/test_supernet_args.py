"""Fuzz: generated constructor arguments for every built-in supernet family (category
"supernet-args").

Each example takes tiny good values for some arguments and, most of the time, one bad
value for one argument: a bad one must be a clean error naming that argument, before
anything is allocated; a good set must build, and the smallest and largest
sub-networks must run on a tiny input and give finite outputs of the right shape.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import onefit
from tests.fuzz.harness import expect_clean, fuzz_settings

NAN, INF = math.nan, math.inf
DROPOUT = ([0.0, 0.5, 0.999], [NAN, -0.1, 1.0, INF, "0.1", None])
CLASSES = ([1, 2, 5], [0, -1, 2.5, "3", True, 10**12, None, NAN])
CHANNELS = ([1, 3], [0, 10**9, "3", 1.5, -2])
NORM_EPS = ([1e-5, 1e-12, 0.5], [0, -1, NAN, INF, 2, "1e-5", None])

# family -> argument -> (good values, bad values); arguments in REQUIRED are always
# given (their defaults build large networks), the others only sometimes.
ARGUMENTS: dict[str, dict[str, tuple[list, list]]] = {
    "mobilenetv3": {
        "num_classes": CLASSES,
        "in_channels": CHANNELS,
        "image_size": ([8, 16], [0, 10**6, "8", 8.0, None]),
        "width_mult": ([0.25, 0.5, 1], [INF, NAN, 0, -1, "1", 1e300, None, True, -INF]),
        "resolutions": ([None, (8,), [8, 12]], [[], [0], {8}, (8, 8), [8.5], "8", [10**5]]),
        "kernel_sizes": ([(3,), (3, 5)], [[], (4,), (3, 3), [0], "3", 3, (99,), [NAN]]),
        "expand_ratios": ([(1,), (1, 2), (0.5, 3)], [[], [0], [NAN], [INF], [-1], [1e9], "1"]),
        "depths": ([(1,), (1, 2)], [[], [0], [1.5], ["1"], [10**6], None, (1, 1)]),
        "dropout": DROPOUT,
        "stem_stride": ([None, 1, 2], [3, 0, True, "1", 1.0]),
        "stage_strides": (
            [None, (1, 1, 1, 1, 1), [2, 1, 2, 1, 1]],
            [(1, 1, 1), (3, 1, 1, 1, 1), "11111", 5],
        ),
    },
    "resnet": {
        "num_classes": CLASSES,
        "in_channels": CHANNELS,
        "image_size": ([8, 16], [0, 10**6, "8", NAN]),
        "base_width": ([8, 16], [0, "8", 10**6, 8.5]),
        "resolutions": ([None, (8,), [8, 12]], [[], [-8], {8}, [10**5]]),
        "base_depths": ([(1, 1, 1, 1)], [(1, 1, 1), [], (0, 1, 1, 1), (1.5, 1, 1, 1), "1111"]),
        "depth_extras": ([(0,), (0, 1)], [[-1], [], (0, 0), [0.5], [10**5]]),
        "expand_ratios": ([(0.25,), (0.25, 0.5)], [[0], [NAN], [100.0], 0.25]),
        "width_mults": ([(1.0,), (0.5, 1.0)], [[0], [NAN], [100], 1.0, (1.0, 1)]),
        "dropout": DROPOUT,
    },
    "vit": {
        "num_classes": CLASSES,
        "in_channels": CHANNELS,
        "image_size": ([8, 16], [0, 10**6, "16", 16.0]),
        "resolutions": ([None, (8,), (8, 16)], [[], [0], {8}, [10**5]]),
        "patch_size": ([None, 2, 4], [0, 3, "2", 10**5, 2.0]),
        "embed_dims": ([(8,), (8, 16)], [[], [0], (8, 8), [8.5], [10**6]]),
        "depths": ([(1,), (1, 2)], [[], [0], "1"]),
        "num_heads": ([(1,), (1, 2)], [[], [0], [2000], [NAN]]),
        "mlp_ratios": ([(1.0,), (1.0, 2.0)], [[], [0], [NAN], [1e-9], (1.0, 1.0), [INF]]),
        "head_dim": ([4, 8], [0, "4", 10**6, -4]),
        "norm_eps": NORM_EPS,
    },
    "bert": {
        "num_classes": CLASSES,
        "in_channels": ([1], [3, 0, "1"]),
        "vocab_size": ([5, 20], [0, 10**9, "20", 2.0]),
        "image_size": ([8], [0, 2**21, "8"]),
        "max_positions": ([None, 8, 16], [0, 4, "8", 10**9]),
        "type_vocab_size": ([1, 2], [0, 10**6]),
        "embed_dims": ([(8,), (8, 16)], [[], [0], (8, 8)]),
        "depths": ([(1,), (1, 2)], [[], [0], [10**4]]),
        "num_heads": ([(1,), (1, 2)], [[], [0]]),
        "mlp_dims": ([(8,), (8, 16)], [[], [0], (8, 8), [10**6]]),
        "head_dim": ([4], [0, "4"]),
        "norm_eps": NORM_EPS,
        "resolutions": ([None, [8]], [[16], [8, 16], {8}, 8]),
    },
}
REQUIRED = {
    "mobilenetv3": ("image_size", "kernel_sizes", "expand_ratios", "depths"),
    "resnet": ("image_size", "base_width", "base_depths", "depth_extras"),
    "vit": ("image_size", "embed_dims", "depths", "num_heads", "head_dim"),
    "bert": ("vocab_size", "image_size", "embed_dims", "depths", "num_heads", "mlp_dims",
             "head_dim"),
}  # fmt: skip


@st.composite
def family_kwargs(draw: st.DrawFn, family: str) -> tuple[dict[str, Any], str | None]:
    """Keyword arguments and the one argument given a bad value (None: all good)."""
    arguments = ARGUMENTS[family]
    kwargs = {}
    for name, (good, _) in arguments.items():
        if name in REQUIRED[family] or draw(st.booleans()):
            kwargs[name] = draw(st.sampled_from(good))
    bad_name: str | None = None
    flaw = draw(st.sampled_from(["none", "none", "value", "value", "value", "unknown"]))
    if flaw == "value":
        bad_name = draw(st.sampled_from(list(arguments)))
        kwargs[bad_name] = draw(st.sampled_from(arguments[bad_name][1]))
    elif flaw == "unknown":
        bad_name = draw(st.sampled_from(["widht_mult", "num_class", "lr"]))
        kwargs[bad_name] = 1
    return kwargs, bad_name


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Tiny networks run fastest on one thread (and do not fight other test processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build_and_run(family: str, kwargs: dict[str, Any]) -> tuple[onefit.Supernet, list]:
    net = onefit.create_supernet(family, **kwargs).eval()
    outputs = []
    with torch.no_grad():
        for config in (net.space.smallest(), net.space.largest()):
            net.set_active(config)
            outputs.append(net(net.example_input(2)))
    return net, outputs


def _check(kwargs: dict[str, Any]) -> Any:
    def check(result: tuple[onefit.Supernet, list]) -> None:
        net, outputs = result
        classes = kwargs.get("num_classes", net.num_classes)
        for out in outputs:
            assert out.shape == (2, classes), out.shape
            assert torch.isfinite(out).all(), "non-finite output"

    return check


@pytest.mark.parametrize("family", list(ARGUMENTS))
@fuzz_settings(60)
@given(data=st.data())
def test_generated_supernet_arguments(family: str, data: st.DataObject) -> None:
    kwargs, bad_name = data.draw(family_kwargs(family))
    expect_clean(
        "supernet-args",
        {"family": family, **kwargs},
        lambda: _build_and_run(family, kwargs),
        expect="ok" if bad_name is None else "error",
        mentions=[] if bad_name is None else [bad_name],
        check=_check(kwargs),
    )
