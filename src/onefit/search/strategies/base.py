"""The ask/tell interface every search strategy implements, and the problem it solves."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onefit.registry import Registry
from onefit.search.constraints import Constraint, total_violation
from onefit.search.pareto import to_minimization
from onefit.search.store import Evaluation
from onefit.space import ArchConfig, SearchSpace

CheapFn = Callable[[ArchConfig], float]


@dataclass
class Problem:
    """What is searched: the space, objectives (name -> "min"/"max"), constraints and
    cheap metrics (exact functions of a config, free to compute for any candidate)."""

    space: SearchSpace
    objectives: dict[str, str]
    constraints: list[Constraint] = field(default_factory=list)
    cheap: dict[str, CheapFn] = field(default_factory=dict)
    budget: int = 100
    seed: int = 0
    _cheap_cache: dict[ArchConfig, dict[str, float]] = field(default_factory=dict, repr=False)

    def cheap_metrics(self, config: ArchConfig) -> dict[str, float]:
        """The cheap metrics of ``config`` (computed once per config)."""
        if config not in self._cheap_cache:
            self._cheap_cache[config] = {n: float(fn(config)) for n, fn in self.cheap.items()}
        return self._cheap_cache[config]

    @property
    def expensive_objectives(self) -> list[str]:
        return [name for name in self.objectives if name not in self.cheap]

    def minimization(self, metrics: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Objective rows in minimization form (maximized objectives negated)."""
        return to_minimization(metrics, self.objectives)

    def violation(self, metrics: Mapping[str, float]) -> float:
        return total_violation(self.constraints, metrics)


class SearchStrategy(ABC):
    """Proposes configs (``ask``) and learns from their results (``tell``).

    ``ask`` must return only configs not in ``seen`` (every config evaluated or being
    evaluated), without repeats, and may return fewer than asked (or none) when it has
    nothing new to propose. ``tell`` receives finished evaluations, failures included
    (with empty metrics), in the order they finished; on resume it receives the whole
    stored history first.
    """

    name: str = ""

    def setup(self, problem: Problem) -> None:
        self.problem = problem
        self.rng = np.random.default_rng(problem.seed)

    @abstractmethod
    def ask(self, n: int, seen: set[ArchConfig]) -> list[ArchConfig]:
        """Up to ``n`` new configs to evaluate next."""

    def tell(self, evaluations: Sequence[Evaluation]) -> None:  # noqa: B027 - optional hook
        """Learn from finished evaluations (default: nothing)."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


SEARCH_STRATEGIES: Registry[SearchStrategy] = Registry("search strategy")
register_search_strategy = SEARCH_STRATEGIES.register


def create_search_strategy(name: str, **kwargs: Any) -> SearchStrategy:
    """Build the search strategy registered as ``name`` (``random``, ``nsga2``, ...)."""
    return SEARCH_STRATEGIES.create(name, **kwargs)


def list_search_strategies() -> list[str]:
    """Names of the registered search strategies."""
    return SEARCH_STRATEGIES.names()


def sample_unseen(
    space: SearchSpace, n: int, seen: set[ArchConfig], rng: np.random.Generator
) -> list[ArchConfig]:
    """Up to ``n`` distinct uniformly random configs not in ``seen``.

    Rejection sampling while that is cheap; for a nearly exhausted small space it
    enumerates what is left instead, so it never loops forever.
    """
    chosen: list[ArchConfig] = []
    taken = set(seen)
    attempts = 0
    while len(chosen) < n and attempts < 50 * n:
        attempts += 1
        indices = [int(rng.integers(len(d))) for d in space.dimensions]
        config = space.from_indices(indices)
        if config not in taken:
            taken.add(config)
            chosen.append(config)
    if len(chosen) < n and space.size <= 1_000_000:
        left = [c for c in space if c not in taken]
        order = rng.permutation(len(left))[: n - len(chosen)]
        chosen += [left[i] for i in order]
    return chosen
