"""Grid search: every config of a small space in order (first dimension slowest)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from onefit.errors import UserError
from onefit.search.strategies.base import Problem, SearchStrategy, register_search_strategy
from onefit.space import ArchConfig

# Larger spaces are refused: a grid would never get past the first dimensions' corner.
MAX_GRID = 1_000_000


@register_search_strategy("grid")
class GridSearch(SearchStrategy):
    name = "grid"

    def setup(self, problem: Problem) -> None:
        super().setup(problem)
        if problem.space.size > MAX_GRID:
            raise UserError(
                f"grid search needs a small space; this one has {problem.space.size:.3g} "
                f"configs (limit {MAX_GRID:,}); use random, nsga2 or linas"
            )
        self._configs: Iterator[ArchConfig] = iter(problem.space)

    def ask(self, n: int, seen: set[ArchConfig]) -> list[ArchConfig]:
        fresh = (c for c in self._configs if c not in seen)
        return list(itertools.islice(fresh, n))
