"""Elastic operations: layers whose width and kernel size shrink at run time.

Each op computes a sub-layer from a prefix (or, for kernels, a transformed centre) of
its weights, and can hand back that sub-layer as a plain ``torch.nn`` module with
``to_static``.
"""

from onefit.elastic.channels import (
    batch_norm_tensors,
    importance_order,
    make_divisible,
    permute_,
)
from onefit.elastic.conv import ElasticConv2d
from onefit.elastic.linear import ElasticLinear
from onefit.elastic.norm import ElasticBatchNorm2d
from onefit.elastic.se import ElasticSqueezeExcite

__all__ = [
    "ElasticBatchNorm2d",
    "ElasticConv2d",
    "ElasticLinear",
    "ElasticSqueezeExcite",
    "batch_norm_tensors",
    "importance_order",
    "make_divisible",
    "permute_",
]
