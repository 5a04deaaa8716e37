"""Latency lookup tables of a supernet, built on the user's own device (``onefit profile``).

A table names the units of a supernet's sub-networks, so it sits above the supernet
families; the measuring it builds on (runtimes, timing, device profiles) is
:mod:`onefit.metrics`.
"""

from onefit.profiling.lut import LatencyTable, LatencyTableError, build_latency_table, collect_units

__all__ = ["LatencyTable", "LatencyTableError", "build_latency_table", "collect_units"]
