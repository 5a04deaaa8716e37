"""Supernet training strategies: a registry of small classes, one file each."""

from __future__ import annotations

from typing import Any

from onefit.registry import Registry
from onefit.training.strategies.base import Strategy, SubnetTask, sample_config
from onefit.training.strategies.deps import DelayedShrinking
from onefit.training.strategies.progressive import ProgressiveShrinking
from onefit.training.strategies.sandwich import Sandwich
from onefit.training.strategies.sortednet import Sorted, nested_configs

TRAINING_STRATEGIES: Registry[Strategy] = Registry("training strategy")
register_strategy = TRAINING_STRATEGIES.register
for _cls in (Sandwich, ProgressiveShrinking, DelayedShrinking, Sorted):
    register_strategy(_cls.name)(_cls)


def create_strategy(name: str, **kwargs: Any) -> Strategy:
    """Build the training strategy registered as ``name`` (``sandwich``, ``progressive``, ...)."""
    return TRAINING_STRATEGIES.create(name, **kwargs)


def list_strategies() -> list[str]:
    """Names of the registered training strategies."""
    return TRAINING_STRATEGIES.names()


__all__ = [
    "TRAINING_STRATEGIES",
    "DelayedShrinking",
    "ProgressiveShrinking",
    "Sandwich",
    "Sorted",
    "Strategy",
    "SubnetTask",
    "create_strategy",
    "list_strategies",
    "nested_configs",
    "register_strategy",
    "sample_config",
]
