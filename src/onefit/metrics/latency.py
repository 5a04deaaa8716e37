"""Latency of a static model on a named runtime, as a median and interquartile range.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    >>> result = measure_latency(model, (3, 16, 16), runtime="eager", warmup=1, repeats=5)
    >>> result.median_ms > 0 and len(result.samples_ms) == 5
    True
    >>> result.profile.runtime
    'eager'
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from onefit.errors import UserError
from onefit.metrics.device import DeviceProfile
from onefit.metrics.runtimes import get_runtime


@dataclass(frozen=True)
class LatencyResult:
    """Timings of one model in milliseconds, with the profile they were measured under."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    samples_ms: tuple[float, ...]
    profile: DeviceProfile

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], profile: DeviceProfile) -> LatencyResult:
        q1, median, q3 = np.percentile(samples_ms, [25, 50, 75])
        return cls(float(median), float(q1), float(q3), tuple(samples_ms), profile)

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_ms": self.median_ms,
            "q1_ms": self.q1_ms,
            "q3_ms": self.q3_ms,
            "iqr_ms": self.iqr_ms,
            "repeats": len(self.samples_ms),
            "profile": self.profile.to_dict(),
        }


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, restoring the old value."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_runs(run: Callable[[], object], device: str, warmup: int, repeats: int) -> list[float]:
    """Wall time in ms of each of ``repeats`` calls of ``run``, after ``warmup`` calls.

    On CUDA the device is synchronized before starting and before stopping the clock,
    so queued kernels are inside the timed region.
    """
    cuda = device.startswith("cuda")
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter_ns()
        run()
        if cuda:
            torch.cuda.synchronize(device)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def check_timing_settings(warmup: int, repeats: int, batch_size: int, threads: int) -> None:
    for name, value, low in (
        ("warmup", warmup, 0),
        ("repeats", repeats, 1),
        ("batch_size", batch_size, 1),
        ("threads", threads, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{name} must be an integer >= {low}, got {value!r}")


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    runtime: str = "eager",
    device: str = "cpu",
    batch_size: int = 1,
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
    profile: DeviceProfile | None = None,
) -> LatencyResult:
    """Median latency (ms) of one batch through ``model`` on ``runtime``.

    Args:
        model: a static model (e.g. from ``Supernet.extract``); it is not modified.
        input_shape: one sample's shape, e.g. ``(3, 224, 224)``.
        runtime: ``"eager"``, ``"onnxruntime"`` or ``"compile"`` (see ``list_runtimes``).
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...).
        batch_size: samples per timed call.
        threads: intra-op threads (default: ``torch.get_num_threads()``).
        warmup, repeats: untimed calls first, then timed ones.
        profile: record the figure under this profile (default: detected here).

    Raises ``RuntimeUnavailableError`` (listing what is available and what to install)
    for an unknown runtime, a runtime not installed, or a device it cannot use.
    """
    threads = torch.get_num_threads() if threads is None else threads
    check_timing_settings(warmup, repeats, batch_size, threads)
    backend = get_runtime(runtime)
    backend.check(device)
    if profile is None:
        profile = DeviceProfile.detect(
            runtime=runtime, device=device, threads=threads, batch_size=batch_size
        )
    example = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch_threads(threads):
        # A copy, so moving it to the device or compiling it leaves the caller's model be.
        run = backend.prepare(copy.deepcopy(model), example, device, threads)
        samples = time_runs(run, device, warmup, repeats)
    return LatencyResult.from_samples(samples, profile)
