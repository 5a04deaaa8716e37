"""Search strategies: a registry of ask/tell classes, one file each."""

from onefit.search.strategies import grid, linas, nsga2, random_search, sorted
from onefit.search.strategies.base import (
    STRATEGIES,
    Problem,
    SearchStrategy,
    register_search_strategy,
    sample_unseen,
)

__all__ = [
    "STRATEGIES",
    "Problem",
    "SearchStrategy",
    "grid",
    "linas",
    "nsga2",
    "random_search",
    "register_search_strategy",
    "sample_unseen",
    "sorted",
]
