"""The task interface and its registry.

A task is small on purpose (three abstract methods, as an Optuna sampler): the loss on
labels, the loss against a teacher's outputs, and a metric accumulator. The rest (which
sub-networks train, the optimizer, data, checkpoints) belongs to the trainer and the
strategies, so a new task is a few dozen lines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from onefit.errors import UserError
from onefit.registry import Registry


@dataclass
class MetricState:
    """Running sums of a task's metrics over batches (see :meth:`Task.update`)."""

    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0

    def add(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value


class Task(ABC):
    """Base class of tasks.

    Subclasses set ``name``, ``primary_metric``, ``direction`` and ``metrics`` and implement
    :meth:`loss`, :meth:`distillation_loss` and :meth:`update` (per-batch sums that
    :meth:`finish` turns into means). Constructors take keyword arguments only, and
    :meth:`describe` returns them, so a run records how its task was built.
    """

    name: str = ""
    primary_metric: str = ""
    direction: Literal["max", "min"] = "max"
    # Every metric :meth:`evaluate` returns, the primary one first.
    metrics: tuple[str, ...] = ()
    # The dtype targets are converted to before the loss (labels or real values).
    target_dtype: torch.dtype = torch.long

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss of ``outputs`` against the labels ``targets`` (a scalar)."""

    @abstractmethod
    def distillation_loss(
        self, outputs: torch.Tensor, teacher: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        """Loss of a student's ``outputs`` against a teacher's detached ``teacher`` outputs."""

    @abstractmethod
    def update(self, state: MetricState, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch's metric sums to ``state`` (``state.count`` counts samples)."""

    def finish(self, state: MetricState) -> dict[str, float]:
        """Mean of every metric over the samples seen."""
        if state.count == 0:
            raise UserError("evaluate got an empty validation set")
        return {name: total / state.count for name, total in state.sums.items()}

    def evaluate(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """Metrics of ``(outputs, targets)`` pairs, e.g. a model's outputs over a split."""
        state = MetricState()
        for outputs, targets in batches:
            self.update(state, outputs, targets)
        return self.finish(state)

    def better(self, a: float, b: float) -> bool:
        """Whether primary-metric value ``a`` is better than ``b``."""
        return a > b if self.direction == "max" else a < b

    def describe(self) -> dict[str, Any]:
        """The task's name and constructor arguments (what rebuilds it)."""
        return {"name": self.name}


TASKS: Registry[Task] = Registry("task")
register_task = TASKS.register


def create_task(name: str, **kwargs: Any) -> Task:
    """Build the task registered as ``name`` (see :func:`list_tasks`)."""
    return TASKS.create(name, **kwargs)


def list_tasks() -> list[str]:
    """Names of the registered tasks."""
    return TASKS.names()
