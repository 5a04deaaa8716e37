"""Measuring models: MACs and parameters, latency and memory on real runtimes, device
profiles and zero-cost proxies. Latency lookup tables of a supernet are
:mod:`onefit.profiling`."""

from onefit.metrics.counting import Cost, conv_cost, conv_output_size, count, linear_cost
from onefit.metrics.device import DeviceProfile, ProfileMismatchError
from onefit.metrics.latency import LatencyResult, measure_latency
from onefit.metrics.memory import MemoryResult, peak_memory
from onefit.metrics.runtimes import RuntimeUnavailableError, get_runtime, list_runtimes

__all__ = [
    "Cost",
    "DeviceProfile",
    "LatencyResult",
    "MemoryResult",
    "ProfileMismatchError",
    "RuntimeUnavailableError",
    "conv_cost",
    "conv_output_size",
    "count",
    "get_runtime",
    "linear_cost",
    "list_runtimes",
    "measure_latency",
    "peak_memory",
]
