"""Search-free selection for nested spaces (SortedNet).

A supernet trained with the ``sorted`` strategy learns a nested chain of sub-models,
each containing the previous one; their order is the accuracy/cost trade-off. This
strategy evaluates configs of that chain (``onefit.training.strategies.nested_configs``)
from smallest to largest, ``levels`` of them (default: the budget), and proposes nothing
else.
"""

from __future__ import annotations

from typing import Any

from onefit.search.strategies.base import Problem, SearchStrategy, register_search_strategy
from onefit.space import ArchConfig
from onefit.training.strategies.sortednet import nested_configs


@register_search_strategy("sorted")
class SortedSelection(SearchStrategy):
    name = "sorted"

    def __init__(self, levels: int | None = None) -> None:
        self.levels = levels

    def setup(self, problem: Problem) -> None:
        super().setup(problem)
        levels = self.levels or problem.budget
        self.chain = nested_configs(problem.space, max(levels, 2))
        self._next = 0

    def ask(self, n: int, seen: set[ArchConfig]) -> list[ArchConfig]:
        chosen: list[ArchConfig] = []
        while len(chosen) < n and self._next < len(self.chain):
            config = self.chain[self._next]
            self._next += 1
            if config not in seen:
                chosen.append(config)
        return chosen

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "levels": self.levels}
