"""Search strategies: a registry of ask/tell classes, one file each."""

from onefit.search.strategies import grid, linas, nsga2, random_search, sortednet
from onefit.search.strategies.base import (
    SEARCH_STRATEGIES,
    Problem,
    SearchStrategy,
    create_search_strategy,
    list_search_strategies,
    register_search_strategy,
    sample_unseen,
)

__all__ = [
    "SEARCH_STRATEGIES",
    "Problem",
    "SearchStrategy",
    "create_search_strategy",
    "grid",
    "linas",
    "list_search_strategies",
    "nsga2",
    "random_search",
    "register_search_strategy",
    "sample_unseen",
    "sortednet",
]
