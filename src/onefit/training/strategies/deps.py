"""Delayed ε-shrinking (DεpS).

Annavajjala, Khare et al., "DεpS: Delayed ε-Shrinking for Faster Once-For-All
Training", ECCV 2024 (https://arxiv.org/abs/2407.06167).

The rule implemented here, following the paper and its released training code:

1. Full-model warm-up: until ``shrink_start - ramp`` of the budget, only the largest
   sub-network trains, on the labels.
2. ε-shrinking: from then on every step is a sandwich (largest on labels; smallest and
   ``num_random`` random sub-networks distilled from the largest's soft predictions),
   but each student's gradient is scaled by β. During the ramp (``ramp`` of the budget,
   ending at ``shrink_start``) β rises linearly per step so that the students'
   effective learning rate β·lr(t) grows from 0 to ``multiplier`` times the learning
   rate the schedule reaches at ``shrink_start``: β(t) = multiplier · lr(shrink_start)
   · (t - t0) / (T_ramp · lr(t)).
3. After ``shrink_start``, β = ``multiplier``.

With the defaults (``shrink_start=0.5``, ``ramp=0.1``) the full network trains alone
for the first 40 % of steps, students fade in over the next 10 %, and the second half
is ordinary in-place distillation. As in the released code, gradients of all tasks are
summed (its ``gradient_aggregation="sum"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onefit.errors import UserError
from onefit.training.strategies.base import SubnetTask
from onefit.training.strategies.sandwich import Sandwich


class DelayedShrinking(Sandwich):
    """DεpS: full-model warm-up, then sandwich steps with students' weights ramped in.

    β follows the effective learning rate: the trainer passes its schedule to
    :meth:`setup`.
    """

    name = "deps"

    def __init__(
        self,
        *,
        shrink_start: float = 0.5,
        ramp: float = 0.1,
        multiplier: float = 1.0,
        num_random: int = 2,
    ) -> None:
        super().__init__(num_random=num_random)
        if not 0.0 <= ramp <= shrink_start < 1.0:
            raise UserError(
                f"need 0 <= ramp <= shrink_start < 1, got ramp={ramp}, shrink_start={shrink_start}"
            )
        if multiplier <= 0:
            raise UserError(f"multiplier must be positive, got {multiplier}")
        self.shrink_start = shrink_start
        self.ramp = ramp
        self.multiplier = multiplier

    def student_weight(self, step: int) -> float:
        """β at ``step``: 0 before the ramp, linear effective-lr warm-up, then ``multiplier``."""
        end = round(self.shrink_start * self.total_steps)
        start = round((self.shrink_start - self.ramp) * self.total_steps)
        if step < start:
            return 0.0
        if step >= end:
            return self.multiplier
        target_lr = self.multiplier * self.schedule(end)
        fraction = (step - start + 1) / (end - start)
        return target_lr * fraction / max(self.schedule(step), 1e-12)

    def tasks(self, step: int, rng: np.random.Generator) -> list[SubnetTask]:
        weight = self.student_weight(step)
        if weight == 0.0:
            return [SubnetTask(self.space.largest(), "labels", 1.0, teacher=True)]
        return self.sandwich_tasks(rng, weight)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shrink_start": self.shrink_start,
            "ramp": self.ramp,
            "multiplier": self.multiplier,
            "num_random": self.num_random,
        }
