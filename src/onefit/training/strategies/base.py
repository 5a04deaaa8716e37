"""What a supernet training strategy decides: which sub-networks train on each step.

A strategy returns, for every optimizer step, a short list of :class:`SubnetTask`:
which config to run, whether it learns from the labels or from the soft predictions
of the step's teacher, and how strongly its gradient counts. The trainer runs the
tasks in order, accumulates their gradients and takes one optimizer step. Everything
else (data, optimizer, schedule, checkpoints, distribution) belongs to the trainer, so
a strategy stays a few dozen lines.

Strategies are deterministic functions of the step and a seeded generator, so a run
resumed from a checkpoint, or run on several processes, samples the same sub-networks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from onefit.space import ArchConfig, SearchSpace


@dataclass(frozen=True)
class SubnetTask:
    """One forward/backward pass of a sub-network within a training step.

    Attributes:
        config: the sub-network.
        target: ``"labels"`` (cross-entropy with label smoothing), ``"teacher"``
            (cross-entropy against the teacher's soft predictions: in-place
            distillation) or ``"both"`` (their sum, OFA's loss with a frozen teacher).
        weight: multiplies this task's loss before its gradient accumulates.
        teacher: its detached predictions become the soft targets of later tasks.
    """

    config: ArchConfig
    target: Literal["labels", "teacher", "both"] = "labels"
    weight: float = 1.0
    teacher: bool = False


def dimension_group(name: str) -> str:
    """The group of a dimension: ``"ks.3"`` -> ``"ks"``, ``"r"`` -> ``"r"``."""
    return name.split(".", 1)[0]


def sample_config(
    space: SearchSpace,
    rng: np.random.Generator,
    *,
    open_groups: set[str] | None = None,
    base: Mapping[str, Any] | None = None,
) -> ArchConfig:
    """Sample the dimensions of ``open_groups`` (all when ``None``); others keep ``base``.

    ``base`` defaults to the largest config, the starting point of every shrinking
    schedule.
    """
    start = dict(space.largest() if base is None else base)
    for dim in space.dimensions:
        if open_groups is None or dimension_group(dim.name) in open_groups:
            start[dim.name] = dim.choices[int(rng.integers(len(dim)))]
    return space.validate(start)


class Strategy(ABC):
    """Base class of training strategies (see the module docstring).

    Subclasses implement :meth:`tasks`; they may override :meth:`lr_scale` and keep
    state in :meth:`state_dict` (plain numbers, strings, lists, dicts and tensors, so
    checkpoints load with ``weights_only=True``).
    """

    name: str = ""
    # Step at which the trainer freezes a copy of the largest sub-network as the teacher
    # of all later steps (None: teachers come from within each step).
    frozen_teacher_step: int | None = None

    def setup(
        self,
        space: SearchSpace,
        total_steps: int,
        *,
        schedule: Callable[[int], float] | None = None,
    ) -> None:
        """Called once before training with the space, the planned number of steps and
        the learning-rate schedule (step -> learning rate; constant 1 when not given)."""
        self.space = space
        self.total_steps = max(1, total_steps)
        self.schedule: Callable[[int], float] = schedule or (lambda step: 1.0)

    def progress(self, step: int) -> float:
        """Fraction of the training budget done before ``step`` (0 at the first step)."""
        return step / self.total_steps

    @abstractmethod
    def tasks(self, step: int, rng: np.random.Generator) -> list[SubnetTask]:
        """The sub-networks to train at ``step``; ``rng`` is seeded from the step."""

    def lr_scale(self, step: int) -> float:
        """Multiplier on the scheduled learning rate at ``step`` (phases may change it)."""
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore what :meth:`state_dict` returned (stateless strategies need nothing)."""

    def describe(self) -> dict[str, Any]:
        """The strategy's settings, for the resolved run config."""
        return {"name": self.name}
