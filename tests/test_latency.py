"""Latency and memory measured on real runtimes, device profiles, and their errors."""

from __future__ import annotations

import copy
import math
import platform
from importlib import metadata

import pytest
import torch
from torch import nn

import onefit
from onefit.metrics import (
    DeviceProfile,
    LatencyResult,
    ProfileMismatchError,
    RuntimeUnavailableError,
    measure_latency,
    peak_memory,
)
from onefit.metrics.latency import time_runs
from onefit.metrics.runtimes import (
    OnnxRuntime,
    create_runtime,
    export_onnx,
    list_runtimes,
)

pytest.importorskip("onnxruntime")

# The runtimes the timing comparisons below run on (torch.compile's warm-up makes them
# slow there); every registered runtime goes through the conformance test that follows.
RUNTIMES = ["eager", "onnxruntime"]


@pytest.mark.parametrize("name", list_runtimes())
def test_every_runtime_computes_the_eager_outputs_and_is_timed(name):
    runtime = create_runtime(name)
    assert runtime.name == name and runtime.install_hint.startswith("pip install")
    if not runtime.available():
        pytest.skip(f"runtime {name!r} is not installed here ({runtime.install_hint})")
    assert "cpu" in runtime.devices()
    runtime.check("cpu")
    with pytest.raises(RuntimeUnavailableError, match=r"cannot run on 'tpu' here"):
        runtime.check("tpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    out = runtime.prepare(copy.deepcopy(model), x, "cpu", threads=1)()
    got = torch.as_tensor(out[0] if isinstance(out, (list, tuple)) else out)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    result = measure_latency(model, (3, 8, 8), runtime=name, threads=1, warmup=1, repeats=3)
    assert math.isfinite(result.median_ms) and result.median_ms > 0
    assert result.profile.runtime == name and len(result.samples_ms) == 3


@pytest.fixture(scope="module")
def net() -> onefit.Supernet:
    torch.manual_seed(0)
    return onefit.create_supernet(
        "mobilenetv3", num_classes=10, image_size=64, resolutions=(16, 64)
    ).eval()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_latency_is_finite_and_positive_for_several_subnetworks(net, runtime):
    for seed in range(3):
        config = net.space.sample(seed=seed)
        result = measure_latency(
            net.extract(config), net.input_shape(config), runtime=runtime, threads=1,
            warmup=2, repeats=7,
        )  # fmt: skip
        assert math.isfinite(result.median_ms) and result.median_ms > 0
        assert result.q1_ms <= result.median_ms <= result.q3_ms
        assert len(result.samples_ms) == 7
        assert result.profile.runtime == runtime and result.profile.threads == 1


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_larger_config_measures_slower_than_a_much_smaller_one(net, runtime):
    small = net.space.smallest()  # 16x16 input, shallowest and thinnest
    large = net.space.largest()  # 64x64 input: about 60x the MACs
    assert net.macs(large) > 40 * net.macs(small)
    timings = {}
    for name, config in (("small", small), ("large", large)):
        timings[name] = measure_latency(
            net.extract(config), net.input_shape(config), runtime=runtime, threads=1,
            warmup=3, repeats=15,
        ).median_ms  # fmt: skip
    assert timings["large"] > 2 * timings["small"], timings


def test_onnx_export_computes_the_same_function(net):
    config = net.space.sample(seed=3)
    model = net.extract(config)
    x = torch.randn(2, *net.input_shape(config))
    session = OnnxRuntime().session(export_onnx(model, x), "cpu", threads=1)
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(out), model(x), atol=1e-4)


def test_measuring_leaves_the_model_unchanged(net):
    model = net.extract(net.space.smallest())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure_latency(model, net.input_shape(net.space.smallest()), warmup=0, repeats=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_cuda_timing_synchronizes_around_each_timed_call(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    samples = time_runs(lambda: calls.append("run"), "cuda", warmup=1, repeats=2)
    assert len(samples) == 2
    assert calls == ["run", "sync", "run", "sync", "sync", "run", "sync"]


def test_median_and_iqr_come_from_the_samples():
    profile = DeviceProfile.detect(runtime="eager", threads=1)
    result = LatencyResult.from_samples([5.0, 1.0, 2.0, 4.0, 3.0], profile)
    assert (result.median_ms, result.q1_ms, result.q3_ms, result.iqr_ms) == (3.0, 2.0, 4.0, 2.0)
    assert result.to_dict()["profile"]["runtime"] == "eager"


def test_unknown_runtime_lists_registered_and_installed():
    with pytest.raises(RuntimeUnavailableError, match=r"unknown runtime 'tensorrt'.*eager"):
        measure_latency(nn.Identity(), (3, 8, 8), runtime="tensorrt")


def test_runtime_not_installed_says_what_to_install(monkeypatch):
    monkeypatch.setattr(OnnxRuntime, "available", lambda self: False)
    with pytest.raises(RuntimeUnavailableError, match=r"pip install .*onnx"):
        measure_latency(nn.Identity(), (3, 8, 8), runtime="onnxruntime")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_unavailable_device_lists_the_available_ones(runtime):
    with pytest.raises(RuntimeUnavailableError, match=r"available devices: \['cpu'\]"):
        measure_latency(nn.Identity(), (3, 8, 8), runtime=runtime, device="cuda")


@pytest.mark.parametrize(
    "kwargs", [{"repeats": 0}, {"warmup": -1}, {"batch_size": 0}, {"threads": 0}]
)
def test_bad_timing_settings_are_value_errors(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        measure_latency(nn.Identity(), (3, 8, 8), **kwargs)


def test_profile_round_trip_and_mismatch_names_the_field(tmp_path):
    one = DeviceProfile.detect(runtime="onnxruntime", threads=1, batch_size=1)
    one.save(tmp_path / "p.json")
    assert DeviceProfile.load(tmp_path / "p.json") == one
    one.check_compatible(DeviceProfile.detect(runtime="onnxruntime", threads=1, name="other"))
    other = DeviceProfile.detect(runtime="onnxruntime", threads=2, batch_size=1)
    assert set(one.differences(other)) == {"threads"}
    with pytest.raises(ProfileMismatchError, match="threads: 1 vs 2"):
        one.check_compatible(other)
    assert one.versions["torch"] == metadata.version("torch")
    assert one.versions["python"] == platform.python_version()


def test_peak_memory_of_a_linear_chain_is_exact():
    model = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    mem = peak_memory(model, (256,), batch_size=4)
    assert mem.weights_bytes == 4 * (256 * 128 + 128 + 128 * 10 + 10)
    assert mem.input_bytes == 4 * 4 * 256
    # Peak: the first Linear's output and ReLU's new output are alive together.
    assert mem.activations_bytes == 2 * 4 * 4 * 128
    assert mem.peak_bytes == mem.weights_bytes + mem.input_bytes + mem.activations_bytes


def test_peak_memory_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    peak_memory(model, (4,))
    assert model.training


def test_peak_memory_frees_dead_intermediates():
    # Twenty layers whose outputs are freed as the chain goes: the peak stays at two.
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(20)])
    assert peak_memory(model, (64,)).activations_bytes == 2 * 4 * 64


def test_peak_memory_grows_with_resolution(net):
    small, large = net.space.smallest(), net.space.smallest().replace(r=64)
    low = peak_memory(net.extract(small), net.input_shape(small)).activations_bytes
    high = peak_memory(net.extract(large), net.input_shape(large)).activations_bytes
    assert high > 8 * low > 0
