"""Measuring models: MACs and parameters (latency, memory and accuracy come later)."""

from onefit.metrics.counting import Cost, conv_cost, conv_output_size, count, linear_cost

__all__ = ["Cost", "conv_cost", "conv_output_size", "count", "linear_cost"]
