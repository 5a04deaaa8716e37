"""The sandwich rule with in-place distillation (BigNAS / AttentiveNAS).

Yu et al., "BigNAS: Scaling Up Neural Architecture Search with Big Single-Stage
Models", ECCV 2020 (https://arxiv.org/abs/2003.11142); Yu & Huang, "Universally
Slimmable Networks", ICCV 2019. Each step trains the largest sub-network on the labels,
then the smallest and ``num_random`` random ones on the largest's detached soft
predictions; gradients accumulate and one optimizer step follows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onefit.errors import UserError
from onefit.training.strategies.base import Strategy, SubnetTask, sample_config


class Sandwich(Strategy):
    """Largest (labels) + smallest + ``num_random`` random (distilled) per step.

    Example:
        >>> from onefit.space import SearchSpace
        >>> s = Sandwich(num_random=1)
        >>> s.setup(SearchSpace({"w": [1, 2, 3]}), total_steps=10)
        >>> [t.config["w"] for t in s.tasks(0, np.random.default_rng(0))][:2]
        [3, 1]
    """

    name = "sandwich"

    def __init__(self, *, num_random: int = 2) -> None:
        if num_random < 0:
            raise UserError(f"num_random must be >= 0, got {num_random}")
        self.num_random = num_random

    def sandwich_tasks(self, rng: np.random.Generator, weight: float = 1.0) -> list[SubnetTask]:
        """The sandwich of one step, with the student tasks' loss weight set to ``weight``."""
        tasks = [SubnetTask(self.space.largest(), "labels", 1.0, teacher=True)]
        tasks.append(SubnetTask(self.space.smallest(), "teacher", weight))
        tasks += [
            SubnetTask(sample_config(self.space, rng), "teacher", weight)
            for _ in range(self.num_random)
        ]
        return tasks

    def tasks(self, step: int, rng: np.random.Generator) -> list[SubnetTask]:
        return self.sandwich_tasks(rng)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "num_random": self.num_random}
