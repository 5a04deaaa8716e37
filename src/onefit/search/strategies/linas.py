"""LINAS: predictor-assisted multi-objective search (after DyNAS-T's LINAS).

Each iteration:

1. fit one predictor per expensive objective and per expensive constraint metric on
   every evaluation so far (one-hot features plus the cheap metrics, which are exact;
   ridge, SVR or boosted trees picked by cross-validation, under a second here);
2. build a candidate pool of configs never evaluated: the whole space when it is small
   (up to ``enumerate_limit`` configs), otherwise ``pool_size`` random configs plus
   every one- and two-dimension neighbour of the current Pareto set;
3. predict the pool's expensive metrics in one vectorized call, use the cheap ones
   exactly, and keep the candidates on the first predicted non-dominated fronts;
4. pick the batch greedily by hypervolume improvement over the evaluated front
   (normalized objectives), adding each pick to the front with its predicted values
   before choosing the next, so the batch spreads along the front instead of piling
   onto one spot. Only candidates predicted feasible are ranked; if there are too
   few, the least infeasible fill the batch.

Differences from DyNAS-T's loop, by design: cheap metrics are never predicted; the pool
never holds an evaluated config, so every proposal is new and the search cannot stall
re-proposing a batch; prediction is one matrix product instead of a call per config.
The first ``initial`` configs are the smallest, the largest and random ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from onefit.predictors import fit_predictor
from onefit.search.pareto import hypervolume, pareto_mask
from onefit.search.store import Evaluation
from onefit.search.strategies.base import (
    Problem,
    SearchStrategy,
    register_search_strategy,
    sample_unseen,
)
from onefit.space import ArchConfig


def nondominated_fronts(points: np.ndarray, count: int) -> np.ndarray:
    """Indices of the rows on the first ``count`` non-dominated fronts."""
    remaining = np.arange(len(points))
    chosen: list[np.ndarray] = []
    for _ in range(count):
        if len(remaining) == 0:
            break
        mask = pareto_mask(points[remaining])
        chosen.append(remaining[mask])
        remaining = remaining[~mask]
    return np.concatenate(chosen) if chosen else remaining


def _farthest(
    points: np.ndarray, candidates: np.ndarray, chosen: list[int], anchors: np.ndarray
) -> int:
    """The candidate (not chosen yet) whose nearest anchor is farthest away."""
    best, best_distance = int(candidates[0]), -np.inf
    for i in candidates:
        if i in chosen:
            continue
        distance = np.min(np.linalg.norm(anchors - points[i], axis=1)) if len(anchors) else 0.0
        if distance > best_distance:
            best, best_distance = int(i), float(distance)
    return best


def _greedy_hypervolume(
    points: np.ndarray, candidates: np.ndarray, front: np.ndarray, n: int
) -> list[int]:
    """Up to ``n`` candidates picked one by one for the largest hypervolume gain.

    Each pick joins the front before the next is chosen. When no candidate is
    predicted to gain anything, the one farthest from the front is taken instead.
    """
    reference = np.full(points.shape[1], 1.1)
    chosen: list[int] = []
    current = front
    base = hypervolume(current, reference) if len(current) else 0.0
    for _ in range(min(n, len(candidates))):
        gains = np.array([
            -np.inf if i in chosen else hypervolume(np.vstack([current, points[i]]), reference)
            - base for i in candidates
        ])  # fmt: skip
        best = int(candidates[int(np.argmax(gains))])
        if gains.max() <= 0:
            best = _farthest(points, candidates, chosen, current)
        chosen.append(best)
        current = np.vstack([current, points[best]])
        base = hypervolume(current, reference)
    return chosen


@register_search_strategy("linas")
class LINAS(SearchStrategy):
    name = "linas"

    def __init__(
        self,
        initial: int = 8,
        fronts: int = 3,
        pool_size: int = 5000,
        enumerate_limit: int = 50_000,
        predictors: Sequence[str] = ("ridge", "svr", "gbt"),
    ) -> None:
        self.initial = initial
        self.fronts = fronts
        self.pool_size = pool_size
        self.enumerate_limit = enumerate_limit
        self.predictors = tuple(predictors)

    def setup(self, problem: Problem) -> None:
        super().setup(problem)
        self.evaluated: list[Evaluation] = []
        space = problem.space
        self.all_configs: list[ArchConfig] | None = None
        if space.size <= self.enumerate_limit:
            self.all_configs = list(space)
        predicted = set(problem.expensive_objectives)
        predicted |= {c.metric for c in problem.constraints if c.metric is not None}
        self.predicted_metrics = sorted(predicted - set(problem.cheap))

    def tell(self, evaluations: Sequence[Evaluation]) -> None:
        self.evaluated.extend(evaluations)

    # -- proposals --------------------------------------------------------------------------
    def ask(self, n: int, seen: set[ArchConfig]) -> list[ArchConfig]:
        ok = [e for e in self.evaluated if e.ok]
        if len(ok) < max(self.initial, 3):
            return self._initial(n, seen)
        pool = self._pool(seen, ok)
        if not pool:
            return []
        return self._select(pool, ok, n)

    def _initial(self, n: int, seen: set[ArchConfig]) -> list[ArchConfig]:
        space = self.problem.space
        start = [c for c in dict.fromkeys([space.smallest(), space.largest()]) if c not in seen]
        chosen = start[:n]
        return chosen + sample_unseen(space, n - len(chosen), seen | set(chosen), self.rng)

    def _pool(self, seen: set[ArchConfig], ok: list[Evaluation]) -> list[ArchConfig]:
        return [c for c in self._candidates(seen, ok) if self._cheap_ok(c)]

    def _cheap_ok(self, config: ArchConfig) -> bool:
        """Whether the cheap metrics of ``config`` compute (a LUT may lack a unit, say)."""
        try:
            self.problem.cheap_metrics(config)
        except Exception:  # user code: such a config is simply not proposed
            return False
        return True

    def _candidates(self, seen: set[ArchConfig], ok: list[Evaluation]) -> list[ArchConfig]:
        if self.all_configs is not None:
            return [c for c in self.all_configs if c not in seen]
        pool = set(sample_unseen(self.problem.space, self.pool_size, seen, self.rng))
        front = self.problem.minimization([e.metrics for e in ok])
        for e, on_front in zip(ok, pareto_mask(front)):
            if on_front:
                pool.update(c for c in self._neighbours(e.config) if c not in seen)
        return sorted(pool, key=lambda c: c.to_json())  # a set's order is not reproducible

    def _neighbours(self, config: ArchConfig) -> list[ArchConfig]:
        """Configs differing from ``config`` in one or two dimensions."""
        space = self.problem.space
        base = space.to_indices(config)
        single = []
        for i, dim in enumerate(space.dimensions):
            for j in range(len(dim)):
                if j != base[i]:
                    single.append((i, j))
        out = []
        for i, j in single:
            out.append(space.from_indices([j if k == i else v for k, v in enumerate(base)]))
        picks = self.rng.choice(len(single), size=(min(200, len(single) ** 2), 2))
        for a, b in picks:
            (i1, j1), (i2, j2) = single[a], single[b]
            if i1 != i2:
                indices = list(base)
                indices[i1], indices[i2] = j1, j2
                out.append(space.from_indices(indices))
        return out

    def _predict(self, pool: list[ArchConfig], ok: list[Evaluation]) -> list[dict[str, float]]:
        problem = self.problem
        rows = [dict(problem.cheap_metrics(c)) for c in pool]  # pool holds computable ones
        extra = {name: (lambda c, name=name: problem.cheap_metrics(c)[name])
                 for name in problem.cheap}  # fmt: skip
        configs = [e.config for e in ok]
        metrics = self.predicted_metrics
        if any(c.metric is None for c in problem.constraints):
            # A callable constraint may read any metric: predict all that evaluate returns.
            metrics = sorted(set.intersection(*(set(e.metrics) for e in ok)) - set(problem.cheap))
        for metric in metrics:
            values = [e.metrics[metric] for e in ok]
            predictor = fit_predictor(problem.space, configs, values, method="auto",
                                      candidates=self.predictors, extra_features=extra,
                                      folds=min(5, len(ok)), seed=problem.seed)  # fmt: skip
            for row, value in zip(rows, predictor.predict(pool)):
                row[metric] = float(value)
        return rows

    def _select(self, pool: list[ArchConfig], ok: list[Evaluation], n: int) -> list[ArchConfig]:
        problem = self.problem
        predicted = self._predict(pool, ok)
        violations = np.array([problem.violation(m) for m in predicted])
        observed = [e.metrics for e in ok if problem.violation(e.metrics) <= 0]
        points = problem.minimization(predicted)
        front = problem.minimization(observed) if observed else np.empty((0, points.shape[1]))
        # Normalize with the bounds of everything seen or predicted.
        both = np.vstack([points, front]) if len(front) else points
        lower, upper = both.min(axis=0), both.max(axis=0)
        span = np.where(upper > lower, upper - lower, 1.0)
        scaled, front_scaled = (points - lower) / span, (front - lower) / span
        feasible = np.flatnonzero(violations <= 0)
        candidates = feasible[nondominated_fronts(scaled[feasible], self.fronts)]
        chosen = _greedy_hypervolume(scaled, candidates, front_scaled, n)
        if len(chosen) < n:
            # Too few predicted feasible: add the least infeasible, to learn the boundary.
            order = np.argsort(violations, kind="stable")
            chosen += [int(i) for i in order if violations[i] > 0][: n - len(chosen)]
        return [pool[i] for i in chosen]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "initial": self.initial, "fronts": self.fronts,
                "pool_size": self.pool_size, "predictors": list(self.predictors)}  # fmt: skip
