"""SortedNet: nested sub-models trained together.

Valipour et al., "SortedNet: A Scalable and Generalized Framework for Training Modular
Deep Neural Networks" (https://arxiv.org/abs/2309.00255). The sub-models form a chain
in which each one contains the previous (every dimension's choice index grows along the
chain, so depth and width are shared prefixes). Each step samples ``num_samples``
members of the chain, trains each on the labels and accumulates the gradients. Because
the chain is ordered by size, a deployment can later pick the largest member under its
budget without any search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from onefit.errors import UserError
from onefit.space import ArchConfig, SearchSpace
from onefit.training.strategies.base import Strategy, SubnetTask


def nested_configs(space: SearchSpace, levels: int) -> list[ArchConfig]:
    """``levels`` configs from smallest to largest, each dimension's index non-decreasing.

    Level ``l`` puts every dimension at index ``floor(l / (levels - 1) * (n - 1) + 0.5)``
    (halves round up, so every dimension grows as soon as it can).

    Example:
        >>> chain = nested_configs(SearchSpace({"d": [1, 2, 3], "w": [8, 16]}), 3)
        >>> [(c["d"], c["w"]) for c in chain]
        [(1, 8), (2, 16), (3, 16)]
    """
    if levels < 2:
        raise UserError(f"levels must be >= 2, got {levels}")
    chain: list[ArchConfig] = []
    for level in range(levels):
        fraction = level / (levels - 1)
        config = space.from_indices(
            [math.floor(fraction * (len(d) - 1) + 0.5) for d in space.dimensions]
        )
        if not chain or chain[-1] != config:
            chain.append(config)
    return chain


class Sorted(Strategy):
    """Train a nested chain of ``levels`` sub-models, ``num_samples`` sampled per step."""

    name = "sorted"

    def __init__(self, *, levels: int = 8, num_samples: int = 2) -> None:
        if levels < 2 or num_samples < 1:
            raise UserError(f"need levels >= 2 and num_samples >= 1, got {levels}, {num_samples}")
        self.levels = levels
        self.num_samples = num_samples

    def setup(
        self,
        space: SearchSpace,
        total_steps: int,
        *,
        schedule: Callable[[int], float] | None = None,
    ) -> None:
        super().setup(space, total_steps, schedule=schedule)
        self.chain = nested_configs(space, self.levels)

    def tasks(self, step: int, rng: np.random.Generator) -> list[SubnetTask]:
        count = min(self.num_samples, len(self.chain))
        picks = sorted(rng.choice(len(self.chain), size=count, replace=False).tolist())
        return [SubnetTask(self.chain[i], "labels") for i in picks]

    def state_dict(self) -> dict[str, Any]:
        # The chain is what search-free selection reads back from a checkpoint.
        return {"chain": [c.to_json() for c in self.chain]}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "levels": self.levels, "num_samples": self.num_samples}
