"""Random search: uniform samples, never one twice. The baseline every method must beat."""

from __future__ import annotations

from onefit.search.strategies.base import SearchStrategy, register_search_strategy, sample_unseen
from onefit.space import ArchConfig


@register_search_strategy("random")
class RandomSearch(SearchStrategy):
    name = "random"

    def ask(self, n: int, seen: set[ArchConfig]) -> list[ArchConfig]:
        return sample_unseen(self.problem.space, n, seen, self.rng)
