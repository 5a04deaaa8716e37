"""Multi-objective search over any space: strategies, constraints, Pareto sets,
hypervolume and a resumable SQLite store."""

from onefit.search.constraints import Constraint, parse_constraint
from onefit.search.pareto import hypervolume, normalized_hypervolume, pareto_mask
from onefit.search.runner import SearchResult, search
from onefit.search.store import Evaluation, ResultStore, SearchOrigin, StoreError
from onefit.search.strategies import (
    SEARCH_STRATEGIES,
    Problem,
    SearchStrategy,
    create_search_strategy,
    list_search_strategies,
    register_search_strategy,
)

__all__ = [
    "SEARCH_STRATEGIES",
    "Constraint",
    "Evaluation",
    "Problem",
    "ResultStore",
    "SearchOrigin",
    "SearchResult",
    "SearchStrategy",
    "StoreError",
    "create_search_strategy",
    "hypervolume",
    "list_search_strategies",
    "normalized_hypervolume",
    "pareto_mask",
    "parse_constraint",
    "register_search_strategy",
    "search",
]
