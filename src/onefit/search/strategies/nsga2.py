"""NSGA-II (Deb et al. 2002) on choice indices, with pymoo's ask/tell interface.

Variables are the choice indices of the dimensions. Crossover is simulated binary
crossover rounded to integers; mutation re-draws each variable with probability
``mutation_rate`` (default 1/number of dimensions) as a *different* choice. (Polynomial
mutation rounded back to integers, the usual pymoo set-up, leaves a variable with three
choices unchanged most of the time.) pymoo removes duplicates within a generation; a
child equal to a config evaluated before gets its stored metrics back for free, so only
new configs spend budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.evaluator import Evaluator
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.problem import Problem as PymooProblem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.problems.static import StaticProblem

from onefit.search.store import Evaluation
from onefit.search.strategies.base import Problem, SearchStrategy, register_search_strategy
from onefit.space import ArchConfig

# Objective and violation given to failed configs: worse than anything real.
FAILED = 1e30


class ResampleMutation(Mutation):
    """Each variable, with probability ``rate``, becomes another of its choices."""

    def __init__(self, choices: Sequence[int], rate: float) -> None:
        super().__init__(prob=1.0)
        self.choices = np.asarray(choices)
        self.rate = rate

    def _do(self, problem: Any, X: np.ndarray, *args: Any, random_state: Any = None,
            **kwargs: Any) -> np.ndarray:  # fmt: skip
        X = np.asarray(X, dtype=int).copy()
        mutate = (random_state.random(X.shape) < self.rate) & (self.choices > 1)
        # A shift of 1..n-1 modulo n picks uniformly among the other choices.
        shift = np.floor(random_state.random(X.shape) * (self.choices - 1)).astype(int) + 1
        X[mutate] = ((X + shift) % self.choices)[mutate]
        return X


@register_search_strategy("nsga2")
class NSGA2Search(SearchStrategy):
    name = "nsga2"

    def __init__(self, population: int = 50, mutation_rate: float | None = None) -> None:
        self.population = population
        self.mutation_rate = mutation_rate

    def setup(self, problem: Problem) -> None:
        super().setup(problem)
        space = problem.space
        choices = [len(d) for d in space.dimensions]
        self.pymoo_problem = PymooProblem(
            n_var=len(choices),
            n_obj=len(problem.objectives),
            n_ieq_constr=len(problem.constraints),
            xl=np.zeros(len(choices)),
            xu=np.array(choices) - 1,
            vtype=int,
        )
        self.algorithm = NSGA2(
            pop_size=self.population,
            sampling=IntegerRandomSampling(),
            crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
            mutation=ResampleMutation(choices, self.mutation_rate or 1.0 / len(choices)),
            eliminate_duplicates=True,
        )
        self.algorithm.setup(self.pymoo_problem, termination=("n_gen", 10**9), seed=problem.seed,
                             verbose=False)  # fmt: skip
        self.known: dict[ArchConfig, tuple[np.ndarray, np.ndarray]] = {}
        self.pending: Population | None = None
        self.pending_configs: list[ArchConfig] = []

    def _config(self, x: np.ndarray) -> ArchConfig:
        return self.problem.space.from_indices([int(v) for v in x])

    def tell(self, evaluations: Sequence[Evaluation]) -> None:
        n_constr = len(self.problem.constraints)
        for e in evaluations:
            if e.ok:
                f = self.problem.minimization([e.metrics])[0]
                g = np.array([c.violation(e.metrics) for c in self.problem.constraints])
            else:
                f = np.full(len(self.problem.objectives), FAILED)
                g = np.full(n_constr, FAILED)
            self.known[e.config] = (f, g)
        self._finish_generation()

    def _finish_generation(self) -> None:
        """Hand the pending generation to pymoo once every member has results."""
        if self.pending is None or any(c not in self.known for c in self.pending_configs):
            return
        F = np.array([self.known[c][0] for c in self.pending_configs])
        G = np.array([self.known[c][1] for c in self.pending_configs])
        kwargs = {"F": F, "G": G} if G.size else {"F": F}
        Evaluator().eval(StaticProblem(self.pymoo_problem, **kwargs), self.pending)
        self.algorithm.tell(infills=self.pending)
        self.pending, self.pending_configs = None, []

    def ask(self, n: int, seen: set[ArchConfig]) -> list[ArchConfig]:
        proposals: list[ArchConfig] = []
        # Generations whose children are all known cost nothing: on resume every stored
        # generation replays this way. Past that, 100 in a row means the space is spent.
        for _ in range(100 + len(self.known)):
            if self.pending is None:
                population = self.algorithm.ask()
                if population is None or len(population) == 0:
                    break
                self.pending = population
                self.pending_configs = [self._config(x) for x in population.get("X")]
            waiting = [c for c in dict.fromkeys(self.pending_configs) if c not in self.known]
            proposals = [c for c in waiting if c not in seen][:n]
            if proposals or waiting:
                return proposals
            self._finish_generation()
        return proposals

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "population": self.population,
                "mutation_rate": self.mutation_rate}  # fmt: skip
